"""COCO box metrics (mAP@0.5, mAP@[0.5:0.95], per class) computed by pycocotools, and the precision–recall plot.

Ground truth and detections stay in memory: they become COCO dicts (xyxy → xywh, image ids 1..N, category ids
1..K for classes 0..K−1) and COCOeval runs on them with its usual settings (10 IoU thresholds 0.50:0.05:0.95,
101 recall thresholds, maxDets 100, area 'all'). Crowd regions join the ground truth with iscrowd 1, so COCOeval
treats them as it does in a COCO file: a detection matched to one (IoU = intersection / detection area) is ignored,
neither a true nor a false positive, and a crowd region is never a missed object.
"""

from __future__ import annotations

import contextlib
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from convscope.errors import DataError

if TYPE_CHECKING:
    from matplotlib.figure import Figure


PIP_COMMAND = "pip install pycocotools"


@dataclass(frozen=True, eq=False)
class DetectionMetrics:
    """COCO results; an AP is nan when the class (or the whole data set) has no ground-truth box."""

    map50: float
    map50_95: float
    per_class_ap50: dict[str, float]
    per_class_ap50_95: dict[str, float]
    # COCOeval's eval['precision']: T×R×K×A×M = 10 IoUs × 101 recall thresholds × K classes × 4 areas × 3 maxDets,
    # −1 where a class has no ground truth. [0, :, k, 0, -1] is class k's PR curve at IoU 0.5, area all, 100 dets.
    # Read back from a run folder (from_saved): area all and 100 detections only, A = M = 1.
    precision: np.ndarray = field(repr=False)
    recall: np.ndarray = field(repr=False)  # eval['recall']: T×K×A×M, the recall reached with all detections
    class_names: tuple[str, ...] = ()
    summary: str = field(default="", repr=False)  # COCOeval's printed 12-line table
    images: int = 0  # how many images were scored

    def __repr__(self) -> str:
        return f"DetectionMetrics(mAP@0.5 {self.map50:.3f}, mAP@0.5:0.95 {self.map50_95:.3f}, {self.images:,} images)"

    def _repr_html_(self) -> str:
        """The two mAPs, each class's AP and the precision–recall curves, for a notebook."""
        from convscope.show import heading, img_tag, table

        def ap(value: float | None) -> str:
            return "–" if value is None or math.isnan(value) else f"{value:.3f}"

        names = self.class_names or tuple(self.per_class_ap50)
        rows = [(k, ap(self.per_class_ap50.get(k)), ap(self.per_class_ap50_95.get(k))) for k in names]
        title = f"mAP@0.5 {self.map50:.3f}, mAP@0.5:0.95 {self.map50_95:.3f}"
        return (
            heading(title, f"COCO box AP (pycocotools) on {self.images:,} images")
            + table(("class", "AP@0.5", "AP@0.5:0.95"), rows, right=(1, 2))
            + img_tag(pr_curves_figure(self, "precision–recall at IoU 0.5"), "precision–recall curves", width=760)
        )

    def to_dict(self) -> dict:
        """JSON-ready: floats, with None for nan (a class that never occurs in the ground truth)."""
        return {
            "map50": _none_if_nan(self.map50),
            "map50_95": _none_if_nan(self.map50_95),
            "per_class_ap50": {k: _none_if_nan(v) for k, v in self.per_class_ap50.items()},
            "per_class_ap50_95": {k: _none_if_nan(v) for k, v in self.per_class_ap50_95.items()},
        }

    def to_saved(self) -> dict:
        """Everything the report and `convscope detect evaluate` show, JSON-ready (to_dict, and the class names, the
        image count, COCOeval's table and the precision–recall data at area all, 100 detections), for `from_saved`."""

        def rounded(a: np.ndarray) -> list:
            return np.round(a, 5).tolist()

        return self.to_dict() | {
            "classes": list(self.class_names),
            "images": self.images,
            "summary": self.summary,
            "precision": rounded(self.precision[..., 0, -1]),  # T×R×K
            "recall": rounded(self.recall[..., 0, -1]),  # T×K
        }

    @classmethod
    def from_saved(cls, saved: dict) -> DetectionMetrics:
        """The metrics `to_saved` wrote. KeyError, TypeError or ValueError for a body that is not one."""
        classes = tuple(saved["classes"])
        precision = np.asarray(saved["precision"], dtype=np.float64)[..., None, None]
        recall = np.asarray(saved["recall"], dtype=np.float64)[..., None, None]
        if (
            precision.ndim != 5
            or precision.shape[2] != len(classes)
            or recall.shape[:2] != (len(precision), len(classes))
        ):
            raise ValueError("its precision–recall data do not match its classes")

        def ap(values: dict) -> dict[str, float]:
            return {k: _nan_if_none(values[k]) for k in classes}

        return cls(
            map50=_nan_if_none(saved["map50"]),
            map50_95=_nan_if_none(saved["map50_95"]),
            per_class_ap50=ap(saved["per_class_ap50"]),
            per_class_ap50_95=ap(saved["per_class_ap50_95"]),
            precision=precision,
            recall=recall,
            class_names=classes,
            summary=str(saved["summary"]),
            images=int(saved["images"]),
        )


