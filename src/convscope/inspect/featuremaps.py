"""Feature maps: what each conv and pool layer outputs for one image, as numbers and as one PNG sheet per layer.

>>> maps = feature_maps("runs/demo", "runs/demo/samples/test-0-ankle-boot.png")   # doctest: +SKIP
>>> maps["conv1"].maps.shape, maps["conv1"].shape                                  # doctest: +SKIP
((32, 28, 28), (28, 28, 32))
>>> save_feature_map_sheets(maps, "featuremaps/")                                 # doctest: +SKIP
[PosixPath('featuremaps/01-conv1.png'), PosixPath('featuremaps/04-pool1.png'), ...]

A pretrained base is one layer of the spec but many inside: its stem and blocks have maps too, named after the base
with a dot ('base1.stem', 'base1.block1', …; a spec's own names never hold a dot). `map_layers(model)` lists them all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
import torch
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from convscope.builder import ConvNet
from convscope.errors import DataError
from convscope.loaded import LoadedRun, load
from convscope.run import Run
from convscope.shapes import infer
from convscope.show import Picture
from convscope.spec import Activation, Base, BatchNorm, Conv, Dense, NetSpec, shape_text

DEFAULT_KINDS = ("base", "conv", "pool")  # layer types shown when no layers are named
MAX_TILES = 128  # maps per sheet; a layer with more (a base's 1280) shows its strongest
NONNEGATIVE = ("relu", "relu6", "sigmoid")  # activations whose output is never below 0


@dataclass(frozen=True)
class LayerMaps:
    index: int  # 1-based position in the spec, as people count layers
    name: str  # e.g. 'conv1'
    label: str  # e.g. 'conv 3×3, stride 1, same' (+ ', relu' for a conv with an activation)
    shape: tuple[int, int, int]  # H×W×C, as people write it
    maps: np.ndarray  # float32 C×H×W: the layer's exact output for the image, one map per filter/channel
    signed: bool  # True when the layer can output negative values (a conv without ReLU, a batchnorm, tanh ...)


@dataclass(frozen=True)
class FeatureMaps:
    image: np.ndarray  # uint8 H×W×C: the input as the network saw it (before normalisation)
    conversion: str  # how the file became that, e.g. 'RGB 451×300 → gray 28×28'
    layers: tuple[LayerMaps, ...]

    def __getitem__(self, name: str) -> LayerMaps:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)

    def names(self) -> list[str]:
        return [layer.name for layer in self.layers]

    def figure(self, name: str | None = None) -> Figure:
        """The sheet of one layer's maps (default: the first layer here); KeyError for a layer not here."""
        return feature_map_figure(self, name or self.layers[0].name)

    def save(self, path: str | Path) -> Path | list[Path]:
        """One layer's sheet to a picture file (`path` ending in .png, .jpg, .svg or .pdf); or one sheet per layer
        into the folder `path` (NN-NAME.png, as `convscope featuremaps` writes them). DataError for a picture file
        asked of several layers."""
        path = Path(path)
        if path.suffix.lower() in (".png", ".jpg", ".jpeg", ".svg", ".pdf"):
            if len(self.layers) != 1:
                raise DataError(f"{path}: {len(self.layers)} layers make {len(self.layers)} sheets: give a folder")
            return self.figure().save(path)
        return save_feature_map_sheets(self, path)

    def __repr__(self) -> str:
        shapes = ", ".join(f"{m.name} {'×'.join(map(str, m.shape))}" for m in self.layers)
        return f"FeatureMaps({self.conversion}: {shapes})"

    def _repr_html_(self) -> str:
        from convscope.show import heading, img_tag

        parts = [heading("feature maps", self.conversion)]
        parts += [img_tag(self.figure(m.name), m.name) for m in self.layers]
        return "".join(parts)


def feature_maps(
    run: LoadedRun | Run | str | Path, image, layers: list[str] | None = None, device: str = "auto"
) -> FeatureMaps:
    """The outputs of `layers` (default: every conv and pool layer) for one image, with the run's best weights,
    computed on `device` (convscope.device.resolve_device; the maps come back as NumPy arrays). `run`: a run folder,
    or a LoadedRun (then computed where it is loaded); `image`: a file or sample photo's name, or what
    LoadedRun.fit takes (a PIL image, an array, an image already fitted).

    The image is converted exactly as `convscope predict` converts it (size, gray/RGB) and normalised with the run's
    per-channel mean and std; the model is in eval mode (batchnorm uses its running statistics, dropout is off).
    """
    loaded = load(run, device)
    picture = loaded.fit(image)
    return FeatureMaps(picture.array, picture.conversion, layer_maps(loaded.model, loaded.tensor(picture), layers))


