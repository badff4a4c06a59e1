"""Transfer learning as the TensorFlow tutorial does it: a pretrained base, frozen, under a new head; then fine-tuning.

    spec   base (224×224×3 → 7×7×1280) → global_pool avg → dropout 0.2 → dense (one unit per class)
    phase 1  `epochs`: only the head trains; the base is frozen, its batchnorm layers in inference mode
    phase 2  `finetune_epochs`: the base's last `unfreeze_blocks` blocks train too, at a 10× smaller learning rate

The result is an ordinary run folder (the spec above + weights): evaluate, predict, featuremaps, gradcam and the
report work on it as on any run.
"""

from __future__ import annotations

from pathlib import Path

from convscope.errors import ConfigError
from convscope.spec import Base, Dense, Dropout, GlobalPool, NetSpec


def transfer_spec(arch: str, image_size: int, weights: str | None = None, dropout: float = 0.2) -> NetSpec:
    """base → global average pool → dropout → dense, for square color images of `image_size`.

    weights: a local weights file (needed for torchvision/timm bases; default for efficientnet-lite0: its ImageNet
    weights). Bases that are not built in are measured here (channels, stride, params) so the spec can be linted.
    """
    if image_size < 32:
        raise ConfigError(f"image_size must be at least 32 (a base divides it by 32). Received: {image_size}")
    if image_size > 4096:  # every image is resized to it before anything else runs
        raise ConfigError(f"image_size must be at most 4096. Received: {image_size}")
    weights = str(Path(weights).resolve()) if weights else None  # absolute: a resumed run may start elsewhere
    base = Base(arch, weights=weights or "imagenet")
    if arch.startswith(("torchvision:", "timm:")):
        if weights is None:
            raise ConfigError(f"{arch}: pass its weights file with --weights PATH (nothing is downloaded)")
        from convscope.pretrained.bases import build_trunk
        from convscope.pretrained.external import feature_info

        channels, stride, params = feature_info(build_trunk(base), image_size)
        base = Base(arch, weights=weights, channels=channels, stride=stride, params=params)
    name = arch.split(":")[-1] + "-transfer"
    layers = (base, GlobalPool("avg"), Dropout(dropout), Dense(10))  # dense resized to the data's classes
    return NetSpec(input=(image_size, image_size, 3), layers=layers, name=name)
