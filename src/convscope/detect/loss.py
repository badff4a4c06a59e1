"""CenterNet's training targets and losses ("Objects as Points", Zhou et al. 2019): a Gaussian heatmap per class, box
size and centre offset at each object's centre cell; focal loss on the heatmap, L1 on size and offset.

Shapes: N images, K classes, output maps h×w at `stride` R input pixels per cell (a 128×128 input at R=4 → 32×32).
Boxes are xyxy float pixels of the input image (pixel i covers [i, i+1)); classes are int64 in [0, K).
An object lives at the cell holding its centre, (⌊cx/R⌋, ⌊cy/R⌋): the heatmap peaks there, `offset` holds the rest
of the centre in [0, 1) cells and `size` the box width and height in input pixels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import generalized_box_iou_loss

from convscope.errors import DataError
from convscope.layers import split_outputs
from convscope.spec_layers import Detect


def gaussian_radius(height: Tensor, width: Tensor, min_overlap: float = 0.7) -> Tensor:
    """CenterNet's `gaussian_radius` (from CornerNet), element-wise: box height and width in cells → radius in cells.

    With o = min_overlap, h = height, w = width, each case is a quadratic in r, solved as CenterNet's code solves it
    (the same expressions, including the ones that are not the textbook root):
      r1 = (b1 + √(b1² − 4·c1)) / 2         b1 = h + w,          c1 = w·h·(1 − o)/(1 + o)   (one corner in, one out)
      r2 = (b2 + √(b2² − 16·c2)) / 2        b2 = 2(h + w),       c2 = (1 − o)·w·h           (both corners in)
      r3 = (b3 + √(b3² − 16·o·c3)) / 2      b3 = −2·o·(h + w),   c3 = (o − 1)·w·h           (both corners out)
      radius = min(r1, r2, r3)
    r3 always binds (r3 ≤ 2(1 − o)·h·w/(h + w) < (h + w)/2 ≤ r1, r2); it is 4·o times the true root of case 3, so
    these Gaussians are wider than the geometric derivation, as in every trained CenterNet.
    """
    h, w, o = height, width, min_overlap
    b1, c1 = h + w, w * h * (1 - o) / (1 + o)
    r1 = (b1 + (b1**2 - 4 * c1).sqrt()) / 2
    b2, c2 = 2 * (h + w), (1 - o) * w * h
    r2 = (b2 + (b2**2 - 16 * c2).sqrt()) / 2
    b3, c3 = -2 * o * (h + w), (o - 1) * w * h
    r3 = (b3 + (b3**2 - 16 * o * c3).sqrt()) / 2
    return torch.minimum(torch.minimum(r1, r2), r3)


def encode_targets(
    boxes_list: list[Tensor],
    classes_list: list[Tensor],
    num_classes: int,
    out_hw: tuple[int, int],
    stride: int = 4,
) -> dict[str, Tensor]:
    """Training targets for a batch: heatmap N×K×h×w, size N×2×h×w, offset N×2×h×w, mask N×h×w (float32).

    Each object adds a Gaussian peaked at exactly 1 on its centre cell (max-combined with its class's other
    objects); size, offset and mask are set at that cell only. Boxes with zero width or height are skipped, as in
    CenterNet. Two objects sharing a centre cell share one regression target (the later one wins).
    All objects of the batch are handled at once (no loop over objects or cells): ~1 ms for 64 images × 6 objects.
    """
    h, w = out_hw
    n = len(boxes_list)
    boxes, classes, image = _flatten(boxes_list, classes_list, num_classes)  # M×4, M, M
    wh = boxes[:, 2:] - boxes[:, :2]  # M×2 input px (width, height)
    present = (wh > 0).all(dim=1)
    boxes, classes, image, wh = boxes[present], classes[present], image[present], wh[present]

    centre = (boxes[:, :2] + boxes[:, 2:]) / (2 * stride)  # M×2 cells (x, y)
    cell = centre.floor().long()
    cell[:, 0].clamp_(0, w - 1)  # a centre on the far border belongs to the last cell
    cell[:, 1].clamp_(0, h - 1)
    gauss, ys, xs = _gaussians(cell, wh / stride)  # M×D×D values at rows ys M×D×1 and columns xs M×1×D

    device = boxes.device
    # Max-combine every object's (2r+1)² window into the flat N·K·h·w heatmap; out-of-map cells go to one spare
    # slot at the end, dropped afterwards (keeps shapes fixed: no boolean indexing).
    heat = torch.zeros(n * num_classes * h * w + 1, device=device)
    slot = ((image * num_classes + classes)[:, None, None] * h + ys) * w + xs  # M×D×D
    slot = torch.where((ys >= 0) & (ys < h) & (xs >= 0) & (xs < w), slot, heat.numel() - 1)
    heat.scatter_reduce_(0, slot.reshape(-1), gauss.reshape(-1), reduce="amax")
    heat = heat[:-1]
    size = torch.zeros(n, 2, h, w, device=device)
    offset = torch.zeros(n, 2, h, w, device=device)
    mask = torch.zeros(n, h, w, device=device)
    x, y = cell[:, 0], cell[:, 1]
    size[image, :, y, x] = wh  # indexing with a slice between the index tensors gives M×2
    offset[image, :, y, x] = centre - cell
    mask[image, y, x] = 1.0
    return {"heatmap": heat.reshape(n, num_classes, h, w), "size": size, "offset": offset, "mask": mask}


def _gaussians(cell: Tensor, wh_cells: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """CenterNet Gaussians on a D×D window around each centre cell (D = 2·max radius + 1, so one shape for all).

    σ = (2r + 1)/6 cells and values beyond the object's own radius r are 0, as in CenterNet's draw_umich_gaussian.
    Returns the values M×D×D, their rows M×D×1 and columns M×1×D (which may fall outside the map).
    """
    radius = gaussian_radius(wh_cells[:, 1].ceil(), wh_cells[:, 0].ceil()).clamp(min=0).floor()  # M, whole cells
    reach = int(radius.max()) if len(radius) else 0
    d = torch.arange(-reach, reach + 1, device=cell.device)  # D cells from the centre
    two_var = 2 * ((2 * radius[:, None] + 1) / 6) ** 2  # M×1, 2σ² in cells²
    # exp(−(dx² + dy²)/2σ²) = exp(−dx²/2σ²)·exp(−dy²/2σ²): one M×D factor, one outer product.
    g = torch.exp(-(d**2) / two_var) * (d.abs() <= radius[:, None])  # M×D
    rows = (cell[:, 1:] + d)[:, :, None]
    cols = (cell[:, :1] + d)[:, None, :]
    return g[:, :, None] * g[:, None, :], rows, cols


def _flatten(boxes_list: list[Tensor], classes_list: list[Tensor], num_classes: int) -> tuple[Tensor, Tensor, Tensor]:
    """Per-image lists → all objects of the batch: boxes M×4 float32, classes M int64, image index M int64."""
    if len(boxes_list) != len(classes_list):
        raise DataError(
            f"encode_targets: expected one classes tensor per boxes tensor. "
            f"Received: {len(boxes_list)} boxes tensors and {len(classes_list)} classes tensors"
        )
    for i, (b, c) in enumerate(zip(boxes_list, classes_list, strict=True)):
        if b.ndim != 2 or b.shape[1] != 4 or c.shape != (b.shape[0],):
            raise DataError(
                f"encode_targets: expected boxes n×4 and classes n for image {i}. "
                f"Received: boxes {tuple(b.shape)}, classes {tuple(c.shape)}"
            )
    device = boxes_list[0].device if boxes_list else torch.device("cpu")
    boxes = torch.cat([b.float() for b in boxes_list]) if boxes_list else torch.zeros(0, 4)
    classes = torch.cat([c.long() for c in classes_list]) if classes_list else torch.zeros(0, dtype=torch.long)
    if classes.numel() and (classes.min() < 0 or classes.max() >= num_classes):
        raise DataError(
            f"encode_targets: expected classes in [0, {num_classes}). "
            f"Received: values from {int(classes.min())} to {int(classes.max())}"
        )
    counts = torch.tensor([b.shape[0] for b in boxes_list], device=device)
    image = torch.repeat_interleave(torch.arange(len(boxes_list), device=device), counts)
    return boxes.to(device), classes.to(device), image


def focal_loss(pred_logits: Tensor, target_heatmap: Tensor, alpha: float = 2.0, beta: float = 4.0) -> Tensor:
    """CenterNet's penalty-reduced pixel-wise focal loss, summed over the batch and divided by its object count.

    Centre cells (target exactly 1): −(1 − p)^α·log p. Every other cell: −(1 − y)^β·p^α·log(1 − p), so cells near
    a centre (y close to 1) are barely punished for firing. log p and log(1 − p) come from logsigmoid of ±logits,
    which stays finite where sigmoid would round to 0 or 1.
    """
    positive = target_heatmap == 1
    log_p, log_not_p = F.logsigmoid(pred_logits), F.logsigmoid(-pred_logits)
    p, not_p = log_p.exp(), log_not_p.exp()
    pos_loss = torch.where(positive, not_p**alpha * log_p, 0.0).sum()
    neg_loss = torch.where(positive, 0.0, (1 - target_heatmap) ** beta * p**alpha * log_not_p).sum()
    return -(pos_loss + neg_loss) / positive.sum().clamp(min=1)  # no objects: the plain sum of the negatives


def regression_loss(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """L1 over the masked centre cells, both channels summed, divided by the object count.

    pred, target N×2×h×w; mask N×h×w. (CenterNet's RegL1Loss divides by 2× the objects, i.e. half this value.)
    """
    return ((pred - target).abs() * mask[:, None]).sum() / mask.sum().clamp(min=1)


# CenterNet's loss: heatmap + 0.1 · size L1 + 1 · offset L1, its L1s averaged per coordinate (÷ 2 per object);
# regression_loss averages per object, so the same balance is 0.05 and 0.5 here. Sizes are pixels, offsets cells.
SIZE_WEIGHT, OFFSET_WEIGHT = 0.05, 0.5


def giou_loss(size: Tensor, offset: Tensor, targets: dict[str, Tensor], stride: int) -> Tensor:
    """1 − GIoU (Rezatofighi et al. 2019) between the predicted and the true box at each object's centre cell,
    averaged over the objects (0 when there are none); torchvision's generalized_box_iou_loss.

    size, offset N×2×h×w (predicted, input px and cells); targets: encode_targets' maps. Both boxes are placed
    relative to their cell (GIoU does not change under a shift of both); a negative predicted size counts as 0.
    """
    n, y, x = targets["mask"].nonzero(as_tuple=True)  # M objects' cells
    if not len(n):
        return size.sum() * 0.0  # keeps the graph (and the device) of a batch without objects
    wh = size[n, :, y, x].float().clamp(min=0)  # M×2 px (indices around a slice: the indexed dimension first)
    centre = offset[n, :, y, x].float() * stride  # M×2 px from the cell's corner
    true_wh, true_centre = targets["size"][n, :, y, x], targets["offset"][n, :, y, x] * stride
    predicted = torch.cat([centre - wh / 2, centre + wh / 2], dim=1)  # M×4 xyxy
    true = torch.cat([true_centre - true_wh / 2, true_centre + true_wh / 2], dim=1)
    return generalized_box_iou_loss(predicted, true, reduction="mean")


def detection_loss(
    out: torch.Tensor, boxes: list, classes: list, head: Detect, giou_weight: float = 0.0
) -> torch.Tensor:
    """Focal loss on the centre heatmaps + L1 on box sizes and centre offsets, per object (CenterNet's balance);
    with `giou_weight`, + that weight × giou_loss at the centres (the config's giou_weight)."""
    heat, size, offset = split_outputs(out, head.classes)
    t = encode_targets(boxes, classes, head.classes, tuple(out.shape[-2:]), head.stride)
    loss = (
        focal_loss(heat, t["heatmap"])
        + SIZE_WEIGHT * regression_loss(size, t["size"], t["mask"])
        + OFFSET_WEIGHT * regression_loss(offset, t["offset"], t["mask"])
    )
    if giou_weight:
        loss = loss + giou_weight * giou_loss(size, offset, t, head.stride)
    return loss