def layer_maps(
    model: ConvNet, x: torch.Tensor, layers: list[str] | None = None, spec: NetSpec | None = None
) -> tuple[LayerMaps, ...]:
    """The lower level: the chosen layers' outputs for a tensor `x` already normalised, 1×C×H×W (or C×H×W).

    `spec` defaults to the model's own. The model is run in eval mode and left in the mode it was in.
    """
    spec = spec or model.spec
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[0] != 1:
        raise DataError(f"feature maps are for one image: a tensor 1×C×H×W. Received shape {tuple(x.shape)}")
    report = infer(spec, (x.shape[2], x.shape[3], x.shape[1]))
    infos = {info.name: info for info in report.layers}
    with_maps = map_layers(model, spec)
    if layers is None:
        layers = [info.name for info in report.layers if info.layer.layer_type in DEFAULT_KINDS]
    for name in layers:
        if name not in with_maps:
            what = "has no feature maps (its output is a vector)" if name in infos else "is not a layer of this model"
            raise DataError(f"{spec.name}: {name!r} {what}. Layers with feature maps: {', '.join(with_maps)}")
    inner = [name for name in layers if "." in name]  # a base's stem and blocks: caught by hooks during the pass
    was_training = model.training
    model.train(False)
    caught: dict[str, torch.Tensor] = {}
    hooks = _base_hooks(model, inner, caught)
    try:
        with torch.inference_mode():
            _, kept = model.forward_intermediates(x, [name for name in layers if "." not in name])
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    kept = kept | caught
    signed = _signed(spec)
    result = []
    for name in sorted(set(layers), key=with_maps.index):  # network order, whatever order they were asked in
        maps = kept[name][0].float().cpu().contiguous().numpy().copy()  # C×H×W, an own copy in plain C order
        if "." in name:
            info = infos[name.split(".")[0]]
            shape = (maps.shape[1], maps.shape[2], maps.shape[0])
            result.append(LayerMaps(info.index, name, _inner_label(model, name), shape, maps, bool(maps.min() < 0)))
            continue
        info = infos[name]
        label = info.label + (activation_text(info.layer.activation) if isinstance(info.layer, Conv) else "")
        can_be_negative = signed[info.index - 1] or bool(maps.min() < 0)
        result.append(LayerMaps(info.index, name, label, info.output_shape, maps, can_be_negative))
    return tuple(result)


def map_layers(model: ConvNet, spec: NetSpec | None = None) -> list[str]:
    """Every layer with feature maps, in network order: the spec's own (conv, pool, batchnorm, base, …) and, just
    before a pretrained base, its stem and blocks ('base1.stem', 'base1.block1', … 'base1.block16', then 'base1')."""
    spec = spec or model.spec
    names = []
    for info in infer(spec).layers:
        if len(info.output_shape) != 3:
            continue
        if isinstance(info.layer, Base) and getattr(model, "base", None) is not None:
            blocks = len(model.base.blocks)
            names += [f"{info.name}.stem"] + [f"{info.name}.block{i}" for i in range(1, blocks + 1)]
        names.append(info.name)
    return names


def _base_hooks(model: ConvNet, names: list[str], caught: dict[str, torch.Tensor]) -> list:
    """Hooks that keep the outputs of the base's stem (the input of its first block) and blocks named in `names`,
    into `caught`. Removed by the caller after the one forward pass (the model keeps no hook: convscope.fused leaves
    hooked modules unfolded)."""
    if not names:
        return []
    blocks = model.base.blocks
    hooks = []
    for name in names:
        part = name.split(".", 1)[1]
        if part == "stem":
            hooks.append(blocks[0].register_forward_pre_hook(lambda _m, args, n=name: caught.__setitem__(n, args[0])))
        else:
            module = blocks[int(part.removeprefix("block")) - 1]
            hooks.append(module.register_forward_hook(lambda _m, _a, out, n=name: caught.__setitem__(n, out)))
    return hooks


def _inner_label(model: ConvNet, name: str) -> str:
    """'stem (the layers before block 1)' or 'block 3 of 16 (MBConv)': what a base's inner layer is."""
    part, blocks = name.split(".", 1)[1], model.base.blocks
    if part == "stem":
        return "stem (the base's layers before block 1)"
    i = int(part.removeprefix("block"))
    return f"block {i} of {len(blocks)} ({type(blocks[i - 1]).__name__})"


