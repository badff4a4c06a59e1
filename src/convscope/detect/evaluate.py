"""Testing a detector: its detections on a split (mirror-averaged maps where the run was trained so), and their COCO
mAP (convscope.detect.metrics).

Training saves the test split's metrics in the run folder (detection.json, stamped with the best weights' sha256);
`detection_of` reads them back while those weights are the same, so `convscope detect evaluate`, the report and
`Run.evaluate` do not score the same images twice. Another dataset's scores are never saved, and its curves have their
own picture (`pr_curves_path`: pr_curves-NAME.png), so the run's own test results are never overwritten.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from convscope.config import TrainConfig
from convscope.data.detection.augment import augments
from convscope.data.detection.boxes import DetectionSplit
from convscope.data.detection.coco import coco_json_images, load_coco
from convscope.data.detection.load import load_detection
from convscope.detect.cache import Features
from convscope.detect.decoding import decode, detector_maps
from convscope.detect.loss import detection_loss
from convscope.detect.metrics import DetectionMetrics, coco_evaluate, plot_pr_curves
from convscope.device import resolve_device
from convscope.errors import CheckpointError, SpecError
from convscope.layers import split_outputs
from convscope.loaded import load
from convscope.plots import picture_path
from convscope.preprocess import batch_for, normalise, to_tensor
from convscope.run import DETECTION_EVALUATION, PR_CURVES, Run, load_run, read_evaluation, write_evaluation
from convscope.spec_layers import Detect


@torch.inference_mode()
def detect_split(
    model,
    split: DetectionSplit,
    mean: torch.Tensor,
    std: torch.Tensor,
    flip: bool = False,
    device=None,
    features: Features | None = None,
) -> tuple[list, float]:
    """Detections (numpy boxes, scores, classes) for every image of `split`, and the mean loss against its boxes.
    flip: average with the mirror images' maps (detector_maps). The batches run on `device` (default: where mean
    and std are), the detections come back to the CPU. `features`: the frozen base's features of the split's images
    (detect.cache), so that only the head runs."""
    model.train(False)
    device = mean.device if device is None else device
    mean, std = mean.to(device), std.to(device)
    head: Detect = model.spec.layers[-1]
    images = to_tensor(split.images)
    found, loss_sum = [], 0.0
    step = batch_for(images, 256)
    for start in range(0, len(images), step):
        if features is not None:
            out = features.maps(model, slice(start, start + step), flip).float()
        else:
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


def detection_of(
    run: Run | str | Path, data: str | None = None, data_dir: str | None = None, device: str = "auto"
) -> DetectionMetrics:
    """A detection run's test metrics: the ones saved in the run folder while its best weights are those they were
    made with, else `evaluate_detector` (which saves them again when the data is the run's own)."""
    run = load_run(run)
    if run.trained_on(data, data_dir) and (saved := saved_detection(run)) is not None:
        if not (run.path / PR_CURVES).is_file():  # the picture `convscope detect evaluate` names
            plot_pr_curves(saved, run.path / PR_CURVES, _own_title(run, saved))
        return saved
    return evaluate_detector(run, data, data_dir, device)


def pr_curves_path(run: Run, data: str | None = None, data_dir: str | None = None) -> Path:
    """Where the precision–recall curves of an evaluation go: RUN/pr_curves.png for the run's own data, else
    RUN/pr_curves-NAME.png (NAME: the other dataset's folder or file name, characters other than letters, digits,
    '.', '_' and '-' made '_'), so that another dataset's curves never replace the run's own."""
    return picture_path(run.path, PR_CURVES, None if run.trained_on(data, data_dir) else data)


def _own_title(run: Run, metrics: DetectionMetrics) -> str:
    """The title training gives the run's own pr_curves.png."""
    return f"{run.path.name}: test mAP@0.5 {metrics.map50:.3f}, mAP@0.5:0.95 {metrics.map50_95:.3f}"


def evaluate_detector(
    run: Run | str | Path, data: str | None = None, data_dir: str | None = None, device: str = "auto"
) -> DetectionMetrics:
    """COCO mAP of a run's best weights on the test split of its data (its val split when it has none), or of
    `data`: the test split of another dataset with the same classes, or the whole of a COCO JSON (`data_dir`: its
    images), computed on `device`. Writes pr_curves.png and detection.json for the run's own data; for other data
    only its own picture, pr_curves-NAME.png (`pr_curves_path`): the run's own results are left as they are.
    DataError for data that cannot be read, SpecError for other classes, ConfigError for a device this machine
    lacks."""
    run = load_run(run)
    device = resolve_device(device)  # a device this machine lacks is refused before the data is read
    split = load_test_split(run, data, data_dir)
    metrics = split_metrics(split, _detect(run, split, device), run.data.classes)
    own = run.trained_on(data, data_dir)
    title = _own_title(run, metrics) if own else f"{run.path.name} on {data}: precision–recall on {len(split)} images"
    plot_pr_curves(metrics, pr_curves_path(run, data, data_dir), title)
    if own:
        save_detection(run, metrics)
    return metrics


def write_detector_report(run: Run | str | Path) -> Path:
    """report.html of a detection run (`convscope report RUN`): its saved test metrics (detection_of), and the
    detections of the few test images it draws."""
    from convscope.detect.report import SHOWN, write_detection_report

    run = load_run(run)
    device = resolve_device("auto")
    split = load_test_split(run)
    if (metrics := saved_detection(run)) is None:
        found = _detect(run, split, device)
        metrics = split_metrics(split, found, run.data.classes)
        save_detection(run, metrics)
    else:  # the network runs on the images drawn only
        shown = slice(0, SHOWN)
        crowds = split.crowds[shown] if split.crowds else ()
        first = replace(split, images=split.images[shown], targets=split.targets[shown], names=split.names[shown],
                        crowds=crowds)  # fmt: skip
        found = _detect(run, first, device)
    return write_detection_report(run, metrics, split, found)


def save_detection(run: Run, metrics: DetectionMetrics) -> None:
    """The metrics of the run's own test split, kept in the run folder (detection.json) for `saved_detection`."""
    write_evaluation(run, DETECTION_EVALUATION, metrics.to_saved())


def saved_detection(run: Run) -> DetectionMetrics | None:
    """The test metrics saved by training or `evaluate_detector` (detection.json); None when there are none, or
    when they were made with other best weights (convscope.run.read_evaluation). CheckpointError when the file is
    damaged."""
    saved = read_evaluation(run, DETECTION_EVALUATION)
    if saved is None:
        return None
    try:
        metrics = DetectionMetrics.from_saved(saved)
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{run.path / DETECTION_EVALUATION}: damaged evaluation ({err})") from None
    if metrics.class_names != run.data.classes:
        raise CheckpointError(f"{run.path / DETECTION_EVALUATION}: damaged evaluation (its classes are not the run's)")
    return metrics


def load_test_split(run: Run, data: str | None = None, data_dir: str | None = None) -> DetectionSplit:
    """The test split of the run's data (its val split when it has none), or of `data`: another dataset's, or the
    whole of a COCO JSON. DataError when it cannot be read, SpecError for classes other than the run's."""
    cfg, size = run.config, run.spec.input[0]
    if data is not None and Path(data).suffix.lower() == ".json":  # another COCO file: scored whole, not a tenth
        split, classes = load_coco(data, coco_json_images(Path(data), data_dir), size)
        source = data
    else:
        dataset = load_detection(data or cfg.data, data_dir or cfg.data_dir, size, cfg.val_fraction, cfg.seed)
        split, classes, source = dataset.test or dataset.val, dataset.classes, dataset.source
    if tuple(classes) != tuple(run.data.classes):
        raise SpecError(f"{source}: classes {list(classes)} are not the run's {list(run.data.classes)}")
    return split


def _detect(run: Run, split: DetectionSplit, device: torch.device) -> list:
    """The best weights' detections on every image of `split`, as detect_split gives them."""
    loaded = load(run, device)
    found, _loss = detect_split(loaded.fused, split, loaded.mean, loaded.std, flips_at_test(run.config), device)
    return found
