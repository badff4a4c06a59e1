"""Training a detector: the classification trainer (run folder, progress, checkpoints, exact resume, signals) with a
detection task plugged in — box-aware augmentation, CenterNet targets and losses, and COCO mAP for validation/test.

A spec whose last layer is `detect` is trained by `DetectTrainer`; `convscope.train(...)` picks it by itself.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from convscope.detect.augment import flip, scale_translate
from convscope.detect.coco import coco_images_folder, load_coco
from convscope.detect.data import (
    SPLIT_NAMES,
    DetectionDataset,
    DetectionSplit,
    LabelProblem,
    coco_split_files,
    dataset_format,
    lint_summary,
)
from convscope.detect.decode import decode, encode_targets, focal_loss, regression_loss
from convscope.detect.head import split_outputs
from convscope.detect.metrics import DetectionMetrics, coco_evaluate, plot_pr_curves
from convscope.detect.voc import load_voc
from convscope.detect.yolo import load_yolo
from convscope.errors import ConfigError, DataError, SpecError
from convscope.files import atomic_write_text
from convscope.spec import Detect, NetSpec
from convscope.training.config import TrainConfig
from convscope.training.tensors import batch_for, normalise, to_tensor
from convscope.training.trainer import _Trainer

log = logging.getLogger("convscope.detect")

# CenterNet's loss: heatmap + 0.1 · size L1 + 1 · offset L1, its L1s averaged per coordinate (÷ 2 per object);
# regression_loss averages per object, so the same balance is 0.05 and 0.5 here. Sizes are pixels, offsets cells.
SIZE_WEIGHT, OFFSET_WEIGHT = 0.05, 0.5
AUGMENTS = ("flip", "scale")  # the box-aware augmentations; `augment: flip,scale` (the default) or `none`


def load_detection(data: str, data_dir: str | None, image_size: int, val_fraction: float, seed: int):
    """A YOLO folder (or its data.yaml), a Pascal VOC folder, or a COCO JSON whose images are in `data_dir` (default:
    an `images` folder beside the JSON). A COCO file is one split: val_fraction of it is held out, and serves as the
    test split too. A VOC folder without ImageSets/Main holds out val_fraction for val and as much for test (seeded).
    A DataError naming the three formats for anything else."""
    path = Path(data)
    if path.suffix.lower() == ".json":
        images = Path(data_dir) if data_dir else path.parent / "images"
        split, classes = load_coco(path, images, image_size)
        train, held = _hold_out(split, val_fraction or 0.1, seed)
        log.info("%s: %d images for training, %d held out for validation and test", path, len(train), len(held))
        return DetectionDataset(path.stem, classes, train, held, held, str(path), split.problems)
    if path.suffix.lower() in (".yaml", ".yml"):
        return load_yolo(path, image_size)
    kind = dataset_format(path)  # a DataError naming the three formats when it is none of them
    if kind == "coco-splits":
        return _load_coco_folder(path, coco_split_files(path), data_dir, image_size)
    if kind == "voc":
        return load_voc(path, image_size, seed=seed, val_fraction=val_fraction or 0.1)
    return load_yolo(path, image_size)


def _load_coco_folder(root: Path, files: dict[str, Path], data_dir: str | None, image_size: int):
    """A folder of COCO split JSONs (train.json, val.json, test.json, as `detect convert --to coco` writes them, or
    COCO 2017's instances_train2017.json …), each split with its own images."""
    if "train" not in files:
        raise DataError(f"{root}: expected a train JSON among the COCO split files, found {sorted(files)}")
    splits, classes = {}, None
    for name in SPLIT_NAMES:
        if name in files:
            splits[name], names = load_coco(files[name], coco_images_folder(root, files[name], data_dir), image_size)
            if classes is not None and names != classes:
                raise DataError(f"{files[name]}: categories {list(names)} differ from the train JSON's {list(classes)}")
            classes = names
    problems = tuple(problem for split in splits.values() for problem in split.problems)
    return DetectionDataset(
        root.name, classes, splits["train"], splits.get("val"), splits.get("test"), str(root), problems
    )


def _hold_out(split: DetectionSplit, fraction: float, seed: int) -> tuple[DetectionSplit, DetectionSplit]:
    order = np.random.default_rng(seed).permutation(len(split))
    n = max(1, round(len(split) * fraction))
    return _take(split, np.sort(order[n:])), _take(split, np.sort(order[:n]))


def _take(split: DetectionSplit, index: np.ndarray) -> DetectionSplit:
    crowds = tuple(split.crowds[i] for i in index) if split.crowds else ()
    targets, names = tuple(split.targets[i] for i in index), tuple(split.names[i] for i in index)
    return DetectionSplit(split.images[index], targets, names, crowds=crowds)


def detection_loss(out: torch.Tensor, boxes: list, classes: list, head: Detect) -> torch.Tensor:
    """Focal loss on the centre heatmaps + L1 on box sizes and centre offsets, per object (CenterNet's balance)."""
    heat, size, offset = split_outputs(out, head.classes)
    t = encode_targets(boxes, classes, head.classes, tuple(out.shape[-2:]), head.stride)
    return (
        focal_loss(heat, t["heatmap"])
        + SIZE_WEIGHT * regression_loss(size, t["size"], t["mask"])
        + OFFSET_WEIGHT * regression_loss(offset, t["offset"], t["mask"])
    )


def detector_maps(model, x: torch.Tensor, flip: bool = False) -> torch.Tensor:
    """The detector's N×(K+4)×h×w maps of normalised images x (N×3×H×W). With `flip`, those of the images and of
    their mirror images averaged, as CenterNet tests ("Objects as Points", Zhou et al. 2019, flip augmentation):
    heatmap probabilities and box sizes are averaged (the mirror's maps flipped back), centre offsets are the
    image's own (a mirrored offset points the other way within its cell)."""
    out = model(x)
    if not flip:
        return out
    k = model.spec.layers[-1].classes
    mirror = model(x.flip(-1)).flip(-1)
    heat = (out[:, :k].sigmoid() + mirror[:, :k].sigmoid()) / 2
    size = (out[:, k : k + 2] + mirror[:, k : k + 2]) / 2
    return torch.cat([torch.logit(heat, eps=1e-6), size, out[:, k + 2 :]], dim=1)


def flips_at_test(config: TrainConfig) -> bool:
    """Test-time mirror averaging: tta_flip when set, else when the detector was trained on mirrored images."""
    return config.tta_flip if config.tta_flip is not None else "flip" in _augments(config)


@torch.inference_mode()
def detect_split(
    model, split: DetectionSplit, mean: torch.Tensor, std: torch.Tensor, flip: bool = False
) -> tuple[list, float]:
    """Detections (numpy boxes, scores, classes) for every image of `split`, and the mean loss against its boxes.
    flip: average with the mirror images' maps (detector_maps)."""
    model.train(False)
    head: Detect = model.spec.layers[-1]
    images = to_tensor(split.images)
    found, loss_sum = [], 0.0
    step = batch_for(images, 256)
    for start in range(0, len(images), step):
        out = detector_maps(model, normalise(images[start : start + step], mean, std), flip)
        targets = split.targets[start : start + step]
        boxes = [torch.from_numpy(t.xyxy) for t in targets]
        classes = [torch.from_numpy(t.classes) for t in targets]
        loss_sum += float(detection_loss(out, boxes, classes, head)) * len(targets)
        for b, s, c in decode(*split_outputs(out, head.classes), stride=head.stride):
            found.append((b.float().numpy(), s.float().numpy(), c.numpy()))
    return found, loss_sum / max(len(images), 1)


def split_metrics(split: DetectionSplit, found: list, classes: tuple[str, ...]) -> DetectionMetrics:
    """COCO mAP of detections `found` against the split's boxes (in the letterboxed images' pixels); its crowd
    regions (COCO iscrowd) are ignore regions, as in pycocotools."""
    truth = [(t.xyxy, t.classes) for t in split.targets]
    crowds = [(c.xyxy, c.classes) for c in split.crowds] if split.crowds else None
    return coco_evaluate(truth, found, list(classes), tuple(split.images.shape[1:3]), crowds)


def log_label_problems(source: str, problems: tuple[LabelProblem, ...]) -> None:
    """Every label problem (file and line, what was dropped and why) and note, one INFO line each, after a summary.

    The terminal shows them with --verbose only (loading already warned with the summary); train.log keeps them all.
    """
    dropped = [problem for problem in problems if not problem.is_note]
    if dropped:
        log.info(
            "%s: %d label problem(s) while loading (paths relative to the dataset folder): %s",
            source,
            len(dropped),
            lint_summary(dropped),
        )
    for problem in problems:
        log.info("%s: %s", "note" if problem.is_note else "label problem", problem)


def _augments(config: TrainConfig) -> set[str]:
    text = config.augment if config.augment is not None else "flip,scale"
    chosen = {word.strip() for word in text.split(",") if word.strip()} - {"none"}
    if unknown := chosen - set(AUGMENTS):
        raise ConfigError(f"augment for detection: {sorted(unknown)[0]!r} is not one of {', '.join(AUGMENTS)}, none")
    return chosen


class DetectTrainer(_Trainer):
    counts_correct = False  # no training accuracy: validation gives mAP instead
    validation_keys = ("val_loss", "val_map50", "val_map50_95")

    @staticmethod
    def load_data(config: TrainConfig, spec: NetSpec, progress=None) -> DetectionDataset:  # progress: not shown yet
        h, w, c = spec.input
        if h != w or c != 3:
            raise SpecError(f"{spec.name}: a detector takes square color images (S×S×3). Received input {h}×{w}×{c}")
        if config.per_class or config.cache_features:  # boxes move with augmentation: no cached features
            raise ConfigError("per_class and cache_features are for classification, not detection")
        _augments(config)  # a bad setting fails before any data is read
        return load_detection(config.data, config.data_dir, h, config.val_fraction, config.seed)

    @staticmethod
    def fit_spec(spec: NetSpec, data: DetectionDataset) -> NetSpec:
        head = spec.layers[-1]
        if head.classes == len(data.classes):
            return spec
        log.info("%s: detect layer set to the data's %d classes", spec.name, len(data.classes))
        return replace(spec, layers=(*spec.layers[:-1], replace(head, classes=len(data.classes))))

    def _use_data(self, data: DetectionDataset) -> None:
        cfg = self.config
        train, val = data.train, data.val
        if val is None and cfg.val_fraction > 0:
            train, val = _hold_out(train, cfg.val_fraction, cfg.seed)
        self.train_x = to_tensor(train.images)
        self.train_boxes = [torch.from_numpy(t.xyxy) for t in train.targets]
        self.train_classes = [torch.from_numpy(t.classes) for t in train.targets]
        self.val = val if val is not None and len(val) else None
        self.test = data.test if data.test is not None and len(data.test) else self.val
        if self.test is None:
            raise DataError(f"{data.source}: no val or test images to evaluate the detector on")
        self.train_size = len(train)
        self.label_problems, self.source = data.problems, data.source  # for train.log: see _log_data_notes
        self.augments = _augments(cfg)
        self.head_layer: Detect = self.run.spec.layers[-1]
        self.metrics: DetectionMetrics | None = None  # of the test split, and its detections:
        self.found: list = []

    def _log_data_notes(self) -> None:
        """Every label problem found while the data loaded, one line each, into train.log: the trainer calls this
        when training starts, with train.log open (the data is read before the run folder exists). A resumed run
        reads its data again and logs what it finds again."""
        super()._log_data_notes()
        log_label_problems(self.source, self.label_problems)

    def _batch(self, index: torch.Tensor) -> tuple[torch.Tensor, int]:
        x = normalise(self.train_x[index], self.mean, self.std)
        boxes = [self.train_boxes[i] for i in index]
        classes = [self.train_classes[i] for i in index]
        if "flip" in self.augments:
            x, boxes = flip(x, boxes, self.generator)
        if "scale" in self.augments:
            x, boxes, classes = scale_translate(x, boxes, classes, self.generator)
        return detection_loss(self.model(x), boxes, classes, self.head_layer), 0

    def _evaluate_split(self, split: DetectionSplit) -> tuple[DetectionMetrics, float]:
        found, loss = detect_split(self.model, split, self.mean, self.std, flips_at_test(self.config))
        self.found = found
        return split_metrics(split, found, self.run.data.classes), loss

    def _validate(self) -> dict[str, float]:
        if self.val is None:
            return dict.fromkeys(self.validation_keys, float("nan"))
        metrics, loss = self._evaluate_split(self.val)
        return {"val_loss": loss, "val_map50": metrics.map50, "val_map50_95": metrics.map50_95}

    def _score(self, row: dict[str, float]) -> float:
        """The best checkpoint has the best validation mAP@0.5:0.95 (the lowest training loss without validation)."""
        return row["val_map50_95"] if self.val is not None else -row["train_loss"]

    def _test(self) -> dict:
        metrics, loss = self._evaluate_split(self.test)
        self.metrics = metrics
        title = f"{self.run.path.name}: test mAP@0.5 {metrics.map50:.3f}, mAP@0.5:0.95 {metrics.map50_95:.3f}"
        plot_pr_curves(metrics, self.run.path / "pr_curves.png", title)
        atomic_write_text(self.run.path / "coco_eval.txt", metrics.summary + "\n")
        log.info("test mAP@0.5 %.4f, mAP@0.5:0.95 %.4f after %d epochs", metrics.map50, metrics.map50_95, self.epoch)
        return {
            "test_map50": metrics.map50,
            "test_map50_95": metrics.map50_95,
            "test_loss": loss,
            "test_images": len(self.test),
            "per_class_ap50": metrics.to_dict()["per_class_ap50"],
            "per_class_ap50_95": metrics.to_dict()["per_class_ap50_95"],
        }

    def write_report(self) -> None:
        from convscope.detect.report import write_detection_report

        write_detection_report(self.run, self.metrics, self.test, self.found)