def activation_text(name: str) -> str:
    return ", no activation" if name == "none" else f", {name}"


def _signed(spec: NetSpec) -> list[bool]:
    """Per layer: can its output be negative? (The input is normalised, so it can.)"""
    negative, out = True, []
    for layer in spec.layers:
        if isinstance(layer, Conv | Dense):
            negative = layer.activation not in NONNEGATIVE
        elif isinstance(layer, Activation) and layer.function != "none":
            negative = layer.function not in NONNEGATIVE
        elif isinstance(layer, BatchNorm):
            negative = True
        elif isinstance(layer, Base):  # ends in an activation (ReLU6, ReLU); SiLU's small negatives: see maps.min()
            negative = False
        # pools, flatten and dropout keep the sign of their input (a pool of values >= 0 is >= 0)
        out.append(negative)
    return out


def save_feature_map_sheets(maps: FeatureMaps, out_dir: str | Path) -> list[Path]:
    """One PNG per layer, e.g. out_dir/04-pool1.png (sheet_name): all its maps as tiles, beside the input as the
    network saw it; folders made as needed. Raises OutputError naming the file that cannot be written."""
    out_dir = Path(out_dir)
    return [feature_map_figure(maps, layer.name).save(out_dir / sheet_name(layer)) for layer in maps.layers]


def sheet_name(layer) -> str:
    """The file name of a layer's sheet (`layer` has .index and .name): '04-pool1.png'."""
    return f"{layer.index:02d}-{layer.name}.png"


def feature_map_figure(maps: FeatureMaps, name: str) -> Figure:
    """The sheet of one layer's feature maps (`save_feature_map_sheets` saves one per layer): a tile per map (at most
    MAX_TILES, the strongest), one shared colour scale and its colorbar (diverging around 0 when the layer's output
    can be negative, else dark = 0), and on the left the input (uint8 H×W×C) as the network saw it.

    Returns a new matplotlib Figure (see `sheet_figure`) with one axes per tile, the input's and the colorbar's.
    Raises KeyError if `name` is not one of `maps.names()`.
    """
    layer = maps[name]
    h, w, c = maps.image.shape
    side = (maps.image, f"input {shape_text((h, w, c))}\n({maps.conversion})")
    low, high = float(layer.maps.min()), float(layer.maps.max())
    if layer.signed:  # a diverging map centred on 0: red positive, blue negative, white 0
        limit = max(abs(low), abs(high)) or 1.0
        cmap, vmin, vmax = "RdBu_r", -limit, limit
        scale = "red > 0 > blue, one colour scale for all maps"
    else:  # responses >= 0: dark is 0 (nothing found), bright is a strong response
        cmap, vmin, vmax = "magma", 0.0, high or 1.0
        scale = "dark = 0, one colour scale for all maps"
    shown = np.arange(len(layer.maps))
    if len(shown) > MAX_TILES:  # a base's 1280 maps: the strongest responses, in filter order
        shown = np.sort(np.argsort(-layer.maps.mean(axis=(1, 2)), kind="stable")[:MAX_TILES])
    which = (
        f"{layer.shape[2]} maps"
        if len(shown) == len(layer.maps)
        else (f"the {len(shown)} strongest of {layer.shape[2]} maps")
    )
    title = (
        f"{layer.name}: {layer.label} — output {shape_text(layer.shape)} "
        f"({which} of {layer.shape[0]}×{layer.shape[1]})\n"
        f"values {value_text(low)} … {value_text(high)}; {scale}"
    )
    tiles = [layer.maps[i] for i in shown]
    # A map that is 0 everywhere is easy to miss among dark tiles: say so (a ReLU that nothing here switched on).
    labels = [f"{i} (all 0)" if not m.any() else str(i) for i, m in zip(shown, tiles, strict=True)]
    bar = "response (same scale for every map)"
    return sheet_figure(tiles, labels, title, cmap, vmin, vmax, bar, side=side)


def grid_columns(n: int, most: int = 16) -> int:
    """Columns for n tiles: the smallest count >= √n that fills whole rows (32 → 8, 128 → 16), at most `most`."""
    start = min(most, math.ceil(math.sqrt(n)))
    for cols in range(start, min(most, n) + 1):
        if n % cols == 0:
            return cols
    return start


def value_text(value: float) -> str:
    return f"{value:.3g}".replace("-", "−")


