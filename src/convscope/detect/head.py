"""The detection head: CenterNet ("Objects as Points", Zhou et al. 2019), as a spec's `detect` layer.

Why this head for training on a CPU: an object is one point (its centre) on a stride-4 heatmap, so there are no
anchor boxes to design, no IoU matching of anchors to objects in every batch, and no NMS while training; the targets
are a Gaussian bump per object, computed once per batch with a few tensor ops, and the loss is dense and cheap (focal
loss on the heatmap, L1 on size and offset at the centres). Decoding replaces NMS by a 3×3 max-pool
(convscope.detect.decode).

    N×C×h×w features at stride s ──upsample ×s/4 (bilinear)──► 3×3 conv (channels) + BN + ReLU ──► 1×1 conv
    ──► N×(K + 4)×H/4×W/4: K centre-heatmap logits, then box width and height (input pixels), then centre offset
        within the cell (0–1, in cells)
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# The heatmap starts out predicting "no object" with probability 0.9 almost everywhere (CenterNet's prior): focal
# loss then starts small instead of being swamped by thousands of easy background positions.
PRIOR = 0.1


class CenterNetHead(nn.Module):
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
