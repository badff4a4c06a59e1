"""Torch layers whose arithmetic matches `convscope.reference` exactly.

Inputs are N×C×H×W (either memory format; channels_last stays channels_last). What torch's own layers do
differently, and why these exist:
  - 'same' padding: nn.Conv2d accepts it only for stride 1; here it works for any stride and pads as
    TensorFlow does (output ⌈in / stride⌉, the odd extra row/column bottom/right), so a spec means the same
    thing as in the tutorials people learn from.
  - pools: padding never wins. Max pads with -inf, min with +inf, and average divides by the number of real
    values in each window, also for uneven 'same' padding (nn.AvgPool2d can only pad evenly).
  - a min pool, which torch does not have.
Padding amounts come from `convscope.shapes.padding_2d` for the actual input H×W, like everywhere else.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from convscope.errors import DataError, SpecError
from convscope.shapes import padding_2d
from convscope.spec_layers import (
    ACTIVATIONS,
    POOL_KINDS,
    Padding,
    Pair,
    as_padding,
    as_pair,
    padding_text,
    pair_text,
    shape_text,
    stride_text,
)

_ACTIVATIONS = {
    "relu": nn.ReLU,
    "relu6": nn.ReLU6,
    "leaky_relu": nn.LeakyReLU,  # negative slope 0.01, PyTorch's default
    "elu": nn.ELU,
    "gelu": nn.GELU,  # the exact (erf) form
    "silu": nn.SiLU,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "none": nn.Identity,
}


def activation(name: str) -> nn.Module:
    """The module for an activation named in a spec ('relu', ..., 'none' -> nn.Identity).

    >>> activation("relu6")(torch.tensor([-1.0, 3.0, 9.0]))
    tensor([0., 3., 6.])
    """
    if name not in _ACTIVATIONS:
        raise SpecError(f"activation must be one of {', '.join(ACTIVATIONS)}. Received: {name!r}")
    return _ACTIVATIONS[name]()


_activation = activation  # Conv2d's `activation` argument hides the function inside __init__


class Conv2d(nn.Module):
    """`filters` filters of `size` moved by `stride` over an N×C×H×W input, then the activation.

    weight: (filters, in_channels, kh, kw); bias: (filters,) or None. Initialised like nn.Conv2d.

    >>> conv = Conv2d(3, 8, size=3, stride=2, padding="same")
    >>> conv(torch.zeros(1, 3, 32, 32)).shape               # ⌈32 / 2⌉ = 16
    torch.Size([1, 8, 16, 16])
    """

    def __init__(
        self,
        in_channels: int,
        filters: int,
        size: int | Pair,
        stride: int | Pair = 1,
        padding: int | Padding = "valid",
        bias: bool = True,
        activation: str = "none",
    ):
        super().__init__()
        self.in_channels, self.filters = in_channels, filters
        self.size, self.stride, self.padding = as_pair(size), as_pair(stride), as_padding(padding)
        self.weight = nn.Parameter(torch.empty(filters, in_channels, *self.size))
        self.bias = nn.Parameter(torch.empty(filters)) if bias else None
        self.activation_name = activation
        self.activation = _activation(activation)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # nn.Conv2d's initialisation: uniform in ±1/√fan_in for both (kaiming_uniform with a=√5 gives that bound).
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(self.in_channels * self.size[0] * self.size[1])
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise DataError(
                f"conv ({self.extra_repr()}): expected N×{self.in_channels}×H×W. Received {shape_text(tuple(x.shape))}"
            )
        top, bottom, left, right = _pads(x, self.size, self.stride, self.padding, "conv")
        if top == bottom and left == right:
            # Even padding: let the convolution pad (no padded copy of the input).
            y = F.conv2d(x, self.weight, self.bias, self.stride, (top, left))
        else:
            y = F.conv2d(F.pad(x, (left, right, top, bottom)), self.weight, self.bias, self.stride)
        return self.activation(y)

    def extra_repr(self) -> str:
        size, stride, padding = pair_text(self.size), stride_text(self.stride), padding_text(self.padding)
        text = f"{self.filters} filters {size}, stride {stride}, {padding}"
        return text + ("" if self.bias is not None else ", no bias")


class Dense(nn.Linear):
    """`units` outputs, each a weighted sum of all inputs plus a bias, then the activation. N×F -> N×units."""

    def __init__(self, in_features: int, units: int, bias: bool = True, activation: str = "none"):
        super().__init__(in_features, units, bias=bias)
        self.activation_name = activation
        self.activation = _activation(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(super().forward(x))


class Pool2d(nn.Module):
    """Max, min or average of each `size` window, per channel; `stride` defaults to `size`.

    >>> pool = Pool2d("min", size=2, padding="same")
    >>> pool(torch.tensor([[[[1.0, 2.0, 3.0]]]]))         # the lone 3 is not beaten by padding
    tensor([[[[1., 3.]]]])
    """

    def __init__(
        self,
        kind: str = "max",
        size: int | Pair = 2,
        stride: int | Pair | None = None,
        padding: int | Padding = "valid",
    ):
        super().__init__()
        if kind not in POOL_KINDS:
            raise SpecError(f"pool kind must be one of {', '.join(POOL_KINDS)}. Received: {kind!r}")
        self.kind = kind
        self.size = as_pair(size)
        self.stride = self.size if stride is None else as_pair(stride)
        self.padding = as_padding(padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4:
            raise DataError(f"pool ({self.extra_repr()}): expected N×C×H×W. Received {shape_text(tuple(x.shape))}")
        pads = _pads(x, self.size, self.stride, self.padding, "pool")
        top, _, left, _ = pads
        if top >= self.size[0] or left >= self.size[1]:
            raise DataError(f"pool ({self.extra_repr()}): padding leaves whole windows with no real value to pool")
        if self.kind == "max":
            return self._max(x, pads)
        if self.kind == "min":
            return -self._max(-x, pads)  # min(x) = -max(-x); the -inf padding of -x is +inf padding of x
        return self._avg(x, pads)

    def _max(self, x: torch.Tensor, pads: tuple[int, int, int, int]) -> torch.Tensor:
        if any(pads):
            # Explicit padding: max_pool2d's own pads only evenly and at most half a window.
            top, bottom, left, right = pads
            x = F.pad(x, (left, right, top, bottom), value=-math.inf)
        return F.max_pool2d(x, self.size, self.stride)

    def _avg(self, x: torch.Tensor, pads: tuple[int, int, int, int]) -> torch.Tensor:
        if not any(pads):
            return F.avg_pool2d(x, self.size, self.stride)
        # Mean of the real values: (window sum of zero-padded x) / (window count of real values).
        # Both avg_pools divide by kh·kw, which cancels; the 1×1×H×W mask broadcasts over N and C.
        top, bottom, left, right = pads
        real = torch.ones((1, 1, *x.shape[2:]), dtype=x.dtype, device=x.device)
        sums = F.avg_pool2d(F.pad(x, (left, right, top, bottom)), self.size, self.stride)
        counts = F.avg_pool2d(F.pad(real, (left, right, top, bottom)), self.size, self.stride)
        return sums / counts

    def extra_repr(self) -> str:
        text = f"{self.kind} {pair_text(self.size)}"
        if self.stride != self.size:
            text += f", stride {stride_text(self.stride)}"
        return text + ("" if self.padding == "valid" else f", {padding_text(self.padding)}")


class GlobalPool2d(nn.Module):
    """One number per feature map: its max, min or mean over H and W. N×C×H×W -> N×C."""

    def __init__(self, kind: str = "avg"):
        super().__init__()
        if kind not in POOL_KINDS:
            raise SpecError(f"global_pool kind must be one of {', '.join(POOL_KINDS)}. Received: {kind!r}")
        self.kind = kind

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4:
            raise DataError(f"global_pool ({self.kind}): expected N×C×H×W. Received {shape_text(tuple(x.shape))}")
        if self.kind == "max":
            return x.amax(dim=(2, 3))
        if self.kind == "min":
            return x.amin(dim=(2, 3))
        return x.mean(dim=(2, 3))

    def extra_repr(self) -> str:
        return self.kind


def _pads(x: torch.Tensor, size: Pair, stride: Pair, padding: Padding, who: str) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) for this input's H×W; a DataError when the window does not fit."""
    h, w = x.shape[2], x.shape[3]
    top, bottom, left, right = padding_2d((h, w), size, stride, padding)
    if h + top + bottom < size[0] or w + left + right < size[1]:
        raise DataError(
            f"{who}: the {pair_text(size)} window does not fit. Received an input of {h}×{w}"
            f" ({h + top + bottom}×{w + left + right} with padding)"
        )
    return top, bottom, left, right


