"""The torch layers against the NumPy reference, on random sizes, strides and paddings, in both memory formats."""

from dataclasses import dataclass

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from convscope import reference
from convscope.errors import DataError, SpecError
from convscope.layers import Conv2d, GlobalPool2d, Pool2d, activation
from convscope.shapes import out_size, padding_2d
from convscope.spec import ACTIVATIONS

FORMATS = (torch.contiguous_format, torch.channels_last)
ATOL = 1e-9  # float64 throughout: differences are summation order only
SETTINGS = settings(max_examples=60, deadline=None)

sides = st.integers(1, 12)
pairs_of = lambda ints: st.one_of(ints, st.tuples(ints, ints))  # noqa: E731 - square (int) or non-square (h, w)
paddings = st.one_of(st.sampled_from(["valid", "same"]), pairs_of(st.integers(0, 2)))


@dataclass(frozen=True)
class Case:
    n: int
    c: int
    h: int
    w: int
    size: int | tuple[int, int]
    stride: int | tuple[int, int] | None
    padding: str | int | tuple[int, int]

    def out_hw(self) -> tuple[int, int]:
        """Expected output H, W from the shape arithmetic (stride None = size, as pools default)."""
        (kh, kw), (sh, sw) = _pair(self.size), _pair(self.stride if self.stride is not None else self.size)
        ph, pw = (self.padding, self.padding) if isinstance(self.padding, str | int) else self.padding
        return out_size(self.h, kh, sh, ph), out_size(self.w, kw, sw, pw)


@st.composite
def cases(draw, pool: bool = False) -> Case:
    strides = pairs_of(st.integers(1, 3))
    case = Case(
        n=draw(st.integers(1, 2)),
        c=draw(st.integers(1, 4)),
        h=draw(sides),
        w=draw(sides),
        size=draw(pairs_of(st.integers(1, 5))),
        stride=draw(st.one_of(st.none(), strides) if pool else strides),
        padding=draw(paddings),
    )
    assume(min(case.out_hw()) > 0)  # the window fits the (padded) input
    if pool:  # and no pooling window lies entirely in padding
        stride = case.stride if case.stride is not None else case.size
        top, _, left, _ = padding_2d((case.h, case.w), _pair(case.size), _pair(stride), _pad(case.padding))
        assume(top < _pair(case.size)[0] and left < _pair(case.size)[1])
    return case


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def _pad(p):
    return p if isinstance(p, str) else _pair(p)


