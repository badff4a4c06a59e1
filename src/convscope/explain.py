"""One output value of a convolution or a pool, step by step, from real numbers.

`explain_conv` / `explain_pool` take a one-channel input (a photo turned gray, or a small array), compute the whole
output feature map with the NumPy reference, and keep everything a learner needs to follow one position: the padded
input, the window that position reads, the filter, the element-wise products and their sum (or the max / min / mean
for pools). `walkthrough_text` says it in words; `convscope.explain_plot` draws it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
from PIL import Image

from convscope import reference
from convscope.data.images import describe, open_image, resolve_image, to_array
from convscope.errors import DataError, SpecError
from convscope.shapes import infer
from convscope.spec import Conv, Layer, NetSpec, Pair, Pool

# Classic 3×3 filters people meet first. Deep-learning "convolution" does not flip the filter, so edge-x is
# positive where the image gets darker from left to right.
NAMED_FILTERS: dict[str, list[list[float]]] = {
    "edge-x": [[1, 0, -1], [2, 0, -2], [1, 0, -1]],  # Sobel: vertical edges (change along x)
    "edge-y": [[1, 2, 1], [0, 0, 0], [-1, -2, -1]],  # Sobel: horizontal edges (change along y)
    "blur": [[1 / 9] * 3] * 3,  # box blur: the mean of the window
    "sharpen": [[0, -1, 0], [-1, 5, -1], [0, -1, 0]],
    "outline": [[-1, -1, -1], [-1, 8, -1], [-1, -1, -1]],  # Laplacian-like: edges in every direction
    "emboss": [[-2, -1, 0], [-1, 1, 1], [0, 1, 2]],
    "identity": [[0, 0, 0], [0, 1, 0], [0, 0, 0]],
}


@dataclass(frozen=True)
class Walkthrough:
    layer: Layer  # the Conv (1 filter, no bias, no activation) or Pool being explained
    source: str  # where the input came from and how it was converted
    input: np.ndarray  # H×W, float64
    pads: tuple[int, int, int, int]  # top, bottom, left, right
    padded: np.ndarray  # (top + H + bottom)×(left + W + right); conv pads with 0, max/min pools with ∓inf
    at: Pair  # output (row, column)
    window: np.ndarray  # kh×kw: the padded input that output position reads
    is_padding: np.ndarray  # kh×kw bool: which window cells are padding
    filter: np.ndarray | None  # kh×kw (conv only)
    filter_name: str
    value: float  # the output value at `at`
    output: np.ndarray  # Ho×Wo, the whole output feature map
    formula: str  # how the output size came out

    @property
    def corner(self) -> Pair:
        """Top-left of the window in padded coordinates."""
        return (self.at[0] * self.layer.stride[0], self.at[1] * self.layer.stride[1])

    @property
    def products(self) -> np.ndarray | None:
        return None if self.filter is None else self.window * self.filter


def parse_array(text: str, what: str = "--array") -> np.ndarray:
    """'1 2 3; 4 5 6' -> a 2×3 float array (rows separated by ';', values by spaces or commas)."""
    rows = [re.split(r"[\s,]+", row.strip()) for row in text.strip().strip(";").split(";")]
    try:
        values = [[float(v) for v in row] for row in rows]
    except ValueError:
        raise DataError(
            f"{what} must be numbers, rows separated by ';' (e.g. '1 0 -1; 2 0 -2'). Received: {text!r}"
        ) from None
    if any(len(row) != len(values[0]) for row in values) or not values[0]:
        lengths = ", ".join(str(len(row)) for row in values)
        raise DataError(f"{what}: every row needs the same number of values. Received rows of {lengths}")
    return np.array(values, dtype=np.float64)


def load_filter(name_or_numbers: str) -> tuple[np.ndarray, str]:
    """A named filter (edge-x, blur, ...) or numbers like '1 0 -1; 2 0 -2; 1 0 -1'."""
    if name_or_numbers in NAMED_FILTERS:
        return np.array(NAMED_FILTERS[name_or_numbers], dtype=np.float64), name_or_numbers
    if re.fullmatch(r"[a-z][a-z\-]*", name_or_numbers):
        raise DataError(f"unknown filter {name_or_numbers!r}. Named filters: {', '.join(NAMED_FILTERS)}, or numbers")
    kernel = parse_array(name_or_numbers, "--filter")
    return kernel, "custom"


def load_input(image: str | None, array: str | None, resize: Pair | None) -> tuple[np.ndarray, str]:
    """The one-channel input to explain: a small array as given, or an image turned gray (and resized)."""
    if array is not None:
        x = parse_array(array)
        return x, f"the array given ({x.shape[0]}×{x.shape[1]})"
    path = resolve_image(image or "chelsea")
    img = open_image(path)
    before = describe(img)
    if resize is not None:
        # BOX averages the pixels each new pixel covers: no aliasing when a photo shrinks to a few dozen pixels.
        img = img.resize((resize[1], resize[0]), resample=Image.Resampling.BOX)
    gray = to_array(img, channels=1)[:, :, 0].astype(np.float64)
    size = f", resized to {gray.shape[0]}×{gray.shape[1]}" if resize is not None else ""
    return gray, f"{path.name} ({before} → gray, values 0–255{size})"


def explain_conv(
    x: np.ndarray,
    kernel: np.ndarray,
    stride: int | Pair = 1,
    padding: str | int | Pair = "valid",
    at: Pair | None = None,
    source: str = "",
    filter_name: str = "custom",
) -> Walkthrough:
    """Follow one output value of a one-filter convolution (no bias, no activation) of the H×W input `x`."""
    kernel = np.asarray(kernel, dtype=np.float64)
    layer = Conv(1, size=kernel.shape, stride=stride, padding=padding, activation="none", bias=False)
    formula = _lint(layer, x)
    output = reference.conv2d(x[:, :, None], kernel[:, :, None, None], stride=layer.stride, padding=layer.padding)
    return _walkthrough(layer, x, output[:, :, 0], 0.0, at, source, kernel, filter_name, formula)


def explain_pool(
    x: np.ndarray,
    kind: str = "max",
    size: int | Pair = 2,
    stride: int | Pair | None = None,
    padding: str | int | Pair = "valid",
    at: Pair | None = None,
    source: str = "",
) -> Walkthrough:
    """Follow one output value of a max / min / average pool of the H×W input `x`."""
    layer = Pool(kind, size=size, stride=stride, padding=padding)
    formula = _lint(layer, x)
    output = reference.pool2d(x[:, :, None], kind, size=layer.size, stride=layer.stride, padding=layer.padding)
    fill = {"max": -np.inf, "min": np.inf, "avg": np.nan}[kind]  # avg: padding is left out, not counted
    return _walkthrough(layer, x, output[:, :, 0], fill, at, source, None, "", formula)


def _lint(layer: Layer, x: np.ndarray) -> str:
    """Check the window fits with the same linter `convscope summary` uses; return the output-size formula."""
    if np.ndim(x) != 2:
        raise DataError(f"explain works on one channel (H×W). Received shape {np.shape(x)}")
    try:
        return infer(NetSpec(input=(x.shape[0], x.shape[1], 1), layers=[layer])).layers[0].formula
    except SpecError as err:
        raise SpecError(f"{layer.label()}: {err.detail}") from None


def _walkthrough(layer, x, output, fill, at, source, kernel, filter_name, formula) -> Walkthrough:
    x = np.asarray(x, dtype=np.float64)
    ho, wo = output.shape
    at = (ho // 2, wo // 2) if at is None else at
    if not (0 <= at[0] < ho and 0 <= at[1] < wo):
        raise DataError(
            f"output position (row {at[0]}, column {at[1]}) is outside the {ho}×{wo} output map: "
            f"rows go 0–{ho - 1}, columns 0–{wo - 1}"
        )
    pads = reference.padding_amounts(x.shape, layer.size, layer.stride, layer.padding)
    padded = reference.pad(x[:, :, None], pads, fill)[:, :, 0]
    mask = reference.pad(np.zeros_like(x)[:, :, None], pads, 1.0)[:, :, 0] > 0
    win = reference.window(padded[:, :, None], *at, layer.size, layer.stride)[:, :, 0]
    is_pad = reference.window(mask[:, :, None], *at, layer.size, layer.stride)[:, :, 0]
    return Walkthrough(
        layer, source, x, pads, padded, at, win, is_pad, kernel, filter_name, float(output[at]), output, formula
    )


def _fmt(v: float) -> str:
    if np.isnan(v):
        return "·"
    if np.isinf(v):
        return "+inf" if v > 0 else "-inf"
    return f"{v:.4g}" if v != int(v) else str(int(v))


def _grid(a: np.ndarray, mark: np.ndarray | None = None) -> list[str]:
    cells = [
        [_fmt(v) + ("*" if mark is not None and mark[r, c] else "") for c, v in enumerate(row)]
        for r, row in enumerate(a)
    ]
    width = max(len(cell) for row in cells for cell in row)
    return [" ".join(cell.rjust(width) for cell in row) for row in cells]


def walkthrough_text(w: Walkthrough) -> str:
    layer, (i, j), (top, bottom, left, right) = w.layer, w.at, w.pads
    (kh, kw), (r0, c0) = layer.size, w.corner
    h, wd = w.input.shape
    lines = [
        f"explain {layer.label()}" + (f", filter {w.filter_name}" if w.filter is not None else ""),
        f"input: {w.source}",
    ]
    lines.append(
        f"input {h}×{wd}; padding top {top}, bottom {bottom}, left {left}, right {right} → padded "
        f"{w.padded.shape[0]}×{w.padded.shape[1]}"
    )
    lines.append(
        f"output (row {i}, column {j}) reads the {kh}×{kw} window whose top-left corner is padded "
        f"(row {r0}, column {c0}) = (stride × row, stride × column) = ({layer.stride[0]}×{i}, {layer.stride[1]}×{j})"
    )
    rows = (max(r0 - top, 0), min(r0 - top + kh, h) - 1)
    cols = (max(c0 - left, 0), min(c0 - left + kw, wd) - 1)
    n_pad = int(w.is_padding.sum())
    lines.append(
        f"it covers input {_span('row', rows)}, {_span('column', cols)}"
        + (f" and {n_pad} padding cell{'s' if n_pad > 1 else ''}" if n_pad else "")
    )
    lines.append("")
    marked = "   (* = padding)" if w.is_padding.any() else ""
    lines += _blocks(w, marked)
    lines.append("")
    ho, wo = w.output.shape
    lines.append(f"output feature map: {ho}×{wo}×1   size: {w.formula}")
    return "\n".join(lines)


def _span(word: str, span: Pair) -> str:
    return f"{word} {span[0]}" if span[0] == span[1] else f"{word}s {span[0]}–{span[1]}"


def _blocks(w: Walkthrough, marked: str) -> list[str]:
    window = _grid(w.window, w.is_padding)
    if w.filter is not None:
        filt, prods = _grid(w.filter), _grid(w.products)
        widths = [max(len(s) for s in block) for block in (window, filt, prods)]
        head = ["window" + marked, "filter", "window × filter"]
        out = ["   ".join(t.ljust(wd) for t, wd in zip(head, widths, strict=True))]
        out += [
            "   ".join(a.ljust(wd) for a, wd in zip(row, widths, strict=True))
            for row in zip(window, filt, prods, strict=True)
        ]
        out.append(
            f"sum of the {w.products.size} products = {_fmt(w.products.sum())} (no bias) → output value {_fmt(w.value)}"
        )
        return out
    kind = w.layer.kind
    real = w.window[~w.is_padding]
    out = ["window" + marked] + window
    if kind == "avg":
        out.append(
            f"mean of the {real.size} real values (padding left out) = {_fmt(real.sum())}/{real.size} = {_fmt(w.value)}"
        )
    else:
        pad_value = "-inf" if kind == "max" else "+inf"
        note = f" (padding is {pad_value}, so it never wins)" if w.is_padding.any() else ""
        out.append(f"{kind} of the window = {_fmt(w.value)}{note}")
    return out
