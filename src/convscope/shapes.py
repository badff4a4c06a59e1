"""Shape arithmetic and the spec linter: pure Python, no torch.

`infer(spec)` walks the layers for the spec's input (H×W×C) and returns, per layer, the output shape, the
parameter count, the multiply-adds, the receptive field and jump, and the formula (with numbers) that gave the
spatial size. Every spec that cannot run fails here with a SpecError, before any tensor exists.

Padding, the same here, in the torch layers and in the NumPy reference:
  valid    out = ⌊(in − k)/s⌋ + 1
  same     out = ⌈in / s⌉ for any stride; total padding (out − 1)·s + k − in, split as TensorFlow does:
           half before, the extra one (when the total is odd) after, i.e. on the bottom/right
  int p    out = ⌊(in + 2p − k)/s⌋ + 1
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from convscope.errors import SpecError
from convscope.pretrained.catalog import base_shape
from convscope.spec_bounds import number_text
from convscope.spec_layers import (
    Base,
    BatchNorm,
    Conv,
    Dense,
    Detect,
    Flatten,
    GlobalPool,
    Layer,
    Padding,
    Pair,
    Pool,
    layer_to_dict,
    no_layers_message,
    pair_text,
    shape_text,
)

Shape = tuple[int, ...]  # (H, W, C) for feature maps, (N,) for vectors

# Absolute bounds, whatever the machine: past them a spec is a mistake (a typo'd 10⁹), not a big network. 2³¹ float32
# values are 8 GiB; the largest layers of real convnets (VGG-16's first dense: 103 M parameters) are far below.
MAX_LAYER_PARAMS = 2**31  # trainable parameters of one layer
MAX_VALUES = 2**31  # values of one feature map (a layer's output, or its padded input) for one image
MAX_JUMP = 2**64  # the product of the strides so far: input pixels between neighbouring outputs (real nets: 32)


def pad_amounts(size: int, kernel: int, stride: int, padding: str | int) -> tuple[int, int]:
    """Padding (before, after) along one axis of `size` values for a window of `kernel` moved by `stride`."""
    if padding == "valid":
        return (0, 0)
    if padding == "same":
        out = -(-size // stride)
        total = max((out - 1) * stride + kernel - size, 0)
        return (total // 2, total - total // 2)
    return (padding, padding)


def out_size(size: int, kernel: int, stride: int, padding: str | int) -> int:
    """Output length along one axis; 0 or less means the window does not fit."""
    before, after = pad_amounts(size, kernel, stride, padding)
    return (size + before + after - kernel) // stride + 1


def padding_2d(in_hw: Pair, size: Pair, stride: Pair, padding: Padding) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) padding of a 2-D window layer on an H×W input."""
    axis = [padding, padding] if isinstance(padding, str) else list(padding)
    top, bottom = pad_amounts(in_hw[0], size[0], stride[0], axis[0])
    left, right = pad_amounts(in_hw[1], size[1], stride[1], axis[1])
    return (top, bottom, left, right)


def formula(size: int, kernel: int, stride: int, padding: str | int) -> str:
    """The textbook formula with numbers, e.g. '⌊(32 − 3)/1⌋ + 1 = 30'."""
    out = out_size(size, kernel, stride, padding)
    if padding == "valid":
        return f"⌊({size} − {kernel})/{stride}⌋ + 1 = {out}"
    if padding == "same":
        return f"⌈{size}/{stride}⌉ = {out}"
    return f"⌊({size} + 2·{padding} − {kernel})/{stride}⌋ + 1 = {out}"


@dataclass(frozen=True)
class LayerInfo:
    index: int  # 1-based, as people count layers
    name: str
    layer: Layer
    label: str  # e.g. 'conv 3×3, stride 1, valid'
    input_shape: Shape
    output_shape: Shape
    params: int
    macs: int  # multiply-adds per image
    receptive_field: Pair | None  # input pixels one output value sees; None: the whole image
    jump: Pair | None  # input pixels between neighbouring outputs (the product of strides so far)
    formula: str  # how the spatial size came out; '' when the layer keeps it

    @property
    def activations(self) -> int:
        """Numbers this layer outputs per image."""
        return math.prod(self.output_shape)


