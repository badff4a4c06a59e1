"""Convolution and pooling in plain NumPy, written to be read.

This is the test oracle for the torch layers and the engine of `convscope explain`, so it favours the
textbook picture over speed: pad the input, then for every output position (i, j) take the window of
input values that position sees and reduce it to one number. Arrays are float64 and laid out H×W×C, the
order people write image shapes in (the torch layers use N×C×H×W).

    >>> x = np.arange(16.0).reshape(4, 4, 1)            # a 4×4 image with one channel
    >>> conv2d(x, np.ones((3, 3, 1, 1)))[..., 0]        # 3×3 filter of ones, 'valid': window sums
    array([[45., 54.],
           [81., 90.]])
    >>> pool2d(x, "max")[..., 0]                        # 2×2 windows, stride 2
    array([[ 5.,  7.],
           [13., 15.]])

Padding follows `convscope.shapes.padding_2d`: 'valid' adds nothing, 'same' adds what makes the output
⌈in / stride⌉ (TensorFlow's split: the odd one out goes bottom/right), an int p adds p on every side.
Padding never wins a pool: max pools pad with -inf, min pools with +inf, and averages count real values only.
"""

from __future__ import annotations

import numpy as np

from convscope.errors import DataError
from convscope.shapes import padding_2d
from convscope.spec_layers import POOL_KINDS, Pair, as_padding, as_pair, shape_text


def pad(x: np.ndarray, pads: tuple[int, int, int, int], value: float = 0.0) -> np.ndarray:
    """`x` (H, W, C) with rows added top and bottom and columns left and right, all filled with `value`.

    pads = (top, bottom, left, right). Returns (top + H + bottom, left + W + right, C).

    >>> pad(np.ones((1, 2, 1)), (1, 0, 0, 1), value=0.0)[..., 0]
    array([[0., 0., 0.],
           [1., 1., 0.]])
    """
    x = _feature_map(x, "pad")
    top, bottom, left, right = pads
    out = np.full((top + x.shape[0] + bottom, left + x.shape[1] + right, x.shape[2]), value, dtype=np.float64)
    out[top : top + x.shape[0], left : left + x.shape[1]] = x
    return out


def window(xpad: np.ndarray, i: int, j: int, size: int | Pair, stride: int | Pair) -> np.ndarray:
    """The (kh, kw, C) window of an already padded input that produces output row `i`, column `j`.

    The window starts `stride` input positions further for each step of the output: at row i·sh, column j·sw.
    This is the one definition of "which inputs an output sees"; conv2d and pool2d both use it.

    >>> window(np.arange(16.0).reshape(4, 4, 1), 1, 0, size=2, stride=2)[..., 0]
    array([[ 8.,  9.],
           [12., 13.]])
    """
    (kh, kw), (sh, sw) = as_pair(size), as_pair(stride)
    return xpad[i * sh : i * sh + kh, j * sw : j * sw + kw]


def conv2d(
    x: np.ndarray,
    weights: np.ndarray,
    bias: np.ndarray | None = None,
    stride: int | Pair = 1,
    padding: str | int | Pair = "valid",
) -> np.ndarray:
    """Convolve `x` (H, W, Cin) with `weights` (kh, kw, Cin, Cout); returns (Ho, Wo, Cout).

    Each output value is one filter laid on one window: sum(window × filter) + bias. (Like every deep
    learning library, this is cross-correlation: the filter is not flipped.)

    >>> x = np.arange(9.0).reshape(3, 3, 1)
    >>> w = np.zeros((3, 3, 1, 1)); w[1, 1] = 1.0       # a filter that copies its centre
    >>> conv2d(x, w, padding="same")[..., 0]
    array([[0., 1., 2.],
           [3., 4., 5.],
           [6., 7., 8.]])
    """
    x = _feature_map(x, "conv2d")
    weights = np.asarray(weights, dtype=np.float64)
    if weights.ndim != 4:
        raise DataError(f"conv2d: weights must be (kh, kw, Cin, Cout). Received shape {weights.shape}")
    kh, kw, cin, cout = weights.shape
    if cin != x.shape[2]:
        raise DataError(
            f"conv2d: weights expect {cin} input channels. Received an input of shape {shape_text(x.shape)}"
        )
    if bias is not None:
        bias = np.asarray(bias, dtype=np.float64)
        if bias.shape != (cout,):
            raise DataError(f"conv2d: bias must have shape ({cout},), one per filter. Received shape {bias.shape}")
    xpad, (ho, wo) = _pad_for_windows(x, (kh, kw), stride, padding, value=0.0, who="conv2d")
    out = np.zeros((ho, wo, cout))
    for i in range(ho):
        for j in range(wo):
            patch = window(xpad, i, j, (kh, kw), stride)  # (kh, kw, Cin)
            for f in range(cout):
                out[i, j, f] = np.sum(patch * weights[..., f])
    if bias is not None:
        out += bias
    return out


