"""The NumPy reference on cases small enough to check by hand; every expected number is worked out in a comment."""

import numpy as np
import pytest

from convscope.errors import DataError
from convscope.reference import conv2d, global_pool, pad, padding_amounts, pool2d, window

# 4×4, one channel:   0  1  2  3
#                     4  5  6  7
#                     8  9 10 11
#                    12 13 14 15
X4 = np.arange(16.0).reshape(4, 4, 1)
# 3×3, one channel:   1 2 3 / 4 5 6 / 7 8 9
X3 = np.arange(1.0, 10.0).reshape(3, 3, 1)


def filt(rows) -> np.ndarray:
    """A single 2-D filter as weights (kh, kw, 1, 1)."""
    return np.array(rows, dtype=float)[:, :, None, None]


def test_pad_places_input_and_fills_the_border():
    out = pad(np.ones((2, 2, 1)), (1, 0, 0, 2), value=-7.0)[..., 0]
    np.testing.assert_array_equal(out, [[-7, -7, -7, -7], [1, 1, -7, -7], [1, 1, -7, -7]])


def test_window_is_the_slice_an_output_sees():
    # Output (1, 0) with 2×2 windows moved by 2 starts at row 2, column 0.
    np.testing.assert_array_equal(window(X4, 1, 0, 2, 2)[..., 0], [[8, 9], [12, 13]])
    # Non-square: 2×3 window, stride (1, 2); output (1, 0) starts at row 1·1 = 1, column 0·2 = 0.
    np.testing.assert_array_equal(window(X4, 1, 0, (2, 3), (1, 2))[..., 0], [[4, 5, 6], [8, 9, 10]])


def test_conv_valid_3x3_ones_sums_each_window():
    # Top-left window 0+1+2+4+5+6+8+9+10 = 45; one column right adds 1 to each of 9 values: 54;
    # one row down adds 4 to each: 81; both: 90. Bias 0.5 on top.
    out = conv2d(X4, np.ones((3, 3, 1, 1)), bias=np.array([0.5]))
    assert out.shape == (2, 2, 1)
    np.testing.assert_array_equal(out[..., 0], [[45.5, 54.5], [81.5, 90.5]])


def test_conv_is_not_flipped():
    # A filter that keeps only its top-right value. Windows start at (0,0), (0,1), (1,0), (1,1), so their
    # top-right values are 2, 3, 6, 7. A flipped (textbook "convolution") filter would give bottom-left: 8, 9, 12, 13.
    np.testing.assert_array_equal(conv2d(X4, filt([[0, 0, 1], [0, 0, 0], [0, 0, 0]]))[..., 0], [[2, 3], [6, 7]])
    # Centre minus top-left: every centre is its window's top-left + 5 (one row, one column on), so 5 everywhere.
    np.testing.assert_array_equal(conv2d(X4, filt([[-1, 0, 0], [0, 1, 0], [0, 0, 0]]))[..., 0], [[5, 5], [5, 5]])


def test_conv_two_channels_two_filters():
    # Channel 0 is X3, channel 1 is 10·X3. Filter 0 takes channel 0's sum, filter 1 channel 1 minus channel 0.
    x = np.concatenate([X3, 10 * X3], axis=2)
    w = np.zeros((3, 3, 2, 2))
    w[:, :, 0, 0] = 1.0
    w[:, :, 1, 1], w[:, :, 0, 1] = 1.0, -1.0
    out = conv2d(x, w, bias=np.array([0.0, 1.0]))
    # 1+…+9 = 45; 450 − 45 + 1 = 406.
    np.testing.assert_array_equal(out.reshape(-1), [45.0, 406.0])


def test_same_stride2_even_size_pads_bottom_right():
    # 4 rows, 3×3 window, stride 2: out ⌈4/2⌉ = 2, total padding (2−1)·2 + 3 − 4 = 1, all of it bottom/right.
    assert padding_amounts((4, 4), 3, 2, "same") == (0, 1, 0, 1)
    out = conv2d(X4, np.ones((3, 3, 1, 1)), stride=2, padding="same")[..., 0]
    # (0,0): rows 0-2, cols 0-2 = 45. (0,1): cols 2-3 (4 is padding) = 2+3+6+7+10+11 = 39.
    # (1,0): rows 2-3, cols 0-2 = 8+9+10+12+13+14 = 66. (1,1): 10+11+14+15 = 50.
    np.testing.assert_array_equal(out, [[45, 39], [66, 50]])
    explicit = conv2d(pad(X4, (0, 1, 0, 1)), np.ones((3, 3, 1, 1)), stride=2)[..., 0]
    np.testing.assert_array_equal(out, explicit)
    wrong_side = conv2d(pad(X4, (1, 0, 1, 0)), np.ones((3, 3, 1, 1)), stride=2)[..., 0]
    assert wrong_side[0, 0] == 0 + 1 + 4 + 5  # padding top/left instead shifts every window: the side matters


def test_same_stride2_odd_size_pads_evenly():
    # 5 rows, 3×3, stride 2: out ⌈5/2⌉ = 3, total (3−1)·2 + 3 − 5 = 2 → 1 top, 1 bottom.
    x = np.arange(25.0).reshape(5, 5, 1)
    assert padding_amounts((5, 5), 3, 2, "same") == (1, 1, 1, 1)
    w = np.random.default_rng(0).normal(size=(3, 3, 1, 1))
    out = conv2d(x, w, stride=2, padding="same")
    assert out.shape == (3, 3, 1)
    np.testing.assert_allclose(out, conv2d(pad(x, (1, 1, 1, 1)), w, stride=2), rtol=0, atol=1e-12)


