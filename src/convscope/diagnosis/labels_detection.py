"""Detection labels judged by a trained detector: boxes it finds nothing near ("missed-box": a missing object, or a
box drawn where nothing is) and objects it is sure of where no box is ("unlabelled-object": an object nobody boxed).

Every readable image is read as `convscope detect predict` reads it (upright, letterboxed to the run's input,
mirror-averaged where the run tests so, boxes mapped back to the image's own pixels). Matching is class-agnostic:
a box of the wrong class near an object is not "nothing near it". Thresholds:
- missed: no prediction with score ≥ MISSED_SCORE overlapping the box at IoU ≥ NEAR_IOU; ranked by the best score
  of any prediction at that IoU, lowest first (the detector sees least there);
- unlabelled: a prediction with score ≥ UNLABELLED_SCORE overlapping every labelled box at IoU < NEAR_IOU, unless it
  is the same object as a better one (IoU ≥ detect.predict.SAME_OBJECT_IOU, any class: `detect predict` does not
  draw it either); ranked by its score, highest first.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from convscope.data.images import open_image, to_array
from convscope.detect.predict import boxes_in_images, same_object_as
from convscope.diagnosis.listing import Item, Listing
from convscope.diagnosis.model import Example, Finding
from convscope.diagnosis.scan import Scan
from convscope.diagnosis.twins import twinned_rows, with_and_without_twins
from convscope.errors import ConvscopeError
from convscope.loaded import LoadedRun

MISSED_SCORE = 0.3
UNLABELLED_SCORE = 0.5
NEAR_IOU = 0.1
_BATCH = 16


@dataclass(frozen=True)
class Predicted:
    """One image's predictions in its own pixels: boxes n×4 xyxy, scores n, classes n (int)."""

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray


def judge_boxes(
    loaded: LoadedRun, listing: Listing, scan: Scan, findings: list[Finding], progress=None
) -> tuple[list[Finding], dict[str, float] | None, list[str]]:
    """(findings, scores, notes) of a detection data set's boxes judged by the detector `loaded`; `findings`: the
    doctor's so far (test images with a twin in train give the test mAP without them)."""
    rows = [i for i, reason in enumerate(scan.reasons) if reason is None]
    predicted = predict_boxes(loaded, [listing.items[i] for i in rows], progress)
    missed, unlabelled = [], []
    for row, found in zip(rows, predicted, strict=True):
        if found is None:
            continue
        m, u = compare(listing.items[row], found, listing.classes)
        missed += m
        unlabelled += u
    missed.sort(key=lambda e: (e.score, e.name))
    unlabelled.sort(key=lambda e: (-e.score, e.name))
    note = (
        f"boxes judged by {loaded.run.path} on {sum(f is not None for f in predicted):,} images: a box is "
        f"missed with no prediction of score ≥ {MISSED_SCORE} at IoU ≥ {NEAR_IOU}; an object is unlabelled "
        f"when a prediction of score ≥ {UNLABELLED_SCORE} overlaps no box at IoU ≥ {NEAR_IOU} (any class)"
    )
    notes = [note]
    scores = test_scores(listing, dict(zip(rows, predicted, strict=True)), scan, findings, notes)
    judged = [f for f in (_missed_finding(missed), _unlabelled_finding(unlabelled)) if f is not None]
    return judged, scores, notes


def test_scores(
    listing: Listing, predicted: dict[int, Predicted | None], scan: Scan, findings: list[Finding], notes: list[str]
) -> dict[str, float] | None:
    """{"test mAP@0.5": m} over the test images predicted (COCO's mAP, pycocotools; boxes in the images' own pixels,
    no ignore regions), and without the test images that have a twin in train; None without test images."""
    from convscope.detect.metrics import coco_evaluate

    split = np.array([item.split for item in listing.items])
    test = np.array([predicted.get(i) is not None for i in range(len(listing.items))]) & (split == "test")
    if not test.any():
        return None
    twinned = twinned_rows(listing, findings, test, split == "train")

    def map50(rows: np.ndarray) -> float:
        truth = [(listing.items[i].boxes.xyxy, listing.items[i].boxes.classes) for i in rows]
        found = [(predicted[i].boxes, predicted[i].scores, predicted[i].classes) for i in rows]
        size = (int(scan.height[rows].max()), int(scan.width[rows].max()))
        return float(coco_evaluate(truth, found, list(listing.classes), size).map50)

    return with_and_without_twins("test mAP@0.5", map50, test, twinned, notes)