# Sheet geometry, in inches: tiles big enough to read a 3×3 map's cells and a 28×28 map's shapes.
TILE, GAP, LABEL = 1.0, 0.08, 0.2  # a tile's side, the space between tiles, the index label above each tile
SIDE = 2.2  # the input image's panel
NO_VALUE = "#d0d0d0"  # NaN cells (a mosaic's unused blocks): light gray, not white, which means 0 in RdBu_r
BLOCK_LINES = "#6e6e6e"  # between a mosaic's blocks: gray, never mistaken for a value of a diverging map


def sheet_figure(
    tiles: list[np.ndarray],
    labels: list[str],
    title: str,
    cmap: str | None,
    vmin: float | None,
    vmax: float | None,
    bar_label: str,
    side: tuple[np.ndarray, str] | None = None,
    tile: float | None = None,
    blocks: tuple[int, int] | None = None,
) -> Figure:
    """A titled grid of same-shaped tiles (H×W values, or H×W×3 RGB in [0, 1] when cmap is None), each labelled, with
    one shared colour scale and its colorbar, and optionally an image (uint8 H×W×C) with its caption on the left.

    `tile` is a tile's width in inches (default: 1.25 for up to 8 columns, else 1.0). `blocks` (rows, columns): draw
    gray lines between blocks of that many cells, for tiles that are mosaics (lines, not gap cells: at 1-2 pixels a
    cell, nearest-neighbour drawing would drop some gap cells). NaN cells are drawn light gray.

    Returns a new matplotlib Figure at 100 dpi, sized in inches from the grid (at least 10 wide), with one axes per
    tile, then the side image's and the colorbar's when drawn. Raises DataError if `tiles` is empty or `labels` is not
    one per tile."""
    n = len(tiles)
    if n == 0 or len(labels) != n:
        raise DataError(
            f"a sheet needs one label per tile, at least one tile. Received {n} tiles, {len(labels)} labels"
        )
    cols = grid_columns(n)
    rows = math.ceil(n / cols)
    tile_w = tile or (TILE if cols > 8 else 1.25)
    tile_h = tile_w * min(max(tiles[0].shape[0] / tiles[0].shape[1], 0.4), 2.5)  # wide mosaics get wide tiles
    grid_w, grid_h = cols * tile_w + (cols - 1) * GAP, rows * (tile_h + LABEL)
    left = 0.35 + (SIDE + 0.55 if side else 0.0)  # where the grid starts
    bar = 1.25 if cmap else 0.0
    longest = max(len(line) for line in title.split("\n"))
    width = max(left + grid_w + 0.3 + bar, 10.0, 0.5 + 0.09 * longest)  # 0.09 inch: a wide character at 12 pt
    top = 0.3 + 0.24 * (title.count("\n") + 1)  # the title's lines at 12 pt, and a margin
    height = top + max(grid_h, SIDE + 0.9 if side else 0.0) + 0.25
    left += (width - (left + grid_w + 0.3 + bar)) / 2  # a narrow grid is centred in the minimum width
    fig = Picture(figsize=(width, height), dpi=100)

    def box(x: float, y: float, w: float, h: float):  # an axes placed in inches from the figure's top-left
        return fig.add_axes((x / width, 1 - (y + h) / height, w / width, h / height))

    colours = matplotlib.colormaps[cmap].with_extremes(bad=NO_VALUE) if cmap else None
    for i, (values, text) in enumerate(zip(tiles, labels, strict=True)):
        r, c = divmod(i, cols)
        ax = box(left + c * (tile_w + GAP), top + r * (tile_h + LABEL) + LABEL, tile_w, tile_h)
        ax.imshow(values, cmap=colours, vmin=vmin, vmax=vmax, interpolation="nearest")
        if blocks:
            for y in range(blocks[0], values.shape[0], blocks[0]):
                ax.axhline(y - 0.5, color=BLOCK_LINES, linewidth=1.0)
            for x in range(blocks[1], values.shape[1], blocks[1]):
                ax.axvline(x - 0.5, color=BLOCK_LINES, linewidth=1.0)
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_color("#999999")
        ax.set_title(text, fontsize=8, pad=2)
    if side:
        image, caption = side
        ax = box(0.35, top + 0.55, SIDE, SIDE)
        gray = image.shape[2] == 1
        ax.imshow(image[:, :, 0] if gray else image, cmap="gray" if gray else None, vmin=0, vmax=255)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(caption, fontsize=9)
    if cmap:
        cax = box(left + grid_w + 0.3, top + LABEL, 0.18, min(grid_h - LABEL, 4.0))
        fig.colorbar(ScalarMappable(Normalize(vmin, vmax), colours), cax=cax).set_label(bar_label)
    fig.suptitle(title, y=1 - 0.15 / height, va="top", fontsize=12)
    return fig
