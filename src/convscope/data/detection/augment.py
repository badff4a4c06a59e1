"""Box-aware batch augmentation: images N×C×H×W (uint8 or float) with boxes as a list of n×4 xyxy pixel tensors;
and colour (HSV) jitter, which leaves the boxes as they are.

As in `convscope.data.augment`, each step is one tensor operation over the whole batch and every random draw comes
from the `generator` passed in. Boxes of all images are concatenated into one M×4 tensor for the arithmetic and
split back per image at the end. Pixel i covers [i, i+1), so continuous box edges map exactly like the image.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from convscope.config import TrainConfig
from convscope.errors import ConfigError

MIN_VISIBLE = 0.3  # a moved box keeps its label only if at least this share of its area is still in the image
MIN_SIDE = 2.0  # ... and both its clipped sides are at least this many pixels


def flip(images: Tensor, boxes: list[Tensor], generator: torch.Generator) -> tuple[Tensor, list[Tensor]]:
    """Mirror a random half of the batch left-right (each image with probability 1/2): x1' = W − x2, x2' = W − x1."""
    n, width = images.shape[0], images.shape[3]
    mirror = torch.rand(n, generator=generator) < 0.5  # N, drawn on the generator's device (the CPU)
    images = torch.where(mirror.to(images.device)[:, None, None, None], images.flip(3), images)
    flat, image = _cat(boxes)
    flipped = torch.stack([width - flat[:, 2], flat[:, 1], width - flat[:, 0], flat[:, 3]], dim=1)
    flat = torch.where(mirror.to(flat.device)[image][:, None], flipped, flat)
    return images, list(flat.split([len(b) for b in boxes]))


def scale_translate(
    images: Tensor,
    boxes: list[Tensor],
    classes: list[Tensor],
    generator: torch.Generator,
    scale: tuple[float, float] = (0.75, 1.25),
    translate: float = 0.1,
    fill: float = 0.0,
) -> tuple[Tensor, list[Tensor], list[Tensor]]:
    """Zoom each image by s ~ U(scale) about its centre, then shift by up to ±translate of its width and height.

    One `affine_grid`/`grid_sample` call for the batch (bilinear; uncovered pixels get `fill`, e.g. 0 or grey 128
    for uint8). Boxes follow the same map x' = s·(x − W/2) + W/2 + tx·W, are clipped to the image, and are dropped
    with their classes when less than 30% of their area, or a side under 2 px, is left inside.
    """
    n, _, height, width = images.shape
    s = torch.empty(n).uniform_(scale[0], scale[1], generator=generator)  # N zoom factors
    shift = torch.empty(n, 2).uniform_(-translate, translate, generator=generator)  # N×2 (tx, ty), image fractions
    images = _warp(images, s, shift, fill)
    flat, image = _cat(boxes)
    moved, keep = _move_boxes(flat, s.to(flat.device)[image], shift.to(flat.device)[image], (height, width))
    counts = torch.bincount(image[keep], minlength=n).tolist()
    flat_classes = torch.cat(classes) if classes else torch.zeros(0, dtype=torch.long)
    return images, list(moved[keep].split(counts)), list(flat_classes[keep.to(flat_classes.device)].split(counts))


def _warp(images: Tensor, s: Tensor, shift: Tensor, fill: float) -> Tensor:
    """Resample N×C×H×W so output pixel x' shows input x = (x' − W/2 − tx·W)/s + W/2 (likewise y)."""
    # affine_grid works in normalised coordinates u = 2x/W − 1 (align_corners=False: ±1 are the outer pixel edges),
    # where the inverse map above becomes u = u'/s − 2·tx/s: one 2×3 matrix per image.
    theta = torch.zeros(len(s), 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1 / s
    theta[:, :, 2] = -2 * shift / s[:, None]
    theta = theta.to(images.device)
    x = images.float() - fill  # zero padding of (image − fill), then + fill: padding by `fill`
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + fill
    if images.dtype == torch.uint8:
        return out.round().clamp(0, 255).to(torch.uint8)
    return out.to(images.dtype)


def _move_boxes(boxes: Tensor, s: Tensor, shift: Tensor, hw: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """Boxes M×4 with their image's zoom s (M) and shift (M×2, image fractions) → clipped boxes M×4, keep mask M."""
    height, width = hw
    size = boxes.new_tensor([width, height, width, height])  # px, per coordinate of xyxy
    centre = size / 2
    moved = s[:, None] * (boxes - centre) + centre + shift.repeat(1, 2) * size  # M×4 px, unclipped
    clipped = torch.minimum(moved.clamp(min=0), size)
    area = (moved[:, 2:] - moved[:, :2]).prod(dim=1)  # M px²
    sides = clipped[:, 2:] - clipped[:, :2]  # M×2 px
    inside = sides.clamp(min=0).prod(dim=1)
    keep = (inside >= MIN_VISIBLE * area) & (sides >= MIN_SIDE).all(dim=1) & (area > 0)
    return clipped, keep


