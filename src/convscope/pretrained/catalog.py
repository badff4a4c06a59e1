"""The built-in bases described without torch: what `shapes.infer` needs to lint a spec that starts with a base.

EfficientNet-Lite0's layer table lives here (the torch module in `efficientnet.py` is built from it), so the sizes,
parameters, multiply-adds and receptive field in `convscope summary` come from the same numbers as the network.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from convscope.errors import SpecError
from convscope.spec_layers import Base


@dataclass(frozen=True)
class Stage:
    repeats: int  # blocks in the stage; only the first one has the stride and changes the channels
    kernel: int  # depthwise sample size k×k
    stride: int  # of the first block
    expand: int  # hidden channels = expand × input channels
    out: int  # output channels


# EfficientNet-B0's table (Lite0 uses it unscaled). Checked against the weights file: depthwise kernels 3,3,3,5,5,3,3,
# 3,5,5,5,5,5,5,5,3 and project outputs 16,24,24,40,40,80,80,80,112,112,112,192,192,192,192,320 for blocks 0–15.
STAGES = (
    Stage(1, 3, 1, 1, 16),
    Stage(2, 3, 2, 6, 24),
    Stage(2, 5, 2, 6, 40),
    Stage(3, 3, 2, 6, 80),
    Stage(3, 5, 1, 6, 112),
    Stage(4, 5, 2, 6, 192),
    Stage(1, 3, 1, 6, 320),
)
STEM_FILTERS, HEAD_FILTERS = 32, 1280
BUILT_IN = ("efficientnet-lite0",)
# Where Lite0 may be cut for a detector: its feature maps at stride 8 (after block 4, 40 channels), 16 (after block
# 10, 112 channels) or 32 (the whole network and its 1×1 head conv, 1280 channels; what classification uses).
LITE0_STRIDES = (8, 16, 32)


def lite0_cut(stride: int) -> tuple[int, int]:
    """(blocks kept, output channels) of Lite0 cut at total `stride` (one of LITE0_STRIDES): the blocks whose
    output is at most that stride; at 32 all of them and the head conv (HEAD_FILTERS channels)."""
    total, channels = 2, STEM_FILTERS  # the stem has stride 2
    for kept, (_cin, cout, _k, s, _e) in enumerate(lite0_blocks()):
        if total * s > stride:
            return kept, channels
        total, channels = total * s, cout
    return len(lite0_blocks()), HEAD_FILTERS


def lite0_blocks() -> list[tuple[int, int, int, int, int]]:
    """(in channels, out channels, kernel, stride, expand) of the 16 MBConv blocks, input to output."""
    blocks, channels = [], STEM_FILTERS
    for stage in STAGES:
        for i in range(stage.repeats):
            blocks.append((channels, stage.out, stage.kernel, stage.stride if i == 0 else 1, stage.expand))
            channels = stage.out
    return blocks


@dataclass(frozen=True)
class BaseShape:
    output: tuple[int, int, int]  # H×W×C
    params: int  # trainable: conv weights and batchnorm scales/shifts
    macs: int  # multiply-adds per image
    receptive_field: tuple[int, int] | None  # None: not known (bases that are not built in)
    jump: tuple[int, int]  # input pixels between neighbouring outputs: the total stride
    activations: int  # numbers the base's layers output per image (for memory estimates)


def base_shape(layer: Base, shape: tuple[int, ...]) -> BaseShape:
    """What `layer` makes of an H×W×3 image; a SpecError (with only the detail) when it cannot."""
    if len(shape) != 3 or shape[2] != 3:
        raise SpecError("a base takes color images, H×W×3 (grayscale data is repeated into 3 channels)")
    h, w, _ = shape
    if layer.arch == "efficientnet-lite0":
        stride = 32 if layer.stride is None else layer.stride
        if stride not in LITE0_STRIDES:
            raise SpecError(f"efficientnet-lite0 can be cut at stride 8, 16 or 32 (its output); not {stride}")
        found = _lite0(h, w, stride)
        if layer.channels not in (None, found.output[2]):
            raise SpecError(
                f"efficientnet-lite0 outputs {found.output[2]} channels at stride {stride}; remove channels"
            )
        return found
    if layer.arch.startswith(("torchvision:", "timm:")):
        if layer.channels is None or layer.stride is None:
            raise SpecError(
                f"{layer.arch}: give channels and stride (what it outputs), or let `convscope transfer` measure them"
            )
        s = layer.stride
        out = (math.ceil(h / s), math.ceil(w / s), layer.channels)
        return BaseShape(out, layer.params or 0, 0, None, (s, s), math.prod(out))
    raise SpecError(f"unknown base {layer.arch!r}; built in: {', '.join(BUILT_IN)}, or torchvision:NAME / timm:NAME")


def _lite0(h: int, w: int, stride: int = 32) -> BaseShape:
    """Walk Lite0's convolutions up to its cut at `stride` ('same' padding: every stride s maps n to ⌈n/s⌉)."""
    total = _Walk(h, w, 3)
    total.conv(STEM_FILTERS, 3, 2)
    kept, _channels = lite0_cut(stride)
    for cin, cout, k, s, e in lite0_blocks()[:kept]:
        if e != 1:
            total.conv(cin * e, 1, 1)
        total.conv(cin * e, k, s, groups=cin * e)
        total.conv(cout, 1, 1)
    if stride == 32:
        total.conv(HEAD_FILTERS, 1, 1)
    return BaseShape((total.h, total.w, total.c), total.params, total.macs, total.rf, total.jump, total.activations)


class _Walk:
    """Running totals of conv (no bias) + batchnorm layers."""

    def __init__(self, h: int, w: int, c: int):
        self.h, self.w, self.c = h, w, c
        self.params = self.macs = self.activations = 0
        self.rf, self.jump = (1, 1), (1, 1)

    def conv(self, out: int, k: int, s: int, groups: int = 1) -> None:
        self.h, self.w = math.ceil(self.h / s), math.ceil(self.w / s)
        weights = k * k * (self.c // groups) * out
        self.params += weights + 2 * out  # + batchnorm scale and shift
        self.macs += self.h * self.w * weights
        self.activations += self.h * self.w * out
        self.rf = (self.rf[0] + (k - 1) * self.jump[0], self.rf[1] + (k - 1) * self.jump[1])
        self.jump = (self.jump[0] * s, self.jump[1] * s)
        self.c = out
