"""An inference copy of a network with each batchnorm folded into the convolution before it: less work per image.

In evaluation and prediction a BatchNorm2d with frozen running statistics is an affine map per channel,
    bn(y) = γ · (y − μ) / √(σ² + ε) + β,
and a convolution is linear, so bn(conv(x)) is one convolution with weight W·s and bias (b − μ)·s + β, where
s = γ / √(σ² + ε) per output channel. That is the standard recipe, torch.nn.utils.fusion.fuse_conv_bn_eval; its
fuse_conv_bn_weights does the arithmetic here (in float64, then rounded once to the weight's dtype). The copy saves
one pass over every such feature map (a read and a write of N×C×H×W) per image.

The given model is never modified: the trainer keeps training it, and feature maps, Grad-CAM and filters need its
layers as the spec names them (a folded conv's output is the batchnorm's, not the conv's).

Which pairs are folded: only where the conv's output provably feeds the batchnorm alone.
  - adjacent children of an nn.Sequential whose forward is Sequential's chain (a built spec, ConvNet, is one):
    a convscope conv without activation (a spec's `conv` with activation none) or an nn.Conv2d, then a BatchNorm2d;
    also with a convscope pool between them (cifar-fast's conv → max pool → batchnorm) where the batchnorm's map
    commutes with the pool (_commutes: always for an average, for max and min when no γ is negative)
  - EfficientNet-Lite0's ConvBN blocks (conv → bn → ReLU6), replaced by a FoldedConvBN, since ConvBN's own forward
    runs its conv without a bias
  - the detect head's conv → bn (CenterNetHead)
Left alone: a batchnorm in training mode (it normalises by each batch's own statistics) or without running
statistics, a conv whose activation comes before the batchnorm, modules with hooks or parametrised weights, and any
other module, whose forward may use the conv's output elsewhere (a residual, a second branch).

Activations are not fused: PyTorch's eager CPU convolution (oneDNN) runs the activation as an op of its own; only a
compiler (torch.compile, TorchScript freezing) fuses conv + activation (bench/inference.py measures torch.compile).

>>> from convscope.builder import build
>>> model = build("cifar-fast").train(False)
>>> fast = inference_copy(model)
>>> def batchnorms(net):
...     return sum(isinstance(m, nn.BatchNorm2d) for m in net.modules())
>>> batchnorms(model), batchnorms(fast)                 # the given model keeps its layers
(6, 0)
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrize
from torch.nn.utils.fusion import fuse_conv_bn_weights

from convscope import layers
from convscope.builder import ConvNet
from convscope.shapes import padding_2d


def inference_copy(model: nn.Module) -> nn.Module:
    """A deep copy of `model`, in eval mode, with every Conv2d → BatchNorm2d pair it can prove safe folded into the
    conv (the batchnorm replaced by nn.Identity; see the module's docstring for which pairs). Inputs and outputs are
    those of `model` (N×C×H×W in; either memory format), equal to its eval-mode outputs up to float rounding (about
    1e-6 relative in float32). `model` itself is untouched: its mode, parameters and layers. Raises nothing of its
    own; the copy is for forward passes (no set_trainable, no training).

    Recipe: torch.nn.utils.fusion.fuse_conv_bn_eval (PyTorch), applied where the module structure proves the conv's
    output is read by the batchnorm only."""
    fused = copy.deepcopy(model).train(False)
    with torch.no_grad():
        _fold_within(fused)
    return fused


class FoldedConvBN(nn.Module):
    """EfficientNet-Lite0's ConvBN with its batchnorm folded into the conv: the same TensorFlow 'same' padding and
    activation, and the conv's bias (which ConvBN's forward leaves out, its conv having none). Children keep ConvBN's
    names (conv, bn: nn.Identity, act). N×C×H×W → N×out×⌈H/s⌉×⌈W/s⌉."""

    def __init__(self, conv: nn.Conv2d, act: nn.Module):
        super().__init__()
        self.conv, self.bn, self.act = conv, nn.Identity(), act

    def forward(self, x: Tensor) -> Tensor:
        conv = self.conv
        top, bottom, left, right = padding_2d(tuple(x.shape[-2:]), conv.kernel_size, conv.stride, "same")
        if (top, left) == (bottom, right):
            y = F.conv2d(x, conv.weight, conv.bias, conv.stride, (top, left), groups=conv.groups)
        else:
            y = F.conv2d(F.pad(x, (left, right, top, bottom)), conv.weight, conv.bias, conv.stride, groups=conv.groups)
        return self.act(y)


def _fold_within(module: nn.Module) -> None:
    """Fold the safe pairs among `module`'s children, then within each child (depth first)."""
    from convscope.pretrained.efficientnet import ConvBN  # lazily: most networks have no Lite0 base

    if _is_chain(module):
        names = list(module._modules)
        for i, name in enumerate(names[:-1]):
            conv, after = module._modules[name], [module._modules[n] for n in names[i + 1 : i + 3]]
            if _foldable(conv, after[0]):  # conv → bn
                _fold(conv, after[0])
                setattr(module, names[i + 1], nn.Identity())
            elif len(after) == 2 and _foldable(conv, after[1]) and _commutes(after[0], after[1]):  # conv → pool → bn
                _fold(conv, after[1])
                setattr(module, names[i + 2], nn.Identity())
    elif isinstance(module, layers.CenterNetHead) and _foldable(module.conv, module.bn):
        _fold(module.conv, module.bn)
        module.bn = nn.Identity()
    for name, child in list(module.named_children()):
        if type(child) is ConvBN and _foldable(child.conv, child.bn) and not _hooked(child):
            _fold(child.conv, child.bn)
            setattr(module, name, FoldedConvBN(child.conv, child.act))
        else:
            _fold_within(child)


