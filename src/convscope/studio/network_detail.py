"""What the network page shows, as JSON: the whole network for one image (each layer's first maps as small PNGs, its
H×W×C and value range, the top classes) and the arithmetic of one conv output (convscope.inspect.conv_walk).

Maps are sent at their own size (one PNG pixel per value); the page draws every layer at one scale of pixels per
value, with nearest-neighbour drawing, so a pool visibly halves its input and every value stays one square.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from convscope.spec_layers import shape_text
from convscope.studio.guards import OutOfBounds
from convscope.studio.pictures import _model_lock, data_url, enlarged, fitted, gray, loaded_run

MAPS_SHOWN = 8  # maps per layer on the overview; the rest are counted ("+k more")
VALUES_SHOWN = 256  # a vector layer's values drawn as a strip
CHANNELS_SHOWN = 16  # input channels whose window, kernel and products the detail sends (all their sums are sent)
PADDING_COLOUR = (150, 190, 235)  # padding cells in a detail's input maps: light blue, never a gray value


def overview(path: Path, image: Path) -> dict[str, Any]:
    """The network for one image: the input as it sees it, then each layer in order (a base's stem and blocks
    first), with shape, kind, value range, its first MAPS_SHOWN maps (a vector layer: its values as a strip), and
    the top classes."""
    import torch

    from convscope.classify.predict import predict_image
    from convscope.inspect.featuremaps import layer_maps, map_layers
    from convscope.shapes import infer
    from convscope.tasks import DetectTask, task_of

    loaded = loaded_run(path)
    picture = fitted(loaded, image)
    spec = loaded.run.spec
    detector = task_of(loaded.run) is DetectTask
    infos = infer(spec).layers
    vectors = [info.name for info in infos if len(info.output_shape) != 3]
    with _model_lock:
        x = loaded.tensor(picture)
        maps = {m.name: m for m in layer_maps(loaded.model, x, map_layers(loaded.model))}
        with torch.inference_mode():
            _, kept = loaded.model.forward_intermediates(x, vectors)
        top = [] if detector else predict_image(loaded, picture, 5).top
    convs = set(spec.conv_names())
    layers = []
    for name in map_layers(loaded.model) + vectors:
        if name in maps:
            layers.append(_maps_entry(maps[name], name in convs))
    for info in infos:  # vector layers after the maps, in network order (flatten, dense, ...)
        if info.name in vectors:
            layers.append(_vector_entry(info, kept[info.name][0].float().cpu().numpy()))
    array = picture.array
    shown = array[:, :, 0] if array.shape[2] == 1 else array
    return {
        "input": {"png": data_url(shown), "large": data_url(enlarged(shown, 160)), "shape": shape_text(array.shape),
                  "conversion": picture.conversion},
        "layers": layers,
        "top": [{"class": c, "probability": p} for c, p in top],
        "detector": detector,
        "detail_layers": sorted(convs, key=spec.layer_names().index),
    }  # fmt: skip


def _maps_entry(layer, has_detail: bool) -> dict[str, Any]:
    low, high = float(layer.maps.min()), float(layer.maps.max())
    kind = "block" if "." in layer.name else _kind(layer.label)
    h, w, c = layer.shape
    shown = [{"index": i, "png": data_url(gray(m, low, high))} for i, m in enumerate(layer.maps[:MAPS_SHOWN])]
    return {
        "name": layer.name, "kind": kind, "label": layer.label, "shape": [h, w, c],
        "shape_text": shape_text(layer.shape), "min": low, "max": high, "maps": shown, "more": c - len(shown),
        "detail": has_detail,
    }  # fmt: skip


def _kind(label: str) -> str:
    return label.split(" ", 1)[0].split(",")[0]


def _vector_entry(info, values: np.ndarray) -> dict[str, Any]:
    values = values.reshape(-1)
    low, high = float(values.min()), float(values.max())
    strip = np.repeat(gray(values[:VALUES_SHOWN], low, high)[None], 8, axis=0)  # 8 rows: a visible strip
    return {
        "name": info.name, "kind": info.layer.layer_type, "label": info.label, "shape": list(info.output_shape),
        "shape_text": shape_text(info.output_shape), "min": low, "max": high, "maps": [],
        "strip": data_url(strip), "strip_values": min(len(values), VALUES_SHOWN), "more": 0, "detail": False,
    }  # fmt: skip


def detail(path: Path, image: Path, layer: str, filter: int, row: int, column: int) -> dict[str, Any]:
    """One conv output's arithmetic (inspect.conv_walk): per input channel its padded map with the window, the
    window, the kernel, the products and their sum; then the bias, the total, the activation and the value, with
    the network's own value beside it. 422 (OutOfBounds) for a layer without a detail or a position outside."""
    from convscope.inspect.conv_walk import conv_walk
    from convscope.shapes import infer

    loaded = loaded_run(path)
    spec = loaded.run.spec
    convs = spec.conv_names()
    if layer not in convs:
        names = spec.layer_names()
        if layer in names:
            what = f"{layer[:40]!r} is a {spec.layers[names.index(layer)].layer_type} layer"
        else:
            what = f"{layer[:40]!r} is not a layer of {spec.name}"
        having = ", ".join(convs) or "none (this network has no conv layer of its own)"
        raise OutOfBounds(f"layer must be a conv layer; these have a detail: {having}. {what}")
    h, w, c = next(info.output_shape for info in infer(spec).layers if info.name == layer)
    for word, value, top in (("filter", filter, c), ("row", row, h), ("column", column, w)):
        if not 0 <= value < top:
            raise OutOfBounds(f"{word} must be 0 to {top - 1} ({layer}'s output is {h}×{w}×{c}). Received: {value}")
    picture = fitted(loaded, image)
    with _model_lock:
        walk = conv_walk(loaded, loaded.tensor(picture), layer, filter, row, column)
    return walk_answer(walk)


