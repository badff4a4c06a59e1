"""A detector's maps (mirror-averaged where asked) and CenterNet's decoding of them into boxes: a 3×3 max-pool keeps
each heatmap peak (no NMS), size and offset at the peak give its box.

Shapes: N images, K classes, output maps h×w at `stride` R input pixels per cell (a 128×128 input at R=4 → 32×32).
Boxes are xyxy float pixels of the input image (pixel i covers [i, i+1)); classes are int64 in [0, K).
An object lives at the cell holding its centre, (⌊cx/R⌋, ⌊cy/R⌋): the heatmap peaks there, `offset` holds the rest
of the centre in [0, 1) cells and `size` the box width and height in input pixels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from convscope.errors import DataError

Detections = tuple[Tensor, Tensor, Tensor]  # boxes n×4 xyxy px, scores n (descending), classes n int64


@torch.no_grad()
def decode(
    heatmap_logits: Tensor,
    size: Tensor,
    offset: Tensor,
    stride: int = 4,
    top_k: int = 100,
    threshold: float = 0.01,
) -> list[Detections]:
    """Network maps → per image (boxes, scores, classes), best score first, scores ≥ threshold.

    heatmap_logits N×K×h×w, size N×2×h×w (width, height in input px), offset N×2×h×w (x, y in cells).
    """
    n, k, h, w = heatmap_logits.shape
    if size.shape != (n, 2, h, w) or offset.shape != (n, 2, h, w):
        raise DataError(
            f"decode: expected size and offset of shape {(n, 2, h, w)} to match the heatmap N×K×h×w "
            f"{tuple(heatmap_logits.shape)}. Received: size {tuple(size.shape)}, offset {tuple(offset.shape)}"
        )
    heat = heatmap_logits.sigmoid()
    # CenterNet's NMS: a cell is kept only if no 3×3 neighbour of the same class scores higher (ties all survive).
    peaks = heat * (F.max_pool2d(heat, 3, stride=1, padding=1) == heat)
    scores, index = peaks.reshape(n, k * h * w).topk(min(top_k, k * h * w), dim=1)  # N×T, sorted descending
    classes, cell = index // (h * w), index % (h * w)  # N×T class, N×T flat cell y·w + x
    boxes = _boxes_at(cell, size, offset, stride)  # N×T×4
    keep = scores >= threshold
    return [(boxes[i][keep[i]], scores[i][keep[i]], classes[i][keep[i]]) for i in range(n)]


def _boxes_at(cell: Tensor, size: Tensor, offset: Tensor, stride: int) -> Tensor:
    """N×T flat cells → N×T×4 xyxy boxes in input pixels, clipped to the h·R × w·R image."""
    n, _, h, w = size.shape
    at = cell[:, None, :].expand(n, 2, -1)  # N×2×T
    wh = size.reshape(n, 2, h * w).gather(2, at).clamp(min=0)  # N×2×T input px; a negative size means nothing
    off = offset.reshape(n, 2, h * w).gather(2, at)  # N×2×T cells
    cx = ((cell % w) + off[:, 0]) * stride  # N×T input px
    cy = ((cell // w) + off[:, 1]) * stride
    x1, x2 = (cx - wh[:, 0] / 2).clamp(0, w * stride), (cx + wh[:, 0] / 2).clamp(0, w * stride)
    y1, y2 = (cy - wh[:, 1] / 2).clamp(0, h * stride), (cy + wh[:, 1] / 2).clamp(0, h * stride)
    return torch.stack([x1, y1, x2, y2], dim=-1)


def detector_maps(model, x: torch.Tensor, flip: bool = False) -> torch.Tensor:
    """The detector's N×(K+4)×h×w maps of normalised images x (N×3×H×W). With `flip`, those of the images and of
    their mirror images averaged, as CenterNet tests ("Objects as Points", Zhou et al. 2019, flip augmentation):
    heatmap probabilities and box sizes are averaged (the mirror's maps flipped back), centre offsets are the
    image's own (a mirrored offset points the other way within its cell)."""
    out = model(x)
    if not flip:
        return out
    return mirror_average(out, model(x.flip(-1)).flip(-1), model.spec.layers[-1].classes)


def mirror_average(out: Tensor, mirror: Tensor, classes: int) -> Tensor:
    """detector_maps' average of the maps `out` (N×(K+4)×h×w) with `mirror`, the mirror images' maps flipped back."""
    k = classes
    heat = (out[:, :k].sigmoid() + mirror[:, :k].sigmoid()) / 2
    size = (out[:, k : k + 2] + mirror[:, k : k + 2]) / 2
    return torch.cat([torch.logit(heat, eps=1e-6), size, out[:, k + 2 :]], dim=1)
