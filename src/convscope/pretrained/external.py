"""Trunks from other libraries' convnets: torchvision (`torchvision:NAME`) and timm (`timm:NAME`).

Both are optional: each is imported only when one of its models is asked for. Models are built without weights
(no download ever); a weights file, when given, is the full model's state dict (classifier included, as published
checkpoints hold it), loaded strictly, and the classifier is cut off afterwards.
"""

from __future__ import annotations

import difflib
import math
import os
from collections import OrderedDict

import torch
from torch import Tensor, nn

from convscope.errors import CheckpointError, ConfigError
from convscope.pretrained.trunk import Trunk
from convscope.weights import load_state_dict_file, state_dict_problems

TORCHVISION_FAMILIES = (
    "resnet/resnext/wide_resnet, regnet, shufflenet_v2, vgg, alexnet, squeezenet, densenet, mobilenet_v2, "
    "mobilenet_v3, mnasnet, efficientnet, convnext"
)
_NUMBERED = ("layer1", "layer2", "layer3", "layer4", "s1", "s2", "s3", "s4")  # timm resnet, regnet stages


def torchvision_trunk(name: str, weights: str | os.PathLike | None) -> Trunk:
    """torchvision's `name` without its classifier, with the weights file loaded if given; in eval mode."""
    try:
        import torchvision
    except ImportError:
        raise ConfigError(f"torchvision:{name} needs the torchvision package: pip install torchvision") from None
    tv = torchvision.models
    known = tv.list_models(module=tv)  # classification models only (not detection, segmentation, video)
    if name.lower() not in known:
        raise ConfigError(f"torchvision has no classification model {name!r}{_close(name.lower(), known)}")
    model = tv.get_model(name, weights=None)
    plain = (tv.VGG, tv.AlexNet, tv.SqueezeNet, tv.DenseNet, tv.ConvNeXt)  # a plain `features` layer list
    with_head = (tv.MobileNetV2, tv.MobileNetV3, tv.EfficientNet, tv.MNASNet)  # same, ending in a 1×1 head conv
    if not isinstance(model, (tv.ResNet, tv.RegNet, tv.ShuffleNetV2, *plain, *with_head)):
        # e.g. swin (N×h×w×C maps), vit/maxvit (tokens), googlenet/inception (aux heads, input transform)
        raise ConfigError(
            f"torchvision {name} ({type(model).__name__}) is not supported as a base; "
            f"supported families: {TORCHVISION_FAMILIES}"
        )
    if weights is not None:
        _load_strict(model, weights, f"torchvision {name}")

    # module: the parts the feature maps go through, in forward order, under torchvision's own names (so its
    # state dict is the checkpoint's minus the classifier). blocks/top are views into it; what is in neither
    # (the stem) stays frozen.
    if isinstance(model, tv.ResNet):
        names = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")
        module = nn.Sequential(OrderedDict((n, getattr(model, n)) for n in names))
        return _trunk(module, [model.layer1, model.layer2, model.layer3, model.layer4], [])
    if isinstance(model, tv.RegNet):
        module = nn.Sequential(OrderedDict(stem=model.stem, trunk_output=model.trunk_output))
        return _trunk(module, list(model.trunk_output), [])
    if isinstance(model, tv.ShuffleNetV2):
        names = ("conv1", "maxpool", "stage2", "stage3", "stage4", "conv5")
        module = nn.Sequential(OrderedDict((n, getattr(model, n)) for n in names))
        return _trunk(module, [model.stage2, model.stage3, model.stage4], [model.conv5])
    head = isinstance(model, with_head)  # its head conv (to 1280 channels etc.) goes to `top`
    attr = "layers" if isinstance(model, tv.MNASNet) else "features"
    parts = OrderedDict([(attr, getattr(model, attr))])
    if isinstance(model, tv.DenseNet):
        parts["relu"] = nn.ReLU()  # torchvision applies F.relu after `features` in forward, outside any module
    groups = _conv_groups(getattr(model, attr))
    blocks, top = (groups[1:-1], groups[-1:]) if head else (groups[1:], [])
    return _trunk(nn.Sequential(parts), blocks, top)


def timm_trunk(name: str, weights: str | os.PathLike | None) -> Trunk:
    """timm's `name` without its head (forward = forward_features), with the weights file loaded if given."""
    try:
        import timm
    except ImportError:
        raise ConfigError(f"timm:{name} needs the timm package: pip install timm") from None
    # is_model accepts `arch.tag` names but not hub references (hf-hub:...), which would download a config.
    if not timm.is_model(name):
        raise ConfigError(f"timm has no model {name!r}{_close(name, timm.list_models())}")
    model = timm.create_model(name, pretrained=False)
    if weights is not None:
        _load_strict(model, weights, f"timm {name}")
    model.reset_classifier(0, "")
    out = _drop_unused(model)
    if out.dim() != 4 or out.shape[1] != getattr(model, "num_features", out.shape[1]):
        raise ConfigError(
            f"timm {name}: forward_features gives {_shape(out)}, not 1×C×h×w feature maps (a transformer's tokens "
            "or channels-last maps?); only convnets can be bases"
        )
    if hasattr(model, "blocks"):  # efficientnet/mobilenet-like: stages of blocks, flattened to the blocks
        blocks = [b for stage in model.blocks for b in (stage if isinstance(stage, nn.Sequential) else [stage])]
    elif (stages := getattr(model, "stages", None) or getattr(model, "layers", None)) is not None:  # convnext, ...
        blocks = list(stages)
    elif found := [getattr(model, n) for n in _NUMBERED if hasattr(model, n)]:
        blocks = found
    elif isinstance(getattr(model, "features", None), nn.Sequential):  # densenet, vgg
        blocks = _conv_groups(model.features)[1:]
    else:
        raise ConfigError(f"timm {name} ({type(model).__name__}): cannot tell its blocks (no blocks/stages/layers)")
    # After the blocks, forward_features may run a head conv (efficientnet) or a norm (convnext, regnet's final
    # conv); those with parameters train along with the blocks. Modules forward_features does not use are gone.
    after = ("conv_head", "bn2", "norm_pre", "final_conv", "norm")
    top = [m for n in after if _has_params(m := getattr(model, n, None))]
    return Trunk(module=model.train(False), forward=model.forward_features, blocks=blocks, top=top)


