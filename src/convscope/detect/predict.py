"""Using a trained detector: evaluate it on a dataset's test split (COCO mAP), and find objects in image files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from convscope.data.images import describe, open_image, to_array
from convscope.detect.data import letterbox
from convscope.detect.decode import decode
from convscope.detect.draw import draw_detections
from convscope.detect.head import split_outputs
from convscope.detect.metrics import DetectionMetrics, plot_pr_curves
from convscope.detect.train import detect_split, load_detection, split_metrics
from convscope.errors import ConvscopeError, SpecError
from convscope.prediction import image_paths
from convscope.run import Run, load_model, load_run
from convscope.training.tensors import normalise, run_stats, to_tensor


def _detector_run(run: Run | str | Path) -> Run:
    run = run if isinstance(run, Run) else load_run(run)
    if run.spec.layers[-1].layer_type != "detect":
        raise SpecError(f"{run.path}: not a detector (its last layer is {run.spec.layers[-1].layer_type}, not detect)")
    return run


def evaluate_detector(run: Run | str | Path, data: str | None = None, data_dir: str | None = None) -> DetectionMetrics:
    """COCO mAP of a run's best weights on the test split of its data (or of `data`); writes pr_curves.png."""
    run = _detector_run(run)
    metrics, split, _found = _evaluate(run, data, data_dir)
    plot_pr_curves(metrics, run.path / "pr_curves.png", f"{run.path.name}: precision–recall on {len(split)} images")
    return metrics


def write_detector_report(run: Run | str | Path) -> Path:
    """report.html of a detection run, evaluated again on its test split (`convscope report RUN`)."""
    from convscope.detect.report import write_detection_report

    run = _detector_run(run)
    return write_detection_report(run, *_evaluate(run, None, None))


def _evaluate(run: Run, data: str | None, data_dir: str | None):
    cfg = run.config
    size = run.spec.input[0]
    dataset = load_detection(data or cfg.data, data_dir or cfg.data_dir, size, cfg.val_fraction, cfg.seed)
    split = dataset.test or dataset.val
    if tuple(dataset.classes) != tuple(run.data.classes):
        raise SpecError(f"{dataset.source}: classes {list(dataset.classes)} are not the run's {list(run.data.classes)}")
    mean, std = run_stats(run)
    found, _loss = detect_split(load_model(run), split, mean, std)
    return split_metrics(split, found, run.data.classes), split, found


@dataclass(frozen=True)
class Found:
    """The objects found in one image file: boxes in its own pixels (x1, y1, x2, y2), best score first."""

    path: Path
    conversion: str
    boxes: np.ndarray  # n×4 float
    scores: np.ndarray  # n
    labels: tuple[str, ...]
    picture: Path | None = None
    error: str | None = None

    def to_dict(self) -> dict:
        if self.error:
            return {"image": str(self.path), "error": self.error}
        objects = [
            {"label": label, "score": round(float(s), 4), "box": [round(float(v), 1) for v in box]}
            for box, s, label in zip(self.boxes, self.scores, self.labels, strict=True)
        ]
        return {"image": str(self.path), "objects": objects, "picture": str(self.picture) if self.picture else None}


@torch.inference_mode()
def detect_images(run: Run | str | Path, items: list[str], min_score: float = 0.3, out: str | Path | None = None):
    """Objects in image files, folders or sample-photo names; with `out`, a PNG per image with the boxes drawn.

    Each image is letterboxed to the model's input as in training, and the boxes mapped back to its own pixels.
    An unreadable file is reported in its Found.error; the others are still processed.
    """
    run = _detector_run(run)
    model, (mean, std) = load_model(run), run_stats(run)
    head, size = run.spec.layers[-1], run.spec.input[0]
    results = []
    for path in image_paths(items):
        try:
            img = open_image(path)
        except ConvscopeError as err:
            results.append(Found(path, "", np.zeros((0, 4)), np.zeros(0), (), error=str(err)))
            continue
        array = to_array(img, 3)
        boxed, scale, (pad_x, pad_y) = letterbox(array, size)
        out_maps = model(normalise(to_tensor(boxed[None]), mean, std))
        [(boxes, scores, classes)] = decode(*split_outputs(out_maps, head.classes), stride=head.stride)
        keep = scores >= min_score
        boxes = ((boxes[keep].numpy() - [pad_x, pad_y, pad_x, pad_y]) / scale).clip(0, [*array.shape[1::-1]] * 2)
        labels = tuple(run.data.classes[int(k)] for k in classes[keep])
        picture = None
        if out is not None:
            picture = Path(out) / f"{path.stem}-detections.png"
            picture.parent.mkdir(parents=True, exist_ok=True)
            drawn = draw_detections(array, boxes, scores[keep].numpy(), classes[keep].numpy(), run.data.classes)
            drawn.save(picture)
        conversion = f"{describe(img)} → letterboxed to {size}×{size}"
        results.append(Found(path, conversion, boxes, scores[keep].numpy(), labels, picture))
    return results