def predict_boxes(loaded: LoadedRun, items: list[Item], progress=None) -> list[Predicted | None]:
    """Each item's predictions (every one the decoder keeps, as `convscope detect predict` finds them:
    detect.predict.boxes_in_images), or None when the image cannot be read; progress("labels", done, total) per
    batch."""
    results: list[Predicted | None] = [None] * len(items)
    for start in range(0, len(items), _BATCH):
        places, arrays = [], []
        for i in range(start, min(start + _BATCH, len(items))):
            try:
                arrays.append(to_array(open_image(items[i].path), 3))  # upright, H×W×3
                places.append(i)
            except ConvscopeError:
                continue
        if arrays:
            for i, found in zip(places, boxes_in_images(loaded, arrays), strict=True):
                results[i] = Predicted(*found)
        if progress:
            progress("labels", min(start + _BATCH, len(items)), len(items))
    return results


def compare(item: Item, found: Predicted, classes: tuple[str, ...]) -> tuple[list[Example], list[Example]]:
    """(missed boxes, unlabelled objects) of one image, as Examples with their box in the image's pixels."""
    labelled = item.boxes.xyxy.astype(np.float64) if item.boxes is not None else np.zeros((0, 4))
    given = item.boxes.classes if item.boxes is not None else np.zeros(0, np.int64)
    overlap = iou(labelled, found.boxes)  # boxes × predictions
    near = overlap >= NEAR_IOU
    missed, unlabelled = [], []
    for b in range(len(labelled)):
        close = found.scores[near[b]]
        best = float(close.max()) if len(close) else 0.0
        if best < MISSED_SCORE:
            name = classes[int(given[b])]
            why = f"{name} box with no prediction near it" + (f" (best {best:.2f})" if best > 0 else "")
            missed.append(_example(item, name, why, best, labelled[b]))
    sure = np.flatnonzero(found.scores >= UNLABELLED_SCORE)
    sure = sure[same_object_as(found.boxes[sure], found.scores[sure]) < 0]  # one object, one prediction
    for p in sure:
        if not near[:, p].any():
            name = classes[int(found.classes[p])]
            why = f"the network sees a {name} ({found.scores[p]:.2f}) where no box is"
            unlabelled.append(_example(item, None, why, float(found.scores[p]), found.boxes[p]))
    return missed, unlabelled


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of a (n×4 xyxy) with every box of b (m×4): n×m (torchvision.ops.box_iou)."""
    from torchvision.ops import box_iou

    a, b = (torch.as_tensor(np.asarray(x, np.float64).reshape(-1, 4)) for x in (a, b))
    return box_iou(a, b).numpy()


def _example(item: Item, label: str | None, why: str, score: float, box: np.ndarray) -> Example:
    x1, y1, x2, y2 = (round(float(v), 1) for v in box)
    return Example(item.name, item.split, label, why, score=round(score, 4), box=(x1, y1, x2, y2), index=item.index)


def _missed_finding(examples: list[Example]) -> Finding | None:
    return _finding(
        "missed-box",
        examples,
        "labelled box(es) in {images} image(s) with no prediction near them",
        "look at each: a box around nothing (remove it) or an object the detector has not learnt",
    )


def _unlabelled_finding(examples: list[Example]) -> Finding | None:
    return _finding(
        "unlabelled-object",
        examples,
        "confident prediction(s) in {images} image(s) where no box is",
        "look at each: an object nobody boxed (add its box) or a false alarm of the detector",
    )


def _finding(kind: str, examples: list[Example], what: str, advice: str) -> Finding | None:
    """A problem of `kind` counting `examples` (boxes), titled "N {what}" with {images} the images they are in."""
    if not examples:
        return None
    images = len({e.name for e in examples})
    title = f"{len(examples)} {what.format(images=images)}"
    return Finding("labels", kind, title, len(examples), True, tuple(examples), advice)