def _is_chain(module: nn.Module) -> bool:
    """True when each child's output is the next child's only input: nn.Sequential's own forward (ConvNet's checks
    the input's shape, then runs it)."""
    return isinstance(module, nn.Sequential) and (
        type(module).forward is nn.Sequential.forward or type(module).forward is ConvNet.forward
    )


def _foldable(conv: nn.Module | None, bn: nn.Module | None) -> bool:
    """A plain 2-D convolution whose output goes straight into `bn`, a BatchNorm2d in eval mode with running
    statistics over exactly the conv's output channels."""
    if type(conv) is layers.Conv2d:
        if not isinstance(conv.activation, nn.Identity):  # conv → activation → bn: not an affine map of the conv
            return False
    elif type(conv) is not nn.Conv2d:  # subclasses (timm's Conv2dSame, ...) may compute something else
        return False
    return (
        type(bn) is nn.BatchNorm2d
        and not bn.training
        and bn.running_mean is not None
        and bn.running_var is not None
        and bn.num_features == conv.weight.shape[0]
        and not _hooked(conv)
        and not _hooked(bn)
        and not parametrize.is_parametrized(conv)
    )


def _commutes(pool: nn.Module, bn: nn.BatchNorm2d) -> bool:
    """True when pool(bn(y)) = bn(pool(y)) for every y, so that bn can move before the pool and fold into the conv.

    bn is y·s + t per channel, s = γ / √(σ² + ε). A convscope average pool is a weighted mean of real values (weights
    summing to 1, padding never counted), so it commutes with any such map; a max or min pool commutes with it when
    every s ≥ 0 (a non-decreasing map keeps which value is largest; padding never wins). A negative γ flips max and
    min, so then the pair is left alone. Other pools (nn.AvgPool2d counts zero padding) are left alone."""
    if type(pool) is not layers.Pool2d or _hooked(pool):
        return False
    return pool.kind == "avg" or bn.weight is None or bool((bn.weight >= 0).all())


def _hooked(module: nn.Module) -> bool:
    """Hooks on a module see its own output, which folding changes (the conv's) or removes (the batchnorm's)."""
    return bool(module._forward_hooks or module._forward_pre_hooks or module._backward_hooks)


def _fold(conv: nn.Conv2d | layers.Conv2d, bn: nn.BatchNorm2d) -> None:
    """conv's weight and bias become those of bn(conv(x)) (fuse_conv_bn_weights, computed in float64). The new tensors
    keep the weight's dtype, device and memory format (channels_last stays channels_last)."""
    weight, bias = conv.weight, conv.bias

    def f64(t: Tensor | None) -> Tensor | None:
        return None if t is None else t.detach().double()

    fused_w, fused_b = fuse_conv_bn_weights(
        f64(weight), f64(bias), f64(bn.running_mean), f64(bn.running_var), bn.eps, f64(bn.weight), f64(bn.bias)
    )
    new_weight = weight.detach().clone()  # clone: same dtype, device and strides
    new_weight.copy_(fused_w)
    conv.weight = nn.Parameter(new_weight, requires_grad=weight.requires_grad)
    new_bias = torch.empty(weight.shape[0], dtype=weight.dtype, device=weight.device)
    new_bias.copy_(fused_b)
    conv.bias = nn.Parameter(new_bias, requires_grad=weight.requires_grad)
