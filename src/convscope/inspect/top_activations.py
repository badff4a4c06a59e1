"""Top activations: for each filter of a layer, the k images that excite it most, and where.

Each image's response to a filter is the maximum of that filter's feature map over positions; the k images with
the highest maxima are kept, with the position (row, column) of the maximum and the input pixels that position
sees (its receptive field): the part of the image the filter reacted to.

Where an output position looks in the input: a layer's receptive field RF and jump J come from
`convscope.shapes.infer`. Output position i of a layer starts reading at input pixel i·J − P, where P is the padding
before the data accumulated through the conv and pool layers so far, each counted in input pixels
(P += pad_before · J_before_that_layer). The window is [i·J − P, i·J − P + RF), clipped to the image.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from convscope.data.dataset import Dataset, Split, seeded_split
from convscope.errors import DataError
from convscope.loaded import LoadedRun, load, model_images
from convscope.preprocess import to_tensor
from convscope.run import Run
from convscope.shapes import infer, padding_2d
from convscope.spec import Conv, NetSpec, Pair, Pool

if TYPE_CHECKING:
    from matplotlib.figure import Figure


BATCH = 500  # images per forward pass: a 128-filter 14×14 float32 map is 100 kB per image


@dataclass(frozen=True)
class Hit:
    image_index: int  # index in the split scanned
    label: int
    value: float  # the filter's maximum response over this image's map
    position: tuple[int, int]  # (row, column) of that maximum in the layer's map
    window: tuple[int, int, int, int]  # (top, left, bottom, right) in input pixels, clipped; bottom/right exclusive
    patch: np.ndarray  # uint8 h×w×C: the input inside `window`
    image: np.ndarray  # uint8 H×W×C: the whole image


@dataclass(frozen=True)
class TopActivations:
    layer: str
    k: int
    map_shape: tuple[int, int, int]  # the layer's output, H×W×C
    receptive_field: Pair
    jump: Pair
    offset: Pair  # P above: padding before the data, in input pixels
    split: str
    images_scanned: int
    classes: tuple[str, ...]
    filters: tuple[tuple[Hit, ...], ...]  # per filter (channel), the hits by value, highest first


def receptive_window(spec: NetSpec, layer: str) -> tuple[Pair, Pair, Pair]:
    """(receptive field, jump, offset) of `layer`'s positions: position (i, j) reads input rows from i·jump − offset."""
    offset = [0, 0]
    for info in infer(spec).layers:
        if isinstance(info.layer, Conv | Pool):
            top, _, left, _ = padding_2d(info.input_shape[:2], info.layer.size, info.layer.stride, info.layer.padding)
            jump_before = (info.jump[0] // info.layer.stride[0], info.jump[1] // info.layer.stride[1])
            offset = [offset[0] + top * jump_before[0], offset[1] + left * jump_before[1]]
        if info.name == layer:
            if info.receptive_field is None or len(info.output_shape) != 3:
                break
            return info.receptive_field, info.jump, (offset[0], offset[1])
    raise DataError(f"{spec.name}: {layer!r} is not a layer with feature maps. Choose from: {_spatial(spec)}")


def _spatial(spec: NetSpec) -> str:
    return ", ".join(info.name for info in infer(spec).layers if len(info.output_shape) == 3)


def _split(run, data: Dataset | Split | None, split: str) -> Split:
    if isinstance(data, Split):
        return data
    if data is None:
        from convscope.data.load import load_dataset

        data = load_dataset(run.config.data, run.config.data_dir, run.spec.input, run.config.seed)
    if split not in ("train", "val", "test"):
        raise DataError(f"split must be train, val or test. Received: {split!r}")
    if split == "val" and data.val is None:  # the trainer's own hold-out: the same seeded split
        part = seeded_split(data.train, run.config.val_fraction, run.config.seed)[1]
    else:
        part = getattr(data, split)
    return Split(model_images(run, part.images, data.name), part.labels)


def top_activations(
    run: LoadedRun | Run,
    layer: str,
    k: int = 9,
    data: Dataset | Split | None = None,
    split: str = "test",
    max_images=None,
    *,
    device: str = "auto",
) -> TopActivations:
    """Scan `split` of the run's data (or `data`) and keep, per filter of `layer`, the k images it responds to most.

    `run`: a Run, whose best weights are loaded on `device`, or a LoadedRun (the scan runs where it is loaded).
    """
    if k < 1:
        raise DataError(f"k must be at least 1. Received: {k}")
    record = run.run if isinstance(run, LoadedRun) else run
    rf, jump, offset = receptive_window(record.spec, layer)
    part = _split(record, data, split)
    images, labels = part.images[:max_images], part.labels[:max_images]
    if len(images) == 0:
        raise DataError(f"the {split} split has no images to scan")
    loaded = load(run, device)
    model = loaded.model
    was_training = model.training
    model.train(False)
    best_v = best_i = best_p = None  # C×k: values, image indices, flat positions so far
    with torch.inference_mode():
        model.check_input(to_tensor(images[:1]).to(loaded.device))
        for start in range(0, len(images), BATCH):
            x = loaded.tensor(images[start : start + BATCH])
            for name, module in model.named_children():  # forward only as far as the layer
                x = module(x)
                if name == layer:
                    break
            n, channels, h, w = x.shape
            values, where = x.reshape(n, channels, h * w).max(dim=2)  # n×C: each image's maximum per filter
            values, where = values.T, where.T  # C×n
            index = torch.arange(start, start + n, device=x.device).expand(channels, n)
            if best_v is not None:  # the candidates: the best so far and this batch
                values, index, where = (
                    torch.cat(pair, 1) for pair in ((best_v, values), (best_i, index), (best_p, where))
                )
            best_v, order = values.topk(min(k, values.shape[1]), dim=1)  # sorted, highest first
            best_i, best_p = index.gather(1, order), where.gather(1, order)
    model.train(was_training)
    height, width = images.shape[1:3]
    rows = []
    for values, indices, positions in zip(best_v.tolist(), best_i.tolist(), best_p.tolist(), strict=True):
        hits = []
        for value, i, p in zip(values, indices, positions, strict=True):
            r, col = divmod(p, w)
            top, left = r * jump[0] - offset[0], col * jump[1] - offset[1]
            box = (max(top, 0), max(left, 0), min(top + rf[0], height), min(left + rf[1], width))
            patch = images[i, box[0] : box[2], box[1] : box[3]].copy()
            hits.append(Hit(i, int(labels[i]), value, (r, col), box, patch, images[i].copy()))
        rows.append(tuple(hits))
    return TopActivations(
        layer, k, (h, w, channels), rf, jump, offset, split, len(images), tuple(record.data.classes), tuple(rows)
    )


def top_activations_figure(result: TopActivations, filters=None) -> Figure:
    """A grid: one row per filter (default: the first 16), its top images left to right, each dimmed outside the input
    window its maximum sees (its receptive field, clipped) and that window boxed in red; above each tile the value and
    the image's true class.

    The tiles are the images as the network saw them (uint8 H×W×C, gray or RGB). Returns a new matplotlib Figure
    (100 dpi, 1.45 inches a tile) with one axes per tile (rows × the most images a chosen filter has). Raises DataError
    if `filters` is empty or names a filter outside 0..F−1.
    """
    from matplotlib.patches import Rectangle

    from convscope.show import Picture

    chosen = list(range(min(16, len(result.filters)))) if filters is None else list(filters)
    bad = [f for f in chosen if not 0 <= f < len(result.filters)]
    if bad or not chosen:
        raise DataError(f"filters must be in 0..{len(result.filters) - 1}. Received: {bad or chosen}")
    cols = max(len(result.filters[f]) for f in chosen)
    tile = 1.45  # inches per tile: a 28-pixel image at ~1.4 in shows its pixels and the box clearly
    size = (max(4.5, 1.3 + tile * cols), 1.1 + 1.12 * tile * len(chosen))
    fig = Picture(figsize=size, dpi=100, layout="constrained")
    axes = fig.subplots(len(chosen), cols, squeeze=False)
    for row, f in zip(axes, chosen, strict=True):
        for col, ax in enumerate(row):
            ax.set_xticks([])
            ax.set_yticks([])
            if col >= len(result.filters[f]):
                ax.set_axis_off()
                continue
            hit = result.filters[f][col]
            _draw_tile(ax, hit, Rectangle)
            name = result.classes[hit.label] if 0 <= hit.label < len(result.classes) else str(hit.label)
            ax.set_title(f"{hit.value:.2f} · {name}", fontsize=8, pad=2)
        row[0].set_ylabel(f"filter {f}", rotation=0, ha="right", va="center", fontsize=10)
    h, w, c = result.map_shape
    rf = f"{result.receptive_field[0]}×{result.receptive_field[1]}"
    how = (
        f"{result.images_scanned} images scanned. Value = the filter's maximum over the map (above each tile, with "
        f"the true class); red box = the {rf} input window that maximum sees (its receptive field, clipped)"
    )
    chars = int(size[0] * 72 / (0.55 * 10))  # characters of 10-point text that fit the figure's width
    what = f"{result.layer} ({h}×{w}×{c}): the {result.k} {result.split} images with the highest response, per filter"
    fig.suptitle(textwrap.fill(what, chars) + "\n" + textwrap.fill(how, chars), fontsize=10)
    return fig


def save_top_activations_png(result: TopActivations, path: str | Path, filters=None) -> Path:
    """top_activations_figure saved as a PNG at `path` (folders made as needed); returns the path."""
    return top_activations_figure(result, filters).save(path)


def _draw_tile(ax, hit: Hit, rectangle) -> None:
    """The image, dimmed outside the window, with the window outlined."""
    image = hit.image.astype(np.float32)
    top, left, bottom, right = hit.window
    dim = np.full(image.shape[:2], 0.45, dtype=np.float32)
    dim[top:bottom, left:right] = 1.0
    shown = image * dim[:, :, None]
    if shown.shape[2] == 1:
        ax.imshow(shown[:, :, 0], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    else:
        ax.imshow(shown.astype(np.uint8), interpolation="nearest")
    box = rectangle((left - 0.5, top - 0.5), right - left, bottom - top, fill=False, edgecolor="#e8202a", linewidth=1.6)
    ax.add_patch(box)