def pool2d(
    x: np.ndarray,
    kind: str,
    size: int | Pair = 2,
    stride: int | Pair | None = None,
    padding: str | int | Pair = "valid",
) -> np.ndarray:
    """Max, min or average of each `size` window of `x` (H, W, C), per channel; returns (Ho, Wo, C).

    `stride` defaults to `size` (windows side by side, not overlapping).

    >>> x = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]])[..., None]
    >>> pool2d(x, "avg", size=2, padding="same")[..., 0]   # padding added bottom/right, not counted
    array([[3. , 4.5],
           [7.5, 9. ]])
    """
    if kind not in POOL_KINDS:
        raise DataError(f"pool2d: kind must be one of {', '.join(POOL_KINDS)}. Received: {kind!r}")
    x = _feature_map(x, "pool2d")
    stride = size if stride is None else stride
    (kh, kw), (top, _, left, _) = as_pair(size), padding_amounts(x.shape[:2], size, stride, padding)
    if top >= kh or left >= kw:
        raise DataError(f"pool2d: padding of {top}×{left} leaves whole {kh}×{kw} windows with no real value to pool")
    if kind == "avg":
        # The mean of the real values only: sum the zero-padded values, divide by how many are real.
        xpad, (ho, wo) = _pad_for_windows(x, size, stride, padding, value=0.0, who="pool2d")
        real, _ = _pad_for_windows(np.ones_like(x), size, stride, padding, value=0.0, who="pool2d")
    else:
        # -inf never wins a max and +inf never wins a min, so the padding cannot be the answer.
        fill = -np.inf if kind == "max" else np.inf
        xpad, (ho, wo) = _pad_for_windows(x, size, stride, padding, value=fill, who="pool2d")
    out = np.zeros((ho, wo, x.shape[2]))
    for i in range(ho):
        for j in range(wo):
            patch = window(xpad, i, j, size, stride)  # (kh, kw, C)
            if kind == "max":
                out[i, j] = patch.max(axis=(0, 1))
            elif kind == "min":
                out[i, j] = patch.min(axis=(0, 1))
            else:
                out[i, j] = patch.sum(axis=(0, 1)) / window(real, i, j, size, stride).sum(axis=(0, 1))
    return out


def global_pool(x: np.ndarray, kind: str) -> np.ndarray:
    """One number per channel: the max, min or mean of the whole H×W map. (H, W, C) -> (C,)."""
    if kind not in POOL_KINDS:
        raise DataError(f"global_pool: kind must be one of {', '.join(POOL_KINDS)}. Received: {kind!r}")
    x = _feature_map(x, "global_pool")
    reduce = {"max": np.max, "min": np.min, "avg": np.mean}[kind]
    return reduce(x, axis=(0, 1))


def padding_amounts(
    hw: Pair, size: int | Pair, stride: int | Pair, padding: str | int | Pair
) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) rows/columns a window layer adds to an H×W input; see shapes.padding_2d.

    >>> padding_amounts((4, 4), size=3, stride=2, padding="same")   # 1 in total: it goes bottom/right
    (0, 1, 0, 1)
    """
    return padding_2d(hw, as_pair(size), as_pair(stride), as_padding(padding))


def _pad_for_windows(x, size, stride, padding, value, who) -> tuple[np.ndarray, Pair]:
    """The padded input and the output (Ho, Wo); a DataError when the window does not fit."""
    (kh, kw), (sh, sw) = as_pair(size), as_pair(stride)
    top, bottom, left, right = padding_amounts(x.shape[:2], (kh, kw), (sh, sw), padding)
    xpad = pad(x, (top, bottom, left, right), value)
    if xpad.shape[0] < kh or xpad.shape[1] < kw:
        raise DataError(
            f"{who}: the {kh}×{kw} window does not fit. Received an input of {shape_text(x.shape)}"
            f" ({xpad.shape[0]}×{xpad.shape[1]} with padding)"
        )
    # Same count as shapes.out_size: how many stride steps the window can take, plus its first position.
    return xpad, ((xpad.shape[0] - kh) // sh + 1, (xpad.shape[1] - kw) // sw + 1)


def _feature_map(x, who: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 3:
        raise DataError(f"{who}: expected a feature map of shape (H, W, C). Received shape {x.shape}")
    return x