class MirrorAverage(nn.Module):
    """A classifier's logits averaged over the image and its left-right mirror image (test-time augmentation).

    For a network trained on flipped images both are images it knows, and its mistakes on the two differ, so the
    average is right more often. `net` is the wrapped network, unchanged.
    """

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net
        self.train(net.training)  # a wrapper of an eval-mode network is in eval mode too

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.net(x) + self.net(x.flip(3))) / 2


# The heatmap starts out predicting "no object" with probability 0.9 almost everywhere (CenterNet's prior): focal
# loss then starts small instead of being swamped by thousands of easy background positions.
PRIOR = 0.1


class CenterNetHead(nn.Module):
    """The detection head: CenterNet ("Objects as Points", Zhou et al. 2019), as a spec's `detect` layer.

    Why this head for training on a CPU: an object is one point (its centre) on a stride-4 heatmap, so there are no
    anchor boxes to design, no IoU matching of anchors to objects in every batch, and no NMS while training; the
    targets are a Gaussian bump per object, computed once per batch with a few tensor ops, and the loss is dense and
    cheap (focal loss on the heatmap, L1 on size and offset at the centres). Decoding replaces NMS by a 3×3 max-pool
    (convscope.detect.decoding).

        N×C×h×w features at stride s ──upsample ×s/4 (bilinear)──► 3×3 conv (channels) + BN + ReLU ──► 1×1 conv
        ──► N×(K + 4)×H/4×W/4: K centre-heatmap logits, then box width and height (input pixels), then centre offset
            within the cell (0–1, in cells)
    """

    def __init__(self, in_channels: int, classes: int, channels: int = 64, upsample: int = 1):
        super().__init__()
        self.classes, self.upsample = classes, upsample
        self.conv = nn.Conv2d(in_channels, channels, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(channels)
        self.out = nn.Conv2d(channels, classes + 4, 1)
        with torch.no_grad():
            self.out.bias.zero_()
            self.out.bias[:classes] = -math.log((1 - PRIOR) / PRIOR)
            self.out.bias[classes : classes + 2] = 16.0  # box sizes start near a typical object's, in pixels

    def forward(self, x: Tensor) -> Tensor:
        if self.upsample > 1:
            x = F.interpolate(x, scale_factor=self.upsample, mode="bilinear", align_corners=False)
        return self.out(F.relu(self.bn(self.conv(x))))


def split_outputs(out: Tensor, classes: int) -> tuple[Tensor, Tensor, Tensor]:
    """N×(K+4)×h×w → heatmap logits N×K×h×w, size N×2×h×w (w, h in pixels), offset N×2×h×w (x, y in cells)."""
    return out[:, :classes], out[:, classes : classes + 2], out[:, classes + 2 :]