def _inputs(case: Case, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(case.n, case.c, case.h, case.w, generator=g, dtype=torch.float64)


def _per_image(fn, x: torch.Tensor) -> np.ndarray:
    """Run a reference function on each image as H×W×C; returns N×C×Ho×Wo like torch."""
    return np.stack([fn(img.permute(1, 2, 0).numpy()) for img in x]).transpose(0, 3, 1, 2)


def _check_both_formats(layer, x: torch.Tensor, expected: np.ndarray, case: Case) -> None:
    for fmt in FORMATS:
        y = layer(x.to(memory_format=fmt))
        assert tuple(y.shape[2:]) == case.out_hw()
        if case.c > 1 and case.h * case.w > 1:  # with 1 channel or 1 pixel both layouts are the same memory
            assert y.is_contiguous(memory_format=fmt)  # channels_last stays channels_last
        np.testing.assert_allclose(y.detach().numpy(), expected, rtol=0, atol=ATOL)


@SETTINGS
@given(case=cases(), filters=st.integers(1, 4), bias=st.booleans(), seed=st.integers(0, 2**16))
def test_conv_matches_reference(case: Case, filters: int, bias: bool, seed: int):
    torch.manual_seed(seed)
    conv = Conv2d(case.c, filters, case.size, case.stride, case.padding, bias=bias).double()
    weights = conv.weight.detach().permute(2, 3, 1, 0).numpy()  # (Cout, Cin, kh, kw) -> (kh, kw, Cin, Cout)
    b = None if conv.bias is None else conv.bias.detach().numpy()
    x = _inputs(case, seed)
    expected = _per_image(lambda img: reference.conv2d(img, weights, b, case.stride, case.padding), x)
    _check_both_formats(conv, x, expected, case)


@SETTINGS
@given(case=cases(pool=True), kind=st.sampled_from(["max", "min", "avg"]), seed=st.integers(0, 2**16))
def test_pool_matches_reference(case: Case, kind: str, seed: int):
    pool = Pool2d(kind, case.size, case.stride, case.padding)
    x = _inputs(case, seed)
    expected = _per_image(lambda img: reference.pool2d(img, kind, case.size, case.stride, case.padding), x)
    assert np.isfinite(expected).all()
    _check_both_formats(pool, x, expected, case)


@SETTINGS
@given(n=st.integers(1, 2), c=st.integers(1, 4), h=sides, w=sides, kind=st.sampled_from(["max", "min", "avg"]))
def test_global_pool_matches_reference(n: int, c: int, h: int, w: int, kind: str):
    x = torch.randn(n, c, h, w, dtype=torch.float64)
    expected = np.stack([reference.global_pool(img.permute(1, 2, 0).numpy(), kind) for img in x])
    for fmt in FORMATS:
        y = GlobalPool2d(kind)(x.to(memory_format=fmt))
        assert y.shape == (n, c)
        np.testing.assert_allclose(y.numpy(), expected, rtol=0, atol=ATOL)


def _distinct(*shape: int) -> torch.Tensor:
    """Values with no ties (spaced 1/numel apart, far above gradcheck's 1e-6 step), shuffled."""
    n = int(np.prod(shape))
    return (torch.randperm(n, generator=torch.Generator().manual_seed(0)).double() / n).reshape(shape)


@pytest.mark.parametrize("kind", ["max", "min", "avg"])
@pytest.mark.parametrize("fmt", FORMATS)
def test_pool_gradcheck(kind: str, fmt):
    # 3×3 windows, stride 2 on 6×5: 'same' pads unevenly (rows 0/1, columns 1/1), the case torch does not do itself.
    x = _distinct(2, 3, 6, 5).to(memory_format=fmt).requires_grad_()
    assert torch.autograd.gradcheck(Pool2d(kind, size=3, stride=2, padding="same"), (x,))


@pytest.mark.parametrize("fmt", FORMATS)
def test_conv_gradcheck_uneven_padding(fmt):
    conv = Conv2d(2, 3, size=(2, 3), stride=(2, 1), padding="same").double()
    x = _distinct(1, 2, 4, 5).to(memory_format=fmt).requires_grad_()
    assert torch.autograd.gradcheck(conv, (x,))


def test_pool_gradient_goes_to_the_winners():
    # 1..9 as 3×3, 2×2 windows, stride 2, 'same' (padding bottom/right): windows {1,2,4,5}, {3,6}, {7,8}, {9}.
    # Max winners 5, 6, 8, 9; min winners 1, 3, 7, 9; the padding gets nothing (it never wins).
    for kind, winners in (("max", [5, 6, 8, 9]), ("min", [1, 3, 7, 9])):
        x = torch.arange(1.0, 10.0).reshape(1, 1, 3, 3).requires_grad_()
        Pool2d(kind, padding="same")(x).sum().backward()
        assert x.grad.reshape(-1).tolist() == [1.0 if v in winners else 0.0 for v in range(1, 10)]


def test_activations_by_name():
    x = torch.tensor([-2.0, 0.0, 1.0, 8.0])
    assert activation("relu")(x).tolist() == [0, 0, 1, 8]
    assert activation("relu6")(x).tolist() == [0, 0, 1, 6]
    assert activation("leaky_relu")(x).tolist() == pytest.approx([-0.02, 0, 1, 8])
    assert activation("none")(x).tolist() == x.tolist()
    assert activation("sigmoid")(torch.tensor([0.0])).item() == 0.5
    assert activation("tanh")(torch.tensor([0.0])).item() == 0.0
    assert activation("elu")(torch.tensor([-1.0])).item() == pytest.approx(np.exp(-1) - 1)
    assert activation("silu")(torch.tensor([1.0])).item() == pytest.approx(1 / (1 + np.exp(-1)))
    assert activation("gelu")(torch.tensor([1.0])).item() == pytest.approx(0.8413447, abs=1e-6)  # x·Φ(x), exact
    for name in ACTIVATIONS:  # every name a spec accepts has a module
        assert isinstance(activation(name), torch.nn.Module)
    with pytest.raises(SpecError, match="Received: 'swish'"):
        activation("swish")


def test_conv_parameters_init_and_repr():
    conv = Conv2d(3, 32, 3, padding="same", activation="relu")
    assert set(conv.state_dict()) == {"weight", "bias"}
    assert conv.weight.shape == (32, 3, 3, 3) and conv.bias.shape == (32,)
    bound = 1 / np.sqrt(3 * 3 * 3)  # nn.Conv2d's init: uniform in ±1/√fan_in
    assert conv.weight.abs().max().item() <= bound and conv.bias.abs().max().item() <= bound
    assert conv.extra_repr() == "32 filters 3×3, stride 1, same"
    assert conv(torch.randn(1, 3, 5, 5)).min().item() >= 0  # relu applied
    assert Conv2d(1, 4, (1, 3), stride=(2, 1), padding=(0, 1), bias=False).extra_repr() == (
        "4 filters 1×3, stride 2×1, pad 0×1, no bias"
    )
    assert Pool2d("avg", 3, 1, "same").extra_repr() == "avg 3×3, stride 1, same"
    assert Pool2d().extra_repr() == "max 2×2"


def test_layer_input_errors():
    with pytest.raises(DataError, match="expected N×3×H×W"):
        Conv2d(3, 4, 3)(torch.zeros(1, 2, 5, 5))
    with pytest.raises(DataError, match="does not fit"):
        Conv2d(1, 1, 3)(torch.zeros(1, 1, 2, 5))
    with pytest.raises(DataError, match="no real value"):
        Pool2d("max", 2, padding=2)(torch.zeros(1, 1, 4, 4))
    with pytest.raises(SpecError, match="median"):
        Pool2d("median")
