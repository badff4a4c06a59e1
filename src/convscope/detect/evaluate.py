"""Testing a detector: its detections on a split (mirror-averaged maps where the run was trained so), and their COCO
mAP (convscope.detect.metrics)."""

from __future__ import annotations

from pathlib import Path

import torch

from convscope.config import TrainConfig
from convscope.data.detection.augment import augments
from convscope.data.detection.boxes import DetectionSplit
from convscope.data.detection.coco import load_coco
from convscope.data.detection.load import load_detection
from convscope.detect.decoding import decode, detector_maps
from convscope.detect.loss import detection_loss
from convscope.detect.metrics import DetectionMetrics, coco_evaluate, plot_pr_curves
from convscope.device import resolve_device
from convscope.errors import SpecError
from convscope.layers import split_outputs
from convscope.preprocess import batch_for, normalise, run_stats, to_tensor
from convscope.run import PR_CURVES, Run, load_model, load_run
from convscope.spec_layers import Detect


@torch.inference_mode()
def detect_split(
    model, split: DetectionSplit, mean: torch.Tensor, std: torch.Tensor, flip: bool = False, device=None
) -> tuple[list, float]:
    """Detections (numpy boxes, scores, classes) for every image of `split`, and the mean loss against its boxes.
    flip: average with the mirror images' maps (detector_maps). The batches run on `device` (default: where mean
    and std are), the detections come back to the CPU."""
    model.train(False)
    device = mean.device if device is None else device
    mean, std = mean.to(device), std.to(device)
    head: Detect = model.spec.layers[-1]
    images = to_tensor(split.images)
    found, loss_sum = [], 0.0
    step = batch_for(images, 256)
    for start in range(0, len(images), step):
        x = normalise(images[start : start + step].to(device, non_blocking=True), mean, std)
        out = detector_maps(model, x, flip).float()
        targets = split.targets[start : start + step]
        boxes = [torch.from_numpy(t.xyxy).to(device) for t in targets]
        classes = [torch.from_numpy(t.classes).to(device) for t in targets]
        loss_sum += float(detection_loss(out, boxes, classes, head)) * len(targets)
        for b, s, c in decode(*split_outputs(out, head.classes), stride=head.stride):
            found.append((b.float().cpu().numpy(), s.float().cpu().numpy(), c.cpu().numpy()))
    return found, loss_sum / max(len(images), 1)


def split_metrics(split: DetectionSplit, found: list, classes: tuple[str, ...]) -> DetectionMetrics:
    """COCO mAP of detections `found` against the split's boxes (in the letterboxed images' pixels); its crowd
    regions (COCO iscrowd) are ignore regions, as in pycocotools."""
    truth = [(t.xyxy, t.classes) for t in split.targets]
    crowds = [(c.xyxy, c.classes) for c in split.crowds] if split.crowds else None
    return coco_evaluate(truth, found, list(classes), tuple(split.images.shape[1:3]), crowds)


def flips_at_test(config: TrainConfig) -> bool:
    """Test-time mirror averaging: tta_flip when set, else when the detector was trained on mirrored images."""
    return config.tta_flip if config.tta_flip is not None else "flip" in augments(config)


def detector_run(run: Run | str | Path) -> Run:
    run = run if isinstance(run, Run) else load_run(run)
    if not run.spec.is_detector:
        raise SpecError(f"{run.path}: not a detector (its last layer is {run.spec.layers[-1].layer_type}, not detect)")
    return run


def evaluate_detector(
    run: Run | str | Path, data: str | None = None, data_dir: str | None = None, device: str = "auto"
) -> DetectionMetrics:
    """COCO mAP of a run's best weights on the test split of its data (its val split when it has none), or of
    `data`: the test split of another dataset with the same classes, or the whole of a COCO JSON (`data_dir`: its
    images), computed on `device`. Writes pr_curves.png. DataError for data that cannot be read, SpecError for other
    classes, ConfigError for a device this machine lacks."""
    run = detector_run(run)
    metrics, split, _found = _evaluate(run, data, data_dir, device)
    plot_pr_curves(metrics, run.path / PR_CURVES, f"{run.path.name}: precision–recall on {len(split)} images")
    return metrics


def write_detector_report(run: Run | str | Path) -> Path:
    """report.html of a detection run, evaluated again on its test split (`convscope report RUN`)."""
    from convscope.detect.report import write_detection_report

    run = detector_run(run)
    return write_detection_report(run, *_evaluate(run, None, None))


def _evaluate(run: Run, data: str | None, data_dir: str | None, device: str = "auto"):
    cfg = run.config
    device = resolve_device(device)  # a device this machine lacks is refused before the data is read
    model = load_model(run, device=device)
    size = run.spec.input[0]
    if data is not None and Path(data).suffix.lower() == ".json":  # another COCO file: scored whole, not a tenth
        split, classes = load_coco(data, Path(data_dir) if data_dir else Path(data).parent / "images", size)
        source = data
    else:
        dataset = load_detection(data or cfg.data, data_dir or cfg.data_dir, size, cfg.val_fraction, cfg.seed)
        split, classes, source = dataset.test or dataset.val, dataset.classes, dataset.source
    if tuple(classes) != tuple(run.data.classes):
        raise SpecError(f"{source}: classes {list(classes)} are not the run's {list(run.data.classes)}")
    mean, std = run_stats(run)
    found, _loss = detect_split(model, split, mean, std, flips_at_test(cfg), device)
    return split_metrics(split, found, run.data.classes), split, found
