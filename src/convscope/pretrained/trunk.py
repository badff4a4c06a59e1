"""Trunk: a pretrained convnet cut down to its feature extractor, as every base (built in, torchvision, timm) gives it.

Fine-tuning unfreezes the last K `blocks` (and the `top` layers after them); everything before stays frozen.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor, nn


@dataclass
class Trunk:
    module: nn.Module  # owns every parameter of the feature extractor (classifier removed)
    forward: Callable[[Tensor], Tensor]  # N×3×H×W → N×C×h×w feature maps
    blocks: list[nn.Module]  # in order from input to output; `unfreeze_blocks: K` trains the last K
    top: list[nn.Module]  # layers after the last block (e.g. a 1×1 head conv), trained whenever any block is
