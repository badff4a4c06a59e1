"""spec -> nn.Module: the one path from a NetSpec to a model."""

from __future__ import annotations

import os
from collections import OrderedDict

import torch
from torch import nn

from convscope import layers
from convscope.errors import DataError, SpecError
from convscope.pretrained.bases import BaseNet, build_base
from convscope.shapes import LayerInfo, infer
from convscope.spec import Activation, Base, BatchNorm, Conv, Dense, Detect, Dropout, Flatten, GlobalPool, NetSpec, Pool


class ConvNet(nn.Sequential):
    """A built spec: one child module per spec layer, named as in the summary (conv1, pool1, ..., dense2).

    Input N×C×H×W (channels_last welcome); a conv or dense layer's activation is part of that layer, so the output of
    child `conv1` is the feature map people mean by "conv1's output".
    """

    def __init__(self, spec: NetSpec, pretrained: bool = True):
        report = infer(spec)  # every spec error is raised here, before a tensor exists
        children = OrderedDict((info.name, _module(info, pretrained)) for info in report.layers)
        super().__init__(children)
        self.spec = spec

    def check_input(self, x: torch.Tensor) -> None:
        """A DataError unless `x` is a batch N×C×H×W of the images the spec takes."""
        h, w, c = self.spec.input
        if x.ndim != 4 or tuple(x.shape[1:]) != (c, h, w):
            raise DataError(
                f"{self.spec.name}: expects images of {h}×{w}×{c} (a tensor N×{c}×{h}×{w}). "
                f"Received a tensor of shape {'×'.join(str(s) for s in x.shape)}"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        return super().forward(x)

    @property
    def base(self) -> BaseNet | None:
        """The pretrained base (the first layer of a transfer network), or None for a network trained from scratch."""
        first = super().__getitem__(0)
        return first if isinstance(first, BaseNet) else None

    def head_start(self) -> int:
        """Where the head begins: after the pretrained base; in a network of its own, at the first layer that is
        not a convolution, pooling, batchnorm, activation or dropout (global pool, flatten, dense or detect)."""
        if self.base is not None:
            return 1
        body = (Conv, Pool, BatchNorm, Activation, Dropout)
        return next((i for i, layer in enumerate(self.spec.layers) if not isinstance(layer, body)), len(self))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The feature maps N×C×h×w the head reads (a transfer network: its base's output), as timm names it."""
        self.check_input(x)
        return self[: self.head_start()](x)

    def head(self) -> nn.Sequential:
        """The head's layers (they are this network's own modules, not copies)."""
        return self[self.head_start() :]

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """The head's output (logits N×classes, or a detector's maps) from forward_features' feature maps."""
        return self.head()(features)

    def __getitem__(self, index):
        """model[i] is a layer; model[a:b] the plain nn.Sequential of those layers (a slice is not a whole spec)."""
        if isinstance(index, slice):
            return nn.Sequential(OrderedDict(list(self._modules.items())[index]))
        return super().__getitem__(index)

    def forward_intermediates(self, x: torch.Tensor, names=None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The output and the outputs of the layers in `names` (default: all), exactly as the forward pass makes them.

        Each is N×C×H×W for feature maps or N×F for vectors; these are the "feature maps" of each layer.
        """
        wanted = set(self.spec.layer_names() if names is None else names)
        unknown = wanted - set(self.spec.layer_names())
        if unknown:
            raise DataError(
                f"{self.spec.name}: no layer named {sorted(unknown)[0]!r}. Layers: {', '.join(self.spec.layer_names())}"
            )
        self.check_input(x)
        kept = {}
        for name, layer in self.named_children():
            x = layer(x)
            if name in wanted:
                kept[name] = x
        return x, kept


def build(spec: NetSpec | str | os.PathLike, pretrained: bool = True) -> ConvNet:
    """The network of `spec`: a NetSpec, a preset name ("lenet5") or a spec file (YAML/JSON). A base layer comes with
    its pretrained weights unless `pretrained` is False. It takes N×C×H×W tensors (C×H×W = the spec's input H×W×C).
    Raises SpecError for a name that is neither a preset nor a spec file, or for a spec that cannot run."""
    if isinstance(spec, str | os.PathLike):
        from convscope.presets import resolve_spec

        spec = resolve_spec(os.fspath(spec))
    elif not isinstance(spec, NetSpec):
        raise SpecError(f"build expects a NetSpec, a preset name or a spec file. Received: {type(spec).__name__}")
    return ConvNet(spec, pretrained)


def _module(info: LayerInfo, pretrained: bool) -> nn.Module:
    """The torch module of one spec layer, from what shapes.infer found about it (its input H×W×C or (N,), ...)."""
    layer, shape = info.layer, info.input_shape
    if isinstance(layer, Detect):
        return layers.CenterNetHead(shape[2], layer.classes, layer.channels, upsample=info.output_shape[0] // shape[0])
    if isinstance(layer, Base):
        return build_base(layer, pretrained)
    if isinstance(layer, Conv):
        return layers.Conv2d(
            shape[2], layer.filters, layer.size, layer.stride, layer.padding, layer.bias, layer.activation
        )
    if isinstance(layer, Pool):
        return layers.Pool2d(layer.kind, layer.size, layer.stride, layer.padding)
    if isinstance(layer, GlobalPool):
        return layers.GlobalPool2d(layer.kind)
    if isinstance(layer, Dense):
        return layers.Dense(shape[0], layer.units, layer.bias, layer.activation)
    if isinstance(layer, Flatten):
        return nn.Flatten()
    if isinstance(layer, Dropout):
        return nn.Dropout(layer.rate)
    if isinstance(layer, BatchNorm):
        return nn.BatchNorm2d(shape[-1]) if len(shape) == 3 else nn.BatchNorm1d(shape[0])
    if isinstance(layer, Activation):
        return layers.activation(layer.function)
    raise TypeError(f"no module for layer type {type(layer).__name__}")  # a programming error, not user input