@dataclass(frozen=True, repr=False)
class ShapeReport:
    """What infer found: per layer a LayerInfo, and the totals. Shown in a notebook as the summary table."""

    input_shape: Shape
    layers: tuple[LayerInfo, ...]

    def __repr__(self) -> str:
        """'ShapeReport(32×32×3 → 10, 8 layers, 122,570 params, 4,548,608 MACs)'."""
        return (
            f"ShapeReport({shape_text(self.input_shape)} → {shape_text(self.output_shape)}, {len(self.layers)} "
            f"layers, {self.params:,} params, {self.macs:,} MACs)"
        )

    def _repr_html_(self) -> str:
        """The summary table (as `convscope summary` prints it) and the totals, for Jupyter."""
        from convscope.summary import summary_html

        return summary_html(self, "")

    @property
    def params(self) -> int:
        return sum(info.params for info in self.layers)

    @property
    def macs(self) -> int:
        return sum(info.macs for info in self.layers)

    @property
    def activation_bytes(self) -> int:
        """float32 bytes of the input and every layer's output for one image (a forward pass keeps them all)."""
        return 4 * (math.prod(self.input_shape) + sum(info.activations for info in self.layers))

    @property
    def output_shape(self) -> Shape:
        return self.layers[-1].output_shape

    def to_dict(self) -> dict:
        rows = []
        for info in self.layers:
            row = asdict(info)
            row["layer"] = layer_to_dict(info.layer)  # as written in a spec file
            row["activations"] = info.activations
            rows.append(row)
        return {
            "input_shape": list(self.input_shape),
            "layers": rows,
            "total_params": self.params,
            "total_macs": self.macs,
            "activation_bytes_per_image": self.activation_bytes,
        }


# NetSpec (convscope.spec) is named, not imported: spec.py shows its networks with this module (NetSpec.summary).
def infer(spec: NetSpec, input_shape: Shape | None = None) -> ShapeReport:  # noqa: F821
    """Walk `spec` for `input_shape` (default: the spec's own, H×W×C) and check every layer can run.

    Raises SpecError for the first layer that cannot, naming it, what it expected and what it received; also for a
    network with no layers yet (Sequential() before its first add)."""
    if not spec.layers:
        raise SpecError(no_layers_message(spec.name))
    shape: Shape = tuple(input_shape or spec.input)
    rf: Pair | None = (1, 1)
    jump: Pair | None = (1, 1)
    infos: list[LayerInfo] = []
    for i, (name, layer) in enumerate(zip(spec.layer_names(), spec.layers, strict=True), 1):
        where = _Where(i, layer, infos, shape, name)
        out, params, macs, text = (
            _detect_step(layer, shape, jump, where) if isinstance(layer, Detect) else _step(layer, shape, where)
        )
        if isinstance(layer, Conv | Pool) and rf is not None and jump is not None:
            rf = (rf[0] + (layer.size[0] - 1) * jump[0], rf[1] + (layer.size[1] - 1) * jump[1])
            jump = (jump[0] * layer.stride[0], jump[1] * layer.stride[1])
        elif isinstance(layer, Detect) and jump is not None:
            jump = (layer.stride, layer.stride)  # upsampled: neighbouring outputs are `stride` input pixels apart
        elif isinstance(layer, Base):  # checked by _step: a base is the first layer
            found = base_shape(layer, shape)
            rf, jump = found.receptive_field, found.jump  # rf None: not known for bases that are not built in
        elif isinstance(layer, GlobalPool | Flatten) or (isinstance(layer, Dense) and len(shape) == 1):
            rf, jump = None, None
        if jump is not None and max(jump) > MAX_JUMP:  # each stride may be 2²⁸: a few hundred layers of them …
            raise where.fail(
                f"the strides up to {where.name} multiply to {number_text(max(jump))}, more than the {MAX_JUMP:,} "
                "input pixels two neighbouring outputs may be apart (no input is that large)."
            )
        _check_bounds(out, params, where)
        infos.append(LayerInfo(i, name, layer, layer.label(), shape, out, params, macs, rf, jump, text))
        shape = out
    return ShapeReport(tuple(input_shape or spec.input), tuple(infos))