def _none_if_nan(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def _nan_if_none(value: float | None) -> float:
    return math.nan if value is None else float(value)


def coco_evaluate(
    ground_truth: list[tuple[np.ndarray, np.ndarray]],
    detections: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
    class_names: list[str],
    image_size: tuple[int, int],
    crowds: list[tuple[np.ndarray, np.ndarray]] | None = None,
) -> DetectionMetrics:
    """COCO bbox evaluation of one data set.

    ground_truth[i] = (boxes n×4 xyxy px, classes n) and detections[i] = (boxes m×4, scores m, classes m) for
    image i; numpy arrays or CPU tensors. image_size = (height, width) in pixels, the same for every image.
    crowds: None, or crowds[i] = (boxes c×4 xyxy px, classes c), image i's crowd (ignore) regions.
    Detections of a class absent from the ground truth are ignored by COCO (that class's AP is nan).
    DataError when the lists disagree in length or a class is outside 0..K−1.
    """
    COCO, COCOeval = _import_pycocotools()
    if len(ground_truth) != len(detections) or (crowds is not None and len(crowds) != len(ground_truth)):
        raise DataError(
            f"coco_evaluate: expected one detections entry per ground-truth image (and one crowds entry). "
            f"Received: {len(ground_truth)} ground-truth images, {len(detections)} detection entries"
            + ("" if crowds is None else f", {len(crowds)} crowd entries")
        )
    num_classes = len(class_names)
    images = [{"id": i + 1, "height": image_size[0], "width": image_size[1]} for i in range(len(ground_truth))]
    categories = [{"id": k + 1, "name": name} for k, name in enumerate(class_names)]
    gt_anns = _annotations([(b, np.ones(len(b)), c) for b, c in ground_truth], num_classes, "ground truth")
    if crowds is not None:
        crowd_anns = _annotations([(b, np.ones(len(b)), c) for b, c in crowds], num_classes, "crowd regions", 1)
        gt_anns += [{**ann, "id": len(gt_anns) + k + 1} for k, ann in enumerate(crowd_anns)]
    dt_anns = _annotations(detections, num_classes, "detections")
    summary = io.StringIO()
    with contextlib.redirect_stdout(summary):  # pycocotools prints progress and its table
        gt = _coco(COCO, images, categories, gt_anns)
        dt = _coco(COCO, images, categories, dt_anns)  # built directly: loadRes cannot take an empty list
        evaluator = COCOeval(gt, dt, iouType="bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    precision = evaluator.eval["precision"]
    ap50 = _mean_ap(precision[:1])  # K
    ap50_95 = _mean_ap(precision)  # K
    return DetectionMetrics(
        map50=_mean_present(ap50),
        map50_95=_mean_present(ap50_95),
        per_class_ap50=dict(zip(class_names, ap50.tolist(), strict=True)),
        per_class_ap50_95=dict(zip(class_names, ap50_95.tolist(), strict=True)),
        precision=precision,
        recall=evaluator.eval["recall"],
        class_names=tuple(class_names),
        summary=_table(summary.getvalue()),
        images=len(ground_truth),
    )


def _import_pycocotools():
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError as error:
        raise DataError(
            f"coco_evaluate: expected the pycocotools package for COCO metrics. Received: {error}. "
            f"Install it with `{PIP_COMMAND}`"
        ) from error
    return COCO, COCOeval


def _annotations(entries, num_classes: int, what: str, iscrowd: int = 0) -> list[dict]:
    """(boxes n×4 xyxy, scores n, classes n) per image → COCO annotation dicts with xywh boxes, ids from 1.

    Ids start at 1 because COCOeval stores 0 for "matched nothing".
    """
    anns = []
    for i, (boxes, scores, classes) in enumerate(entries):
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        scores, classes = np.asarray(scores, dtype=np.float64).ravel(), np.asarray(classes).ravel().astype(np.int64)
        if not len(boxes) == len(scores) == len(classes):
            raise DataError(
                f"coco_evaluate: expected as many boxes as classes (and scores) in the {what} of image {i}. "
                f"Received: {len(boxes)} boxes, {len(scores)} scores, {len(classes)} classes"
            )
        if len(classes) and (classes.min() < 0 or classes.max() >= num_classes):
            raise DataError(
                f"coco_evaluate: expected classes in [0, {num_classes}) in the {what} of image {i}. "
                f"Received: values from {classes.min()} to {classes.max()}"
            )
        xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)
        for box, score, cls in zip(xywh.tolist(), scores.tolist(), classes.tolist(), strict=True):
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": i + 1,
                    "category_id": cls + 1,
                    "bbox": box,
                    "area": box[2] * box[3],
                    "iscrowd": iscrowd,
                    "score": score,
                }
            )
    return anns