def test_same_even_kernel_stride1_extra_goes_bottom_right():
    # 2×2 window on 3×3, stride 1: total 1 → (0, 1). The filter picks its top-left value, so out = x itself.
    out = conv2d(X3, filt([[1, 0], [0, 0]]), padding="same")
    np.testing.assert_array_equal(out, X3)


def test_int_and_pair_padding():
    # Pad 1 everywhere with a 1×1 filter of 2: a 6×6 map, zeros on the border, 2·x inside.
    out = conv2d(X4, filt([[2]]), padding=1)[..., 0]
    assert out.shape == (6, 6)
    assert out[0].sum() == 0 and out[:, 0].sum() == 0
    np.testing.assert_array_equal(out[1:5, 1:5], 2 * X4[..., 0])
    assert conv2d(X4, filt([[1]]), padding=(2, 0)).shape == (8, 4, 1)  # 2 rows top and bottom, no columns


def test_conv_matches_shift_and_add():
    # An independent formulation: a convolution is a sum over filter taps (a, b) of the input shifted by (a, b),
    # sampled every stride, times that tap's Cin×Cout matrix.
    rng = np.random.default_rng(1)
    x, w, b = rng.normal(size=(7, 6, 3)), rng.normal(size=(3, 2, 3, 4)), rng.normal(size=4)
    for stride, padding in [((1, 1), "valid"), ((2, 3), "same"), ((2, 1), (1, 2)), ((3, 2), 1)]:
        got = conv2d(x, w, b, stride=stride, padding=padding)
        xpad = pad(x, padding_amounts(x.shape[:2], (3, 2), stride, padding))
        ho, wo = got.shape[:2]
        want = np.zeros((ho, wo, 4)) + b
        for a in range(3):
            for c in range(2):
                tap = xpad[a : a + (ho - 1) * stride[0] + 1 : stride[0], c : c + (wo - 1) * stride[1] + 1 : stride[1]]
                want += tap @ w[a, c]
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


def test_min_pool_padding_never_wins():
    # 2×2 windows, stride 2, 'same' on 3×3: one row/column of padding, bottom/right. Windows:
    # {1,2,4,5} → 1, {3,6} → 3, {7,8} → 7, {9} → 9. Zero padding would have given 0 for the last three.
    out = pool2d(X3, "min", size=2, padding="same")[..., 0]
    np.testing.assert_array_equal(out, [[1, 3], [7, 9]])
    assert np.isfinite(out).all()


def test_max_pool_of_negatives_ignores_padding():
    # The same windows of −x: the max is −(the min) = −1, −3, −7, −9, never the padding's 0.
    out = pool2d(-X3, "max", size=2, padding="same")[..., 0]
    np.testing.assert_array_equal(out, [[-1, -3], [-7, -9]])


def test_avg_pool_same_excludes_padding():
    # Same windows: mean(1,2,4,5) = 3, mean(3,6) = 4.5, mean(7,8) = 7.5, mean(9) = 9.
    np.testing.assert_array_equal(pool2d(X3, "avg", size=2, padding="same")[..., 0], [[3, 4.5], [7.5, 9]])
    # 3×3 windows, stride 1, 'same' (1 on every side): corner mean(1,2,4,5) = 3, edge mean(1..6) = 3.5, centre 5.
    out = pool2d(X3, "avg", size=3, stride=1, padding="same")[..., 0]
    assert out[0, 0] == 3 and out[0, 1] == 3.5 and out[1, 1] == 5
    assert out[2, 2] == np.mean([5, 6, 8, 9])  # 7: zero padding counted would give 28/9


def test_pool_valid_default_stride_and_channels():
    # Default stride = size: 2×2 windows side by side. Channel 1 is −x, so its max is −(min of x).
    x = np.concatenate([X4, -X4], axis=2)
    out = pool2d(x, "max")
    np.testing.assert_array_equal(out[..., 0], [[5, 7], [13, 15]])
    np.testing.assert_array_equal(out[..., 1], [[0, -2], [-8, -10]])
    np.testing.assert_array_equal(pool2d(X4, "avg")[..., 0], [[2.5, 4.5], [10.5, 12.5]])  # (0+1+4+5)/4 = 2.5
    # Overlapping windows: 3×3, stride 1 → 2×2, min of each window is its top-left.
    np.testing.assert_array_equal(pool2d(X4, "min", size=3, stride=1)[..., 0], [[0, 1], [4, 5]])


def test_global_pool():
    x = np.concatenate([X3, -X3], axis=2)
    np.testing.assert_array_equal(global_pool(x, "max"), [9, -1])
    np.testing.assert_array_equal(global_pool(x, "min"), [1, -9])
    np.testing.assert_array_equal(global_pool(x, "avg"), [5, -5])


def test_errors_are_data_errors():
    with pytest.raises(DataError, match=r"\(H, W, C\)"):
        conv2d(np.ones((4, 4)), np.ones((3, 3, 1, 1)))
    with pytest.raises(DataError, match="expect 2 input channels"):
        conv2d(np.ones((4, 4, 3)), np.ones((3, 3, 2, 1)))
    with pytest.raises(DataError, match="bias"):
        conv2d(np.ones((4, 4, 1)), np.ones((3, 3, 1, 2)), bias=np.ones(3))
    with pytest.raises(DataError, match="does not fit"):
        conv2d(np.ones((2, 4, 1)), np.ones((3, 3, 1, 1)))
    with pytest.raises(DataError, match="kind"):
        pool2d(X4, "median")
    with pytest.raises(DataError, match="no real value"):
        pool2d(X4, "max", size=2, padding=2)  # a 2×2 window in the top-left corner sees only padding
