"""A spec's `base` layer as a torch module: a pretrained feature extractor, frozen or with its top blocks trainable.

>>> import torch
>>> from convscope.spec import Base
>>> base = build_base(Base("efficientnet-lite0", weights="none"))
>>> base(torch.zeros(1, 3, 96, 96)).shape                 # ⌈96 / 32⌉ = 3
torch.Size([1, 1280, 3, 3])
"""

from __future__ import annotations

from pathlib import Path

from torch import Tensor, nn

from convscope.errors import ConfigError
from convscope.pretrained.catalog import lite0_cut
from convscope.pretrained.trunk import Trunk
from convscope.spec import Base, NetSpec

# Per-channel input scaling in 0–1 units (the trainer's normalise: (x/255 − mean)/std). EfficientNet-Lite0's weights
# come from TensorFlow, trained on (x − 127)/128 of 0–255 pixels; torchvision's weights on ImageNet mean/std.
LITE0_SCALING = ((127 / 255,) * 3, (128 / 255,) * 3)
IMAGENET_SCALING = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


class BaseNet(nn.Module):
    """N×3×H×W → N×C×h×w feature maps of a pretrained convnet (`net`, its classifier removed).

    `set_trainable(K)` trains the last K blocks (and the layers after them) and freezes the rest; K=0, all frozen, is
    how training starts. The base's batchnorm layers ALWAYS run in inference mode, even in `train()`: in training mode
    they would normalise each batch by its own statistics and overwrite the running ones learned on ImageNet, so the
    features the head learns from would shift from batch to batch and differ again at test time (the classic
    transfer-learning trap; the TensorFlow tutorial keeps them in inference mode when fine-tuning too). Their scales
    and shifts still train in unfrozen blocks.
    """

    def __init__(self, trunk: Trunk):
        super().__init__()
        self.net = trunk.module
        self._forward = trunk.forward
        self.blocks, self.top = list(trunk.blocks), list(trunk.top)  # plain lists: `net` owns the parameters
        self.trainable_blocks = len(self.blocks)

    def forward(self, x: Tensor) -> Tensor:
        return self._forward(x)

    def set_trainable(self, blocks: int) -> None:
        """Train the last `blocks` blocks and the top layers after them (none when 0); freeze everything else."""
        self.trainable_blocks = max(0, min(blocks, len(self.blocks)))
        self.net.requires_grad_(False)
        for module in self._trainable_modules():
            module.requires_grad_(True)
        self.train(self.training)

    def _trainable_modules(self) -> list[nn.Module]:
        k = self.trainable_blocks
        return [*self.blocks[len(self.blocks) - k :], *self.top] if k else []

    def train(self, mode: bool = True) -> BaseNet:
        super().train(mode)
        if mode:
            self.net.train(False)  # frozen layers: dropout / drop-path off as well
            for module in self._trainable_modules():
                module.train(True)
        for module in self.net.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.train(False)
        return self


def build_base(layer: Base, pretrained: bool = True) -> BaseNet:
    """The module of a spec's base layer, with its weights unless `pretrained` is False (a run's weights follow)."""
    return BaseNet(build_trunk(layer, pretrained))


def build_trunk(layer: Base, pretrained: bool = True) -> Trunk:
    weights = layer.weights if pretrained and layer.weights != "none" else None
    arch = layer.arch
    if arch == "efficientnet-lite0":
        from convscope.pretrained.efficientnet import EfficientNetLite0, load_weights_file, weights_path

        model = EfficientNetLite0(num_classes=0)
        if weights is not None:
            load_weights_file(model, weights_path() if weights == "imagenet" else Path(weights))
        if layer.stride in (None, 32):
            return Trunk(model, model.forward_features, list(model.blocks), [model.head])
        kept, _channels = lite0_cut(layer.stride)  # a detector's finer feature maps: the later blocks are dropped
        model.blocks, model.head = model.blocks[:kept], nn.Identity()
        return Trunk(model, model.forward_features, list(model.blocks), [])
    if weights == "imagenet":
        raise ConfigError(
            f"{arch}: no ImageNet weights ship with convscope for this base; pass a local weights file (--weights PATH)"
        )
    from convscope.pretrained import external

    family, name = arch.split(":", 1)
    if family == "torchvision":
        return external.torchvision_trunk(name, weights)
    return external.timm_trunk(name, weights)


def spec_base(spec: NetSpec) -> Base | None:
    """The spec's base layer (always the first), if it has one."""
    first = spec.layers[0]
    return first if isinstance(first, Base) else None


def input_scaling(layer: Base) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) per channel in 0–1 units that the base's weights were trained with."""
    if layer.arch == "efficientnet-lite0":
        return LITE0_SCALING
    if layer.arch.startswith("timm:"):
        try:
            import timm

            cfg = timm.models.get_pretrained_cfg(layer.arch.split(":", 1)[1])
        except (ImportError, RuntimeError):
            cfg = None
        if cfg is not None:
            return tuple(cfg.mean), tuple(cfg.std)
    return IMAGENET_SCALING
