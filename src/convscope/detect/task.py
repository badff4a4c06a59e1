"""Detection: boxes and their classes per image, CenterNet's loss, COCO mAP; the task of every spec ending in `detect`.

Images stay uint8 N×C×H×W on the CPU and boxes a list of n×4 xyxy pixel tensors per image; each batch (images and
boxes) goes to the device, where box-aware augmentation, the targets and the loss are computed.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from dataclasses import replace

import torch

from convscope.config import TrainConfig
from convscope.data.detection.augment import augments, color_jitter, flip, scale_translate
from convscope.data.detection.boxes import DetectionDataset, DetectionSplit, hold_out
from convscope.data.detection.load import load_detection, log_data_summary, log_label_problems
from convscope.data.detection.summary import SHOWN_CLASSES, summarise_dataset
from convscope.detect.cache import Features, base_features
from convscope.detect.data_recipe import chosen_size, fitted_config
from convscope.detect.evaluate import (
    detect_split,
    detection_of,
    flips_at_test,
    save_detection,
    split_metrics,
    write_detector_report,
)
from convscope.detect.loss import detection_loss
from convscope.detect.metrics import DetectionMetrics, plot_pr_curves
from convscope.errors import ConfigError, DataError, SpecError
from convscope.files import atomic_write_text
from convscope.fused import inference_copy
from convscope.preprocess import channel_stats, normalise, run_stats, to_tensor
from convscope.run import COCO_EVAL, PR_CURVES, Run
from convscope.spec import Detect, NetSpec
from convscope.training.task import Task

log = logging.getLogger("convscope.detect")


def _uncached(augments: set[str]) -> str:
    """What the cached phase 1 trains without: '; phase 1 trains without scale augmentation' (or '')."""
    moving = [word for word in ("scale", "color") if word in augments]  # they change the pixels under the base
    return f"; phase 1 trains without {' and '.join(moving)} augmentation" if moving else ""


class DetectTask(Task):
    name, command, outputs = "detection", "convscope detect", "heatmap/size/offset maps"
    score_key, score_name = "test_map50", "test mAP@0.5"
    counts_correct = False  # no training accuracy: validation gives mAP instead
    validation_keys = ("val_loss", "val_map50", "val_map50_95")

    @staticmethod
    def load_data(config: TrainConfig, spec: NetSpec, progress=None) -> DetectionDataset:  # progress: not shown yet
        h, w, c = spec.input
        if h != w or c != 3:
            raise SpecError(f"{spec.name}: a detector takes square color images (S×S×3). Received input {h}×{w}×{c}")
        if config.per_class:
            raise ConfigError("per_class is for classification, not detection")
        augments(config)  # a bad setting fails before any data is read
        size = chosen_size(config, spec)  # config.image_size, or chosen from a raw pass (detect/data_recipe.py)
        return load_detection(config.data, config.data_dir, size, config.val_fraction, config.seed)

    @staticmethod
    def fit_spec(spec: NetSpec, data: DetectionDataset) -> NetSpec:
        """The spec with the data's classes and input size (S×S×3, S: the size the images were letterboxed to)."""
        head, size = spec.layers[-1], int(data.train.images.shape[1])
        if spec.input[0] != size:
            log.info("%s: input set to %d×%d×3", spec.name, size, size)
            spec = replace(spec, input=(size, size, 3))
        if head.classes == len(data.classes):
            return spec
        log.info("%s: detect layer set to the data's %d classes", spec.name, len(data.classes))
        return replace(spec, layers=(*spec.layers[:-1], replace(head, classes=len(data.classes))))

    @staticmethod
    def fit_config(config: TrainConfig, spec: NetSpec, data: DetectionDataset) -> TrainConfig:
        """The settings from_data names, chosen from the loaded data, with their reasons (detect/data_recipe.py)."""
        return fitted_config(config, spec, data)

    @staticmethod
    def input_stats(data: DetectionDataset) -> tuple[tuple[float, ...], tuple[float, ...]]:
        return channel_stats(data.train.images, data.name)

    def __init__(self, run: Run, data: DetectionDataset, device: torch.device) -> None:
        super().__init__(run, data, device)
        train, val = self.train_and_val(data, hold_out)
        self.train_x = to_tensor(train.images)
        self.train_boxes = [torch.from_numpy(t.xyxy) for t in train.targets]
        self.train_classes = [torch.from_numpy(t.classes) for t in train.targets]
        self.val = val if val is not None and len(val) else None
        self.test_split = data.test if data.test is not None and len(data.test) else self.val
        if self.test_split is None:
            raise DataError(f"{data.source}: no val or test images to evaluate the detector on")
        self.train_size = len(train)
        # What was read, split by split, and the images two splits share (hashes of their pixels): for train.log and
        # the terminal (log_data_notes, data_lines), the shared images counted with the label problems.
        self.summary, shared = summarise_dataset(data)
        if shared:
            log.warning("%s: %d image(s) in two splits (first: %s)", data.source, len(shared), shared[0])
        self.label_problems, self.source = (*data.problems, *shared), data.source
        self.augments = augments(self.config)
        self.head_layer: Detect = run.spec.layers[-1]
        self.mean, self.std = (t.to(device) for t in run_stats(run))
        # phase 1 with cache_features: the frozen base's features of the training and validation images (detect.cache)
        self.features: Features | None = None
        self.val_features: Features | None = None
        self.metrics: DetectionMetrics | None = None  # of the test split, and its detections:
        self.found: list = []

    def log_data_notes(self) -> None:
        """What the data holds (per split: images, boxes, boxes per class; warnings) and every label problem found
        while it loaded, images in two splits included, one line each, into train.log. A resumed run reads its data
        again and logs what it finds again."""
        log_data_summary(self.summary)
        log_label_problems(self.source, self.label_problems)

    def data_lines(self) -> list[str]:
        """The summary for the terminal: one line per split, at most SHOWN_CLASSES classes' counts each."""
        return self.summary.lines(most=SHOWN_CLASSES)

    # -- a frozen base's features, computed once (cache_features: detect/cache.py) --------------------------------
    def start_phase(self, model: torch.nn.Module, phase: int, epoch: int) -> None:
        self.features = self.val_features = None
        if phase == 1 and self.config.cache_features and epoch < self.config.epochs:
            started = time.perf_counter()
            self.features = base_features(model.base, self.train_x, self.mean, self.std, self.device)
            if self.val is not None:
                images = to_tensor(self.val.images)
                self.val_features = base_features(model.base, images, self.mean, self.std, self.device)
            cached = [f for f in (self.features, self.val_features) if f is not None]
            log.info(
                "cached the frozen base's features of %d images and of their mirror images in %.1f s (%.0f MiB)%s",
                sum(len(f) for f in cached),
                time.perf_counter() - started,
                sum(f.nbytes for f in cached) / 2**20,
                _uncached(self.augments),
            )

    def batches(self, index: list[torch.Tensor]) -> Iterator[tuple]:
        """(images, boxes, classes) per batch, all on the device: uint8 N×C×H×W, and per image n×4 and n; on cached
        features, the batch's positions in the training split instead of its images."""
        device = self.device
        for part in index:
            images = part if self.features is not None else self.train_x[part].to(device, non_blocking=True)
            boxes = [self.train_boxes[i].to(device, non_blocking=True) for i in part]
            classes = [self.train_classes[i].to(device, non_blocking=True) for i in part]
            yield images, boxes, classes

    def loss(self, model, batch, generator: torch.Generator) -> tuple[torch.Tensor, int, int]:
        images, boxes, classes = batch
        if self.features is not None:  # the frozen base's output, computed once; mirrored as flip() would
            x = self.features.plain[images.to(self.features.plain.device)]
            if "flip" in self.augments:
                x, boxes = self.features.draw(images, boxes, self.train_x.shape[3], generator)
            return self._loss(model.forward_head(x), boxes, classes), 0, len(images)
        if "color" in self.augments:  # on the uint8 pixels, before the first draw of flip: none of them move
            images = color_jitter(images, generator)
        x = normalise(images, self.mean, self.std)
        if "flip" in self.augments:
            x, boxes = flip(x, boxes, generator)
        if "scale" in self.augments:
            x, boxes, classes = scale_translate(x, boxes, classes, generator)
        return self._loss(model(x), boxes, classes), 0, len(images)

    def _loss(self, out: torch.Tensor, boxes: list, classes: list) -> torch.Tensor:
        return detection_loss(out, boxes, classes, self.head_layer, self.config.giou_weight)

    def _evaluate_split(
        self, model, split: DetectionSplit, features: Features | None = None
    ) -> tuple[DetectionMetrics, float]:
        fused = inference_copy(model)  # batchnorms folded: the same maps, less work; `model` itself untouched
        flip = flips_at_test(self.config)
        found, loss = detect_split(fused, split, self.mean, self.std, flip, self.device, features)
        self.found = found
        return split_metrics(split, found, self.run.data.classes), loss

    def validate(self, model) -> dict[str, float]:
        if self.val is None:
            return dict.fromkeys(self.validation_keys, math.nan)
        metrics, loss = self._evaluate_split(model, self.val, self.val_features)
        return {"val_loss": loss, "val_map50": metrics.map50, "val_map50_95": metrics.map50_95}

    def score(self, row: dict[str, float]) -> float:
        """The best checkpoint has the best validation mAP@0.5:0.95 (the lowest training loss without validation)."""
        return row["val_map50_95"] if self.val is not None else -row["train_loss"]

    def test(self, model, epochs: int) -> dict:
        metrics, loss = self._evaluate_split(model, self.test_split)
        self.metrics = metrics
        path = self.run.path
        plot_pr_curves(
            metrics,
            path / PR_CURVES,
            f"{path.name}: test mAP@0.5 {metrics.map50:.3f}, " + (f"mAP@0.5:0.95 {metrics.map50_95:.3f}"),
        )
        atomic_write_text(path / COCO_EVAL, metrics.summary + "\n")
        save_detection(self.run, metrics)  # read back by evaluate, the report and the studio instead of computed again
        log.info("test mAP@0.5 %.4f, mAP@0.5:0.95 %.4f after %d epochs", metrics.map50, metrics.map50_95, epochs)
        per_class = metrics.to_dict()
        return {
            "test_map50": metrics.map50,
            "test_map50_95": metrics.map50_95,
            "test_loss": loss,
            "test_images": len(self.test_split),
            "test_split": "val" if self.test_split is self.val else "test",  # no test split: scored on val (load.py)
            "per_class_ap50": per_class["per_class_ap50"],
            "per_class_ap50_95": per_class["per_class_ap50_95"],
            "skipped_count": 0,  # detection readers report label problems instead (train.log, lint)
            "skipped_files": [],
        }

    # As for a classifier, the drawing modules are imported when they are needed, not when training starts.
    def write_report(self) -> None:
        from convscope.detect.report import write_detection_report

        write_detection_report(self.run, self.metrics, self.test_split, self.found)

    evaluation = staticmethod(detection_of)
    report = staticmethod(write_detector_report)

    @staticmethod
    def predict(loaded, items: list, top_k: int = 3) -> list:
        """Boxes found in each image file (Found; top_k does not apply: every box scoring at least detect_images'
        default)."""
        from convscope.detect.predict import detect_images

        return detect_images(loaded, [str(item) for item in items])

    @classmethod
    def headline(cls, results: dict) -> str:
        if "test_map50" not in results:
            return ""
        return f"test mAP@0.5 {results['test_map50']:.3f}, mAP@0.5:0.95 {results['test_map50_95']:.3f}"