def walk_answer(walk) -> dict[str, Any]:
    kh, kw, cin = walk.window.shape
    top, bottom, left, right = walk.pads
    channels = []
    for ch in range(min(cin, CHANNELS_SHOWN)):
        channels.append({
            "index": ch, "map": _padded_png(walk.input[:, :, ch], walk.pads),
            "window": walk.window[:, :, ch].tolist(), "kernel": walk.kernels[:, :, ch].tolist(),
            "products": walk.products[:, :, ch].tolist(), "sum": float(walk.sums[ch]),
        })  # fmt: skip
    difference = walk.value - walk.network_value
    return {
        "layer": walk.layer, "label": walk.label, "filter": walk.filter, "row": walk.at[0], "column": walk.at[1],
        "source": walk.source, "input_shape": shape_text(walk.input.shape),
        "output_shape": shape_text(walk.output_shape),
        "padded_shape": [walk.input.shape[0] + top + bottom, walk.input.shape[1] + left + right],
        "pads": list(walk.pads), "corner": list(walk.corner), "size": [kh, kw], "in_padding": walk.in_padding.tolist(),
        "channels": channels, "channels_total": cin, "sums": walk.sums.tolist(), "bias": walk.bias,
        "has_bias": walk.has_bias,
        "total": walk.total, "activation": walk.activation, "value": walk.value, "network": walk.network_value,
        "difference": difference, "agrees": walk.agrees(), "formula": walk.formula(), "note": walk.note,
    }  # fmt: skip


def _padded_png(values: np.ndarray, pads: tuple[int, int, int, int]) -> str:
    """One input channel (gray, its own range) with its padding drawn light blue around it, one pixel per value."""
    top, bottom, left, right = pads
    g = gray(values, float(values.min()), float(values.max()))
    out = np.empty((top + g.shape[0] + bottom, left + g.shape[1] + right, 3), np.uint8)
    out[:] = PADDING_COLOUR
    out[top : top + g.shape[0], left : left + g.shape[1]] = g[..., None]
    return data_url(out)
