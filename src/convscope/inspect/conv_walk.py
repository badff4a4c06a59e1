"""One output value of a run's conv layer, worked out step by step from its weights (CNN Explainer's detail view).

For an image, the value at (row, column) of filter f's map is
    activation( Σ_c Σ_i Σ_j window[i, j, c] · kernel[i, j, c]  +  bias )
where `window` is the kh×kw patch of the layer's input (the previous layer's maps, padded as the layer pads them) that
this output sees, and `kernel[..., c]` is the filter's kernel for input channel c. `conv_walk` computes each step in
float64 with convscope.reference (pad, window, conv2d: the NumPy oracle the tests hold the torch layers to) and keeps
the network's own float32 output at that position beside it, so a disagreement is reported, never hidden.

Batchnorm: a spec's batchnorm is a layer of its own, so a conv's maps are its own output, before any batchnorm that
follows (prediction folds the two into one conv, convscope.fused; inspection keeps them apart). `note` says which.

>>> walk = conv_walk(loaded, loaded.tensor(loaded.fit("camera")), "conv1", 0, 3, 4)      # doctest: +SKIP
>>> walk.value, walk.network_value, walk.agrees()                                          # doctest: +SKIP
(0.4127..., 0.4127..., True)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from convscope import reference
from convscope.errors import DataError
from convscope.spec import BatchNorm
from convscope.spec_layers import shape_text

# The activations of convscope.layers, on one float64 number (leaky_relu's slope is PyTorch's default, 0.01).
ACTIVATIONS = {
    "relu": lambda v: max(v, 0.0),
    "relu6": lambda v: min(max(v, 0.0), 6.0),
    "leaky_relu": lambda v: v if v >= 0 else 0.01 * v,
    "elu": lambda v: v if v > 0 else math.expm1(v),
    "gelu": lambda v: 0.5 * v * (1.0 + math.erf(v / math.sqrt(2.0))),
    "silu": lambda v: v / (1.0 + math.exp(-v)) if v > -700 else 0.0,
    "sigmoid": lambda v: 1.0 / (1.0 + math.exp(-v)) if v > -700 else 0.0,
    "tanh": math.tanh,
    "none": lambda v: v,
}
RELATIVE = 1e-4  # float32 against float64: agreement within 1e-4 of the value's size (at least 1)


@dataclass(frozen=True)
class ConvWalk:
    layer: str  # the conv layer's name, e.g. 'conv2'
    label: str  # e.g. 'conv 5×5, stride 1, valid, tanh'
    filter: int  # which filter (output channel), 0-based
    at: tuple[int, int]  # (row, column) of the output value, 0-based
    source: str  # the layer whose maps it reads ('input': the image, standardised with the run's mean and std)
    input: np.ndarray  # float64 H×W×Cin: the layer's input
    pads: tuple[int, int, int, int]  # rows/columns added (top, bottom, left, right)
    corner: tuple[int, int]  # the window's top-left in the padded input
    window: np.ndarray  # float64 kh×kw×Cin: what this output sees
    in_padding: np.ndarray  # bool kh×kw: window cells that are padding (zeros), not input
    kernels: np.ndarray  # float64 kh×kw×Cin: the filter's weights per input channel
    products: np.ndarray  # window × kernels
    sums: np.ndarray  # float64 Cin: Σ of the products per input channel
    bias: float  # 0.0 for a conv without bias
    total: float  # Σ sums + bias (reference.conv2d on the window)
    activation: str
    value: float  # activation(total)
    network_value: float  # the network's own output at (filter, row, column), float32
    output_shape: tuple[int, int, int]  # the layer's H×W×C
    note: str  # where batchnorm stands
    has_bias: bool = True  # False for a conv with `bias: false` (then `bias` is 0.0 and no term at all)

    def agrees(self, relative: float = RELATIVE) -> bool:
        return abs(self.value - self.network_value) <= relative * max(1.0, abs(self.network_value))

    def formula(self) -> str:
        where = f"{self.layer}[{self.at[0]}, {self.at[1]}, {self.filter}]"
        inner = "Σ_c Σ window·kernel" + (" + bias" if self.has_bias else "")
        if self.activation == "none":
            return f"{where} = {inner} = {self.value:.6g}"
        return f"{where} = {self.activation}({inner}) = {self.activation}({self.total:.6g}) = {self.value:.6g}"


def conv_walk(loaded, x: torch.Tensor, layer: str, filter: int, row: int, column: int) -> ConvWalk:
    """The walk of output (row, column) of `filter` in conv layer `layer` of `loaded` (a LoadedRun) for `x`, the image
    as loaded.tensor gives it (1×C×H×W, standardised). Raises DataError for a layer that is not a conv of the spec, or
    a filter or position outside its output."""
    model, spec = loaded.model, loaded.run.spec
    names = spec.layer_names()
    convs = spec.conv_names()
    if layer not in convs:
        what = f"is a {spec.layers[names.index(layer)].layer_type} layer" if layer in names else "is not a layer"
        raise DataError(f"{spec.name}: {layer!r} {what}; conv layers have a walk: {', '.join(convs) or 'none'}")
    index = names.index(layer)
    module = model[index]
    source = names[index - 1] if index else "input"
    was_training = model.training
    model.train(False)
    try:
        with torch.inference_mode():
            _, kept = model.forward_intermediates(x, [layer] + ([source] if index else []))
    finally:
        model.train(was_training)
    given = (kept[source] if index else x)[0].double().cpu().permute(1, 2, 0).numpy()  # H×W×Cin
    out = kept[layer][0]
    shape = (out.shape[1], out.shape[2], out.shape[0])
    for word, value, top in (("filter", filter, shape[2]), ("row", row, shape[0]), ("column", column, shape[1])):
        if not 0 <= value < top:
            raise DataError(
                f"{layer}: {word} must be 0 to {top - 1} (its output is {shape_text(shape)}). Received {value}"
            )
    size, stride = module.size, module.stride
    pads = reference.padding_amounts(given.shape[:2], size, stride, module.padding)
    padded = reference.pad(given, pads)
    window = reference.window(padded, row, column, size, stride)
    kernels = module.weight[filter].detach().double().cpu().permute(1, 2, 0).numpy()  # kh×kw×Cin
    bias = 0.0 if module.bias is None else float(module.bias[filter].detach().double())
    products = window * kernels
    total = float(reference.conv2d(window, kernels[..., None], np.array([bias]))[0, 0, 0])
    corner = (row * stride[0], column * stride[1])
    rows = np.arange(corner[0], corner[0] + size[0])
    cols = np.arange(corner[1], corner[1] + size[1])
    in_rows = (rows >= pads[0]) & (rows < pads[0] + given.shape[0])
    in_cols = (cols >= pads[2]) & (cols < pads[2] + given.shape[1])
    label = f"{spec.layers[index].label()}, {module.activation_name}"
    return ConvWalk(
        layer, label, filter, (row, column), source, given, pads, corner, window, ~np.outer(in_rows, in_cols),
        kernels, products, products.sum(axis=(0, 1)), bias, total, module.activation_name,
        float(ACTIVATIONS[module.activation_name](total)), float(out[filter, row, column]), shape,
        _batchnorm_note(spec, index, names), module.bias is not None,
    )  # fmt: skip


def _batchnorm_note(spec, index: int, names: list[str]) -> str:
    after = spec.layers[index + 1] if index + 1 < len(spec.layers) else None
    if isinstance(after, BatchNorm):
        return (
            f"batchnorm: {names[index + 1]} follows as a layer of its own; these are {names[index]}'s own outputs, "
            "before it (prediction folds it into the conv, inspection keeps them apart)"
        )
    return "batchnorm: none right after this conv; nothing folded"
