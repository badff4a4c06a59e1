"""Duplicate boxes of one image, found in about n log n time instead of comparing every pair.

The rule (the same for YOLO, COCO and VOC): boxes are taken in file order; a box whose IoU with an earlier *kept*
box of the same class is over DUPLICATE_IOU (0.95) is a duplicate of the first such kept box and is dropped, the
others are kept. Comparing each box with every kept box costs n²/2 IoUs: about 70 s for 20,000 boxes in one image.

Here each kept box goes into a grid cell, and a box is compared only with the kept boxes of the few cells where a
duplicate can be. Why that is enough: with iw the width of two boxes' intersection, IoU > t implies
iw·ih > t·max(area_a, area_b), so iw > t·max(w_a, w_b) (iw ≤ min(w_a, w_b) and ih ≤ min(h_a, h_b)); hence
t·w_a < w_b < w_a/t, and since iw ≤ max(w_a, w_b) − |x1_a − x1_b|, |x1_a − x1_b| < (1 − t)·max(w_a, w_b); the same
holds for heights and y1. Boxes are grouped by class and by the octave of their width and height (2^L ≤ w < 2^(L+1)),
and in each group by cells of a quarter of the octave's smallest side, so the candidates of a box lie in at most two
octaves and two cells along each axis. The IoU is computed as before, in float64, and the candidates are tried in
file order, so the results are identical to the pairwise check (tests/data/detection/test_duplicates.py compares
them on random boxes).
"""

from __future__ import annotations

import math

import numpy as np

from convscope.data.detection.boxes import DUPLICATE_IOU

_SLACK = 1.01  # widen every bound by 1%: floating-point rounding can never hide a duplicate
_CELL = 0.25  # a cell's side, in units of its octave's smallest width (or height)
_NUMPY_FROM = 24  # candidates from which one vectorised IoU beats a Python loop


def find_duplicates(xyxy: np.ndarray, classes, iou: float = DUPLICATE_IOU) -> tuple[np.ndarray, np.ndarray]:
    """For n boxes in file order (xyxy: n×4 x1, y1, x2, y2 in any one unit; classes: n ints), which are duplicates.

    Returns (earlier, ious): earlier[i] is the index of the earlier kept box of the same class that box i overlaps
    with an IoU over `iou` (the first such in file order), or -1 when box i is kept; ious[i] that IoU (0 when kept).
    Boxes with a non-finite coordinate or no area are kept and never match (their IoU is NaN or 0).
    """
    boxes = np.asarray(xyxy, dtype=np.float64).reshape(-1, 4)
    labels = np.asarray(classes).reshape(-1)
    n = len(boxes)
    earlier = np.full(n, -1, dtype=np.int64)
    ious = np.zeros(n, dtype=np.float64)
    if n < 2:
        return earlier, ious
    rows = boxes.tolist()  # Python floats: the same IEEE doubles, read far faster one at a time
    cells: dict[tuple, list[int]] = {}
    reach = (1 - iou) / iou * _SLACK  # |Δx1| < (1 − t)·max(w_a, w_b) < (1 − t)/t · w_a
    for i, (x1, y1, x2, y2) in enumerate(rows):
        w, h = x2 - x1, y2 - y1
        if not (w > 0 and h > 0 and math.isfinite(w) and math.isfinite(h)):
            continue  # no area: IoU 0 with everything (NaN: compares false), as in the pairwise check
        label = labels[i].item()
        candidates: list[int] = []
        for lw in _octaves(w, iou):
            for lh in _octaves(h, iou):
                for key in _keys(label, lw, lh, x1, y1, w * reach, h * reach):
                    candidates += cells.get(key, ())
        if candidates:
            found = _first_over(rows, i, sorted(set(candidates)), iou)
            if found is not None:
                earlier[i], ious[i] = found
                continue
        lw, lh = math.floor(math.log2(w)), math.floor(math.log2(h))
        key = (label, lw, lh, math.floor(x1 / (_CELL * 2.0**lw)), math.floor(y1 / (_CELL * 2.0**lh)))
        cells.setdefault(key, []).append(i)
    return earlier, ious


def _octaves(side: float, iou: float) -> list[int]:
    """The octaves L (2^L ≤ s < 2^(L+1)) that a duplicate's side s can be in: t·side < s < side/t, widened."""
    low = math.floor(math.log2(side * iou / _SLACK))
    high = math.floor(math.log2(side / iou * _SLACK))
    return list(range(low, high + 1))


def _keys(label, lw: int, lh: int, x1: float, y1: float, dx: float, dy: float):
    """The cells of octaves (lw, lh) within dx of x1 and dy of y1."""
    cw, ch = _CELL * 2.0**lw, _CELL * 2.0**lh
    for cx in range(math.floor((x1 - dx) / cw), math.floor((x1 + dx) / cw) + 1):
        for cy in range(math.floor((y1 - dy) / ch), math.floor((y1 + dy) / ch) + 1):
            yield label, lw, lh, cx, cy


def _first_over(rows: list[list[float]], i: int, kept: list[int], iou: float) -> tuple[int, float] | None:
    """(index, IoU) of the first of `kept` (indices in file order) that box i overlaps more than `iou`, else None.

    The arithmetic is the pairwise check's, operation for operation, so the IoUs are bit for bit the same."""
    x1, y1, x2, y2 = rows[i]
    area = (x2 - x1) * (y2 - y1)
    if len(kept) >= _NUMPY_FROM:
        other = np.array([rows[k] for k in kept])
        ix = np.clip(np.minimum(x2, other[:, 2]) - np.maximum(x1, other[:, 0]), 0, None)
        iy = np.clip(np.minimum(y2, other[:, 3]) - np.maximum(y1, other[:, 1]), 0, None)
        inter = ix * iy
        union = area + (other[:, 2] - other[:, 0]) * (other[:, 3] - other[:, 1]) - inter
        values = inter / np.maximum(union, 1e-12)
        hits = np.flatnonzero(values > iou)
        return (kept[hits[0]], float(values[hits[0]])) if hits.size else None
    for k in kept:
        a1, b1, a2, b2 = rows[k]
        ix = max(min(x2, a2) - max(x1, a1), 0.0)
        iy = max(min(y2, b2) - max(y1, b1), 0.0)
        inter = ix * iy
        value = inter / max(area + (a2 - a1) * (b2 - b1) - inter, 1e-12)
        if value > iou:
            return k, value
    return None