def feature_info(trunk: Trunk, size: int) -> tuple[int, int, int]:
    """(channels, stride, trainable parameters) of the trunk, from one forward pass on a size×size input."""
    first = next(trunk.module.parameters(), None)  # the input goes where the weights are, in their dtype
    x = torch.zeros(1, 3, size, size) if first is None else torch.zeros(1, 3, size, size).to(first)
    modes = {m: m.training for m in trunk.module.modules()}
    trunk.module.train(False)  # no batch-norm statistic is updated and dropout is off
    try:
        with torch.no_grad():
            out = trunk.forward(x)
    except (RuntimeError, AssertionError, ValueError) as e:  # e.g. "Output size is too small", a fixed input size
        raise ConfigError(f"the base cannot run on a {size}×{size} input: {str(e).splitlines()[0]}") from None
    finally:
        for m, training in modes.items():
            m.training = training
    shape = _shape(out)
    if out.dim() != 4:
        raise ConfigError(f"the base gives {shape} at {size}×{size} input; expected N×C×h×w feature maps")
    _, channels, h, w = out.shape
    # The stride is taken as the smallest power of two ≥ size/w: a padded network of stride s gives ⌈size/s⌉ on
    # sizes that are not multiples of s (225 → 8 at stride 32), so size/w alone (28.1) would not find it.
    stride = 2 ** math.ceil(math.log2(size / w))
    if math.ceil(size / stride) != h or math.ceil(size / stride) != w:
        raise ConfigError(
            f"the base gives {shape} at {size}×{size} input: feature maps {h}×{w}, which is not ⌈{size}/s⌉ on each "
            "side for any power-of-two stride s, so its pixels do not map to input pixels at a whole stride "
            "(unpadded convolutions or poolings lose the border); try another input size or another base"
        )
    params = sum(p.numel() for p in trunk.module.parameters() if p.requires_grad)
    return channels, stride, params


# ── helpers ───────────────────────────────────────────────────────────────────────────────────────────────────────
def _trunk(module: nn.Sequential, blocks: list[nn.Module], top: list[nn.Module]) -> Trunk:
    return Trunk(module=module.train(False), forward=module, blocks=blocks, top=top)


def _conv_groups(seq: nn.Sequential) -> list[nn.Module]:
    """A plain layer list (vgg: conv, relu, conv, relu, pool, ...) cut into units that each start at a child
    holding a convolution, so that "the last K blocks" counts convolutions, not parameterless ReLUs and pools.
    Models whose children are already stages (mobilenet, efficientnet, convnext) come back child by child."""
    groups: list[list[nn.Module]] = []
    for child in seq:
        if not groups or any(isinstance(m, nn.Conv2d) for m in child.modules()):
            groups.append([])
        groups[-1].append(child)
    # A unit of one child is that child; of several, a Sequential viewing them (not registered in the trunk).
    return [g[0] if len(g) == 1 else nn.Sequential(*g) for g in groups]


def _drop_unused(model: nn.Module) -> Tensor:
    """Replace the children with parameters that forward_features never runs (e.g. timm mobilenetv3's conv_head,
    applied after pooling; vgg's pre_logits) by Identity, so the trunk owns nothing of the head. Returns the
    output of that probe pass."""
    ran: set[nn.Module] = set()
    hooks = [m.register_forward_hook(lambda m, *_: ran.add(m)) for m in model.children()]
    # A small input keeps this cheap (a 224×224 pass of efficientnet takes seconds on a slow CPU); models that take
    # only their own size (vit-like) get that.
    sizes = [(64, 64), tuple(model.pretrained_cfg.get("input_size", (3, 224, 224))[1:])]
    try:
        with torch.no_grad():
            try:
                out = model.train(False).forward_features(torch.zeros(1, 3, *sizes[0]))
            except (RuntimeError, AssertionError, ValueError):
                out = model.forward_features(torch.zeros(1, 3, *sizes[1]))
    finally:
        for hook in hooks:
            hook.remove()
    for child_name, child in list(model.named_children()):
        if child not in ran and _has_params(child):
            setattr(model, child_name, nn.Identity())
    return out


def _has_params(m: nn.Module | None) -> bool:
    return m is not None and next(m.parameters(), None) is not None


def _load_strict(model: nn.Module, path: str | os.PathLike, label: str) -> None:
    """Load a state dict file into the full model, strictly; on any mismatch the model is untouched.

    Only `num_batches_tracked` (batch-norm counters that older checkpoints lack) may be absent.
    """
    tensors = load_state_dict_file(path)
    problems = state_dict_problems(model.state_dict(), tensors, limit=8)
    if problems:
        raise CheckpointError(f"{path}: does not match {label}: " + "; ".join(problems))
    model.load_state_dict(tensors, strict=False)  # strictness checked above, with the optional counters allowed


def _shape(t: Tensor) -> str:
    return "×".join(map(str, t.shape)) if t.dim() else "a scalar"


def _close(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=4)
    return f"; did you mean {', '.join(close)}?" if close else ""