def _coco(COCO, images: list[dict], categories: list[dict], annotations: list[dict]):
    coco = COCO()
    coco.dataset = {"images": images, "categories": categories, "annotations": annotations}
    coco.createIndex()
    return coco


def _mean_ap(precision: np.ndarray) -> np.ndarray:
    """T×R×K×A×M precision → K APs (mean over the T IoUs and R recall thresholds; area all, 100 dets), nan if no gt."""
    p = precision[:, :, :, 0, -1]  # T×R×K
    present = (p > -1).all(axis=(0, 1))  # K: COCO marks a class without ground truth with −1 everywhere
    return np.where(present, np.where(p > -1, p, 0).mean(axis=(0, 1)), np.nan)


def _mean_present(ap: np.ndarray) -> float:
    """Mean over the classes that have ground truth, as COCO's summarize does; nan if none has."""
    return float(np.nanmean(ap)) if np.isfinite(ap).any() else math.nan


def _table(printed: str) -> str:
    return "\n".join(line for line in printed.splitlines() if line.lstrip().startswith("Average"))


def pr_curves_figure(metrics: DetectionMetrics, title: str) -> Figure:
    """Precision against recall at IoU 0.5 per class (COCO's interpolated curves, 101 recall points) and their mean.

    Each class's curve ends (with a dot) at the highest recall it reached; a class without ground truth is only named
    in the legend. Returns a new matplotlib Figure (9.5×5.6 inches, 12.5 wide past 10 classes; 110 dpi) with one axes.
    """
    import matplotlib  # here, not at the top: computing metrics needs no matplotlib

    from convscope.show import Picture

    recall = np.linspace(0.0, 1.0, metrics.precision.shape[1])  # COCO's 101 recall thresholds
    curves = metrics.precision[0, :, :, 0, -1]  # R×K at IoU 0.5, area all, maxDets 100
    present = (curves > -1).all(axis=0)
    many = len(metrics.class_names) > 10
    colours = matplotlib.colormaps["tab20" if many else "tab10"]
    fig = Picture(figsize=(12.5 if many else 9.5, 5.6), dpi=110, layout="constrained")
    ax = fig.subplots()
    for k, name in enumerate(metrics.class_names):
        if present[k]:
            # COCO's precision is 0 beyond the highest recall reached; end the curve there (with a dot) instead, so
            # the classes' tails do not pile up on the x axis. The mean keeps the zeros: they are part of the AP.
            reached = metrics.recall[0, k, 0, -1]
            curve = np.where(recall <= reached + 1e-9, curves[:, k], np.nan)
            last = np.flatnonzero(~np.isnan(curve))[-1]
            colour = colours((2 * k + (2 * k // 20)) % 20 if many else k % 10)  # tab20: the dark shades first
            label = f"{name}  AP50 {metrics.per_class_ap50[name]:.3f}, recall {reached:.2f}"
            ax.plot(recall, curve, lw=1.5, color=colour, label=label)
            ax.plot(recall[last], curve[last], "o", ms=5, color=colour)
        else:
            ax.plot([], [], " ", label=f"{name}  (no ground truth)")
    if present.any():
        mean = curves[:, present].mean(axis=1)
        ax.plot(recall, mean, color="black", lw=2.8, label=f"mean  mAP50 {metrics.map50:.3f}")
    else:
        ax.text(0.5, 0.5, "no ground-truth boxes", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.03)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision (interpolated)")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8 if many else 9, ncol=2 if many else 1)
    ax.set_title(title)
    return fig


def plot_pr_curves(metrics: DetectionMetrics, path: Path, title: str) -> Path:
    """pr_curves_figure saved as a PNG at `path`; returns the path."""
    return pr_curves_figure(metrics, title).save(path)