@dataclass(frozen=True)
class _Where:
    """Enough context to say where a spec fails: this layer, and what fed it."""

    index: int
    layer: Layer
    before: list[LayerInfo]
    shape: Shape
    name: str = ""  # the layer's name in the spec (conv1, or the name given)

    def fail(self, problem: str, spatial: bool = False) -> SpecError:
        """`spatial`: the problem is the map's height and width, so show those (the channels are in `problem`)."""
        shown = shape_text(self.shape[:2] if spatial else self.shape)
        if self.before:
            prev = self.before[-1]
            received = f"Received input {shown} after layer {prev.index} ({prev.label})."
        else:
            received = f"Received the network input {shape_text(self.shape)}."
        detail = f"{problem} {received}"
        return SpecError(f"layer {self.index} ({self.layer.label()}): {detail}", layer=self.index, detail=detail)


def _check_bounds(out: Shape, params: int, where: _Where) -> None:
    """MAX_LAYER_PARAMS and MAX_VALUES; the numbers are Python ints, so a 10²⁰ kernel is counted, not overflowed."""
    if params > MAX_LAYER_PARAMS:
        raise where.fail(
            f"{where.name} would have {params:,} parameters ({_gib(4 * params)} of float32), more than the "
            f"{MAX_LAYER_PARAMS:,} one layer may have."
        )
    if (values := math.prod(out)) > MAX_VALUES:
        raise where.fail(
            f"{where.name} would output {shape_text(out)} = {values:,} values per image ({_gib(4 * values)} of "
            f"float32), more than the {MAX_VALUES:,} one feature map may have."
        )


def _gib(n: int) -> str:
    """Bytes as GiB, '1.5 GiB'; integer arithmetic past float's range (a float division of a 400-digit int is an
    OverflowError)."""
    return f"{n / 2**30:,.1f} GiB" if n < 2**100 else f"{number_text(n // 2**30)} GiB"


def _step(layer: Layer, shape: Shape, where: _Where) -> tuple[Shape, int, int, str]:
    """(output shape, params, multiply-adds, formula) of one layer on `shape`."""
    if isinstance(layer, Conv | Pool | GlobalPool) and len(shape) != 3:
        raise where.fail(f"{layer.layer_type} needs an H×W×C feature map, not a flat vector.")
    if isinstance(layer, Conv | Pool):
        return _window_step(layer, shape, where)
    if isinstance(layer, Base):
        return _base_step(layer, shape, where)
    if isinstance(layer, GlobalPool):
        return (shape[2],), 0, 0, ""
    if isinstance(layer, Flatten):
        return (math.prod(shape),), 0, 0, ""
    if isinstance(layer, Dense):
        if len(shape) != 1:
            raise where.fail("dense needs a flat vector; put a flatten or global_pool layer before it.")
        params = shape[0] * layer.units + (layer.units if layer.bias else 0)
        return (layer.units,), params, shape[0] * layer.units, ""
    if isinstance(layer, BatchNorm):
        return shape, 2 * shape[-1], 0, ""  # a scale and a shift per channel (running stats are not trained)
    return shape, 0, 0, ""  # dropout, activation: same shape, nothing to learn


