"""Filters: a conv layer's learned weights, as numbers and as one PNG sheet.

>>> w = filter_weights("runs/demo")             # the first conv layer   # doctest: +SKIP
>>> w.name, w.weights.shape                                               # doctest: +SKIP
('conv1', (32, 1, 3, 3))
>>> save_filter_sheet(w, "conv1-filters.png")                             # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from convscope.builder import ConvNet
from convscope.errors import DataError
from convscope.inspect.featuremaps import activation_text, grid_columns, sheet_figure, value_text
from convscope.loaded import LoadedRun, load
from convscope.run import Run
from convscope.shapes import infer
from convscope.show import Drawable
from convscope.spec import Conv

CELL = 0.06  # inches per weight in a mosaic tile (6 pixels at 100 dpi): a 3×3×64 filter's 24×24 mosaic is 1.44 inches


@dataclass(frozen=True)
class FilterWeights(Drawable):
    index: int  # 1-based position of the layer in the spec
    name: str  # e.g. 'conv1'
    label: str  # e.g. 'conv 3×3, stride 1, same, relu'
    weights: np.ndarray  # float32 (filters, in_channels, kh, kw), a copy of the layer's weight
    bias: np.ndarray | None  # float32 (filters,) or None
    first: bool  # the network's first conv layer: its input channels are the image's (gray or RGB)

    def __repr__(self) -> str:
        return f"FilterWeights({self.name}, {self.label}: {self.shape_text})"

    def figure(self) -> Figure:
        """The filters as a sheet (filters_figure)."""
        return filters_figure(self)

    @property
    def shape_text(self) -> str:
        """'32 filters 3×3×1' (each filter is kh×kw×in_channels)."""
        f, c, kh, kw = self.weights.shape
        return f"{f} filters {kh}×{kw}×{c}"


def filter_weights(source: LoadedRun | Run | str | Path | ConvNet, layer: str | None = None) -> FilterWeights:
    """The weights of conv layer `layer` (default: the first conv layer) of a run (best weights), a loaded run or a
    built model."""
    model = source if isinstance(source, ConvNet) else load(source, device="cpu").model
    spec = model.spec
    convs = [info for info in infer(spec).layers if isinstance(info.layer, Conv)]
    if not convs:
        raise DataError(f"{spec.name}: has no conv layer, so no filters to show")
    name = layer or convs[0].name
    found = [info for info in convs if info.name == name]
    if not found:
        what = "is not a conv layer" if name in spec.layer_names() else "is not a layer of this model"
        raise DataError(f"{spec.name}: {name!r} {what}. Conv layers: {', '.join(i.name for i in convs)}")
    info = found[0]
    module = model.get_submodule(name)
    weights = module.weight.detach().float().cpu().numpy().copy()
    bias = None if module.bias is None else module.bias.detach().float().cpu().numpy().copy()
    label = info.label + activation_text(info.layer.activation)
    return FilterWeights(info.index, name, label, weights, bias, info is convs[0])


def save_filter_sheet(
    source: FilterWeights | LoadedRun | Run | str | Path | ConvNet, path: str | Path, layer: str | None = None
) -> Path:
    """filters_figure saved as one PNG at `path` (folders made as needed); returns the path."""
    return filters_figure(source, layer).save(path)


def filters_figure(source: FilterWeights | LoadedRun | Run | str | Path | ConvNet, layer: str | None = None) -> Figure:
    """A conv layer's filters (default: the first conv layer), one labelled tile per filter:

    - first layer on RGB images: each filter as a small colour image (what colour pattern it looks for);
    - 1 input channel: each filter as a kh×kw heatmap, diverging colours centred on 0 (weights are signed);
    - deeper layers: each filter as a mosaic of its in_channels kh×kw heatmaps (see `_mosaic`).

    Returns a new matplotlib Figure (featuremaps.sheet_figure) with one axes per filter and a colorbar's unless the
    tiles are RGB. Raises what `filter_weights` raises for a source or layer without conv weights.
    """
    w = source if isinstance(source, FilterWeights) else filter_weights(source, layer)
    f, c, kh, kw = w.weights.shape
    low, high = float(w.weights.min()), float(w.weights.max())
    head = f"{w.name}: {w.label} — {w.shape_text}, weights {value_text(low)} … {value_text(high)}"
    labels = [str(i) for i in range(f)]
    if w.first and c == 3:
        # Each filter's 3·kh·kw weights scaled jointly to [0, 1]: the most negative weight black, the most positive
        # white, and the colour shows which input colour the filter weighs more. Scaling each channel on its own would
        # invent colours the weights do not have; one scale for all filters would leave most of them flat gray.
        tiles = [_unit(filt).transpose(1, 2, 0) for filt in w.weights]
        title = (
            f"{head}\nas RGB images, each filter scaled to 0…1 on its own:\n"
            f"dark = its most negative weights, bright = its most positive, colour = the input colour it favours"
        )
        return sheet_figure(tiles, labels, title, None, None, None, "")
    limit = max(abs(low), abs(high)) or 1.0
    scale = "red > 0 > blue, one colour scale for all filters"
    if c == 1:
        tiles = [filt[0] for filt in w.weights]
        title = f"{head}\nkh×kw weights of each filter; {scale}"
        return sheet_figure(tiles, labels, title, "RdBu_r", -limit, limit, "weight")
    sub = grid_columns(c, most=16)
    tiles = [_mosaic(filt, sub) for filt in w.weights]
    rows = -(-c // sub)
    title = (
        f"{head}\neach tile is one filter: its {c} input channels as {rows}×{sub} blocks of {kh}×{kw} weights "
        f"(channel 0 top left, then row by row)\n{scale}"
    )
    tile = max(1.0, CELL * tiles[0].shape[1])
    return sheet_figure(tiles, labels, title, "RdBu_r", -limit, limit, "weight", tile=tile, blocks=(kh, kw))


def _unit(values: np.ndarray) -> np.ndarray:
    """Scaled to [0, 1] (all 0.5 when every value is the same)."""
    span = float(values.max() - values.min())
    return (values - values.min()) / span if span > 0 else np.full_like(values, 0.5)


def _mosaic(filt: np.ndarray, cols: int) -> np.ndarray:
    """One filter (in_channels, kh, kw) as one image: its channels' kh×kw blocks in a grid, row by row (unused: NaN).

    Why a mosaic and not the mean over input channels: weights are signed, so a mean cancels them and shows patterns
    that are in no channel; the mosaic draws every weight once, and a whole block pale means the filter ignores that
    channel. A 3×3×64 filter becomes 8×8 blocks of 3×3 weights.
    """
    c, kh, kw = filt.shape
    rows = -(-c // cols)
    out = np.full((rows * kh, cols * kw), np.nan, dtype=np.float32)
    for i, block in enumerate(filt):
        r, q = divmod(i, cols)
        out[r * kh : (r + 1) * kh, q * kw : (q + 1) * kw] = block
    return out