# YOLOv5/Ultralytics' hyp.scratch hsv_h, hsv_s, hsv_v: hue shifted by up to ±0.015 of the colour circle, saturation
# and value multiplied by 1 ± up to 0.7 and 0.4.
HSV_GAINS = (0.015, 0.7, 0.4)


def color_jitter(images: Tensor, generator: torch.Generator, gains: tuple[float, float, float] = HSV_GAINS) -> Tensor:
    """Shift each image's hue by h·U(−1, 1) turns and scale its saturation and value by 1 + s·U(−1, 1) and
    1 + v·U(−1, 1) (clipped to [0, 1]), as YOLO's HSV augmentation (which multiplies the hue; a shift is
    torchvision's adjust_hue). Boxes are unchanged. images: uint8 N×3×H×W (0–255) → uint8 N×3×H×W, one batched
    RGB → HSV → RGB round trip; 3 draws per image from `generator`."""
    draws = torch.rand(len(images), 3, generator=generator) * 2 - 1  # N×3 in [−1, 1)
    factors = (draws * torch.tensor(gains)).to(images.device)
    hue, sat, val = _rgb_to_hsv(images.float() / 255)  # each N×H×W in [0, 1]
    hue = (hue + factors[:, 0, None, None]) % 1.0
    sat = (sat * (1 + factors[:, 1, None, None])).clamp(0, 1)
    val = (val * (1 + factors[:, 2, None, None])).clamp(0, 1)
    return (_hsv_to_rgb(hue, sat, val) * 255).round().clamp(0, 255).to(torch.uint8)


def _rgb_to_hsv(rgb: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """N×3×H×W RGB in [0, 1] → hue (turns), saturation, value, each N×H×W in [0, 1]."""
    r, g, b = rgb.unbind(1)
    value, _ = rgb.max(1)
    chroma = value - rgb.min(1).values
    safe = torch.where(chroma > 0, chroma, torch.ones_like(chroma))
    hue = torch.where(value == r, ((g - b) / safe) % 6, torch.where(value == g, (b - r) / safe + 2, (r - g) / safe + 4))
    hue = torch.where(chroma > 0, hue / 6, torch.zeros_like(hue))
    sat = torch.where(
        value > 0, chroma / torch.where(value > 0, value, torch.ones_like(value)), torch.zeros_like(value)
    )
    return hue, sat, value


def _hsv_to_rgb(hue: Tensor, sat: Tensor, value: Tensor) -> Tensor:
    """Hue (turns), saturation, value N×H×W in [0, 1] → N×3×H×W RGB in [0, 1] (the standard formula:
    channel n ∈ (5, 3, 1) is v − v·s·max(0, min(k, 4 − k, 1)) with k = (n + 6·hue) mod 6)."""
    n = torch.tensor([5.0, 3.0, 1.0], device=hue.device).view(1, 3, 1, 1)
    k = (n + 6 * hue[:, None]) % 6
    ramp = torch.minimum(torch.minimum(k, 4 - k), torch.ones_like(k)).clamp(min=0)
    return value[:, None] - value[:, None] * sat[:, None] * ramp


def _cat(boxes: list[Tensor]) -> tuple[Tensor, Tensor]:
    """Per-image boxes → M×4 float32 and the image index of each box (M, int64)."""
    device = boxes[0].device if boxes else torch.device("cpu")
    flat = torch.cat([b.float().reshape(-1, 4) for b in boxes]) if boxes else torch.zeros(0, 4)
    counts = torch.tensor([len(b) for b in boxes], device=device)
    # output_size: the total is known here, so a GPU need not be asked for it (a sync)
    image = torch.repeat_interleave(torch.arange(len(boxes), device=device), counts, output_size=len(flat))
    return flat, image


AUGMENTS = ("flip", "scale", "color")  # the box-aware augmentations; `augment: flip,scale` (the default) or `none`


def augments(config: TrainConfig) -> set[str]:
    text = config.augment if config.augment is not None else "flip,scale"
    chosen = {word.strip() for word in text.split(",") if word.strip()} - {"none"}
    if unknown := chosen - set(AUGMENTS):
        raise ConfigError(f"augment for detection: {sorted(unknown)[0]!r} is not one of {', '.join(AUGMENTS)}, none")
    return chosen