def _window_step(layer: Conv | Pool, shape: Shape, where: _Where) -> tuple[Shape, int, int, str]:
    h, w, c = shape
    (kh, kw), (sh, sw) = layer.size, layer.stride
    pad_h, pad_w = (layer.padding, layer.padding) if isinstance(layer.padding, str) else layer.padding
    top, bottom, left, right = padding_2d((h, w), layer.size, layer.stride, layer.padding)
    for n, k, pad, side in ((h, kh, pad_h, "rows"), (w, kw, pad_w, "columns")):
        if pad == "same" and k > 2 * n + 1:  # most of such a window only ever reads padding
            raise where.fail(
                f"{where.name}'s window of {k:,} {side} is far larger than the input's {n}: with "
                f"padding 'same' at most 2·{n} + 1 = {2 * n + 1}.",
                spatial=True,
            )
    padded = (h + top + bottom, w + left + right)
    if padded[0] * padded[1] * c > MAX_VALUES:  # the layers pad a copy of the input (TensorFlow-style 'same')
        raise where.fail(
            f"padding makes the input {padded[0]:,}×{padded[1]:,}×{c}, more than the {MAX_VALUES:,} values one "
            "feature map may have.",
            spatial=True,
        )
    if padded[0] < kh or padded[1] < kw:
        with_padding = "" if padded == (h, w) else f" ({padded[0]}×{padded[1]} with padding)"
        raise where.fail(f"input is {h}×{w}×{c}{with_padding}, the window needs at least {kh}×{kw}.", spatial=True)
    ho, wo = out_size(h, kh, sh, pad_h), out_size(w, kw, sw, pad_w)
    if isinstance(layer, Pool):
        _check_pool_windows((h, w), (ho, wo), layer, ((top, bottom), (left, right)), where)
        out, params, macs = (ho, wo, c), 0, 0
    else:
        out = (ho, wo, layer.filters)
        params = kh * kw * c * layer.filters + (layer.filters if layer.bias else 0)
        macs = ho * wo * layer.filters * kh * kw * c
    rows, cols = formula(h, kh, sh, pad_h), formula(w, kw, sw, pad_w)
    return out, params, macs, rows if (h, kh, sh, pad_h) == (w, kw, sw, pad_w) else f"H: {rows}; W: {cols}"


def _check_pool_windows(in_hw, out_hw, layer: Pool, pads, where: _Where) -> None:
    """Every pooling window must cover at least one real value, or its max/min/mean is undefined."""
    for axis, side in ((0, "rows"), (1, "columns")):
        before, _after = pads[axis]
        k, s = layer.size[axis], layer.stride[axis]
        last_start = (out_hw[axis] - 1) * s - before
        if before >= k or last_start >= in_hw[axis]:
            raise where.fail(
                f"padding of {before} {side} leaves whole {k}-wide windows in the padding, where a pool has no value;"
                " use padding smaller than the window."
            )


def _base_step(layer: Base, shape: Shape, where: _Where) -> tuple[Shape, int, int, str]:
    if where.index != 1:
        raise where.fail("a base must be the first layer: it takes the image itself.")
    try:
        found = base_shape(layer, shape)
    except SpecError as err:
        raise where.fail(f"{err}.") from None
    (h, w, _), (ho, wo, _), s = shape, found.output, found.jump[0]
    text = f"⌈{h}/{s}⌉ = {ho}" if h == w else f"H: ⌈{h}/{s}⌉ = {ho}; W: ⌈{w}/{s}⌉ = {wo}"
    return found.output, found.params, found.macs, text


def _detect_step(layer: Detect, shape: Shape, jump: Pair | None, where: _Where) -> tuple[Shape, int, int, str]:
    """Upsample by jump/stride (bilinear), 3×3 conv to `channels` + batchnorm + ReLU, 1×1 conv to classes + 4."""
    if len(shape) != 3 or jump is None:
        raise where.fail("detect needs H×W×C feature maps (put it after conv/pool layers or a base).")
    if jump[0] != jump[1] or jump[0] % layer.stride or (jump[0] // layer.stride) & (jump[0] // layer.stride - 1):
        raise where.fail(
            f"detect upsamples its input to stride {layer.stride}: the layers before it must reach a stride of "
            f"{layer.stride}·2ⁿ, not {pair_text(jump)}."
        )
    factor = jump[0] // layer.stride
    h, w, c = shape[0] * factor, shape[1] * factor, shape[2]
    out = (h, w, layer.classes + 4)
    params = 9 * c * layer.channels + 2 * layer.channels + layer.channels * out[2] + out[2]
    macs = h * w * (9 * c * layer.channels + layer.channels * out[2])
    return out, params, macs, f"{shape[0]}×{factor} = {h} (upsampled to stride {layer.stride})"
