"""Classification: one class per image, cross-entropy, accuracy; the task of every spec that ends in a dense layer.

Images stay uint8 N×C×H×W on the CPU (in memory) or on disk (an image folder larger than the memory budget:
data/stream.py decodes its batches in DataLoader workers); each batch goes to the device, is standardised and
augmented there. Either way an epoch sees the same images in the same order, so streaming trains the same weights.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from convscope.config import TrainConfig
from convscope.data.augment_batch import augment_batch
from convscope.data.checks import quick_check
from convscope.data.dataset import Dataset, Split, per_class_subset, seeded_split, skipped_results
from convscope.data.load import load_dataset
from convscope.data.resize import fit_images
from convscope.data.stream import FileSplit, memory_budget, stream_batches
from convscope.errors import ConfigError, SpecError
from convscope.fused import inference_copy
from convscope.loaded import with_test_flips
from convscope.memory import human_bytes
from convscope.preprocess import batch_for, channel_stats, normalise, predict_logits, run_stats, to_tensor
from convscope.pretrained.bases import spec_base
from convscope.run import Run
from convscope.spec import Dense, NetSpec
from convscope.training.task import Task

log = logging.getLogger("convscope.train")
STATS_SAMPLE = 5_000  # images of a streamed training split that its per-channel mean and std are computed from


def fit_head(spec: NetSpec, classes: int) -> NetSpec:
    """The last layer gives one score (logit) per class: a preset's last dense layer is resized to the data."""
    last = spec.layers[-1]
    if not isinstance(last, Dense):
        raise SpecError(
            f"{spec.name}: the last layer must be a dense layer with one unit per class ({classes}); it is "
            f"{spec.layer_names()[-1]} (if you added the dense layers with model.add(...), keep what add returns: "
            "model = model.add(layer))"
        )
    if last.units == classes:
        return spec
    log.info("%s: last dense layer resized from %d to %d units, one per class", spec.name, last.units, classes)
    return replace(spec, layers=(*spec.layers[:-1], replace(last, units=classes)))


class ClassifyTask(Task):
    name, outputs = "classification", "logits"
    score_key, score_name = "test_acc", "test accuracy"
    counts_correct = True
    validation_keys = ("val_loss", "val_acc")

    @staticmethod
    def load_data(config: TrainConfig, spec: NetSpec, progress=None) -> Dataset:
        if config.image_size is not None:  # a classifier's input is its spec's (or the base's, for transfer)
            raise ConfigError(
                f"image_size is for detectors; a classifier takes its spec's input ({spec.input[0]}×{spec.input[1]}). "
                f"Received: {config.image_size}"
            )
        budget = memory_budget(config.cache_limit)
        data = load_dataset(
            config.data, config.data_dir, spec.input, config.seed, config.val_fraction, progress, memory_budget=budget
        )
        if config.per_class is None:
            return data
        log.info("%s: training on %d images per class (seed %d)", data.name, config.per_class, config.seed)
        return replace(data, train=per_class_subset(data.train, config.per_class, config.seed))

    @staticmethod
    def fit_spec(spec: NetSpec, data: Dataset) -> NetSpec:
        """The spec made to fit the data: its input (unless a base fixes it) and one output per class."""
        if spec_base(spec) is None and data.image_shape != spec.input:  # convnets take any size their layers allow
            log.info("%s: input %s adapted to the data's %s", spec.name, spec.input, data.image_shape)
            spec = spec.with_input(data.image_shape)
        return fit_head(spec, len(data.classes))

    @staticmethod
    def input_stats(data: Dataset) -> tuple[tuple[float, ...], tuple[float, ...]]:
        images = data.train.images if isinstance(data.train, Split) else data.train.sample(STATS_SAMPLE, seed=0)
        return channel_stats(images, data.name)

    def __init__(self, run: Run, data: Dataset, device: torch.device) -> None:
        super().__init__(run, data, device)
        train, val = self.train_and_val(data, seeded_split)
        self.train_x, self.train_y = self._images(train), torch.from_numpy(train.labels).long()
        self.val = (self._images(val), torch.from_numpy(val.labels).long()) if val is not None and len(val) else None
        self.test_split = (self._images(data.test), torch.from_numpy(data.test.labels).long())
        self.train_size = len(train)
        self.augment = self.config.augmentation()
        self.mean, self.std = (t.to(device) for t in run_stats(run))
        self.skipped = data.skipped  # files the loader left out: train.log and results.json
        # The cheap checks (leaks by exact hash, repeats, balance, unreadable files): one line, said at the start.
        self.data_check = quick_check(data, self.config.data)
        self.features: tuple[torch.Tensor, torch.Tensor | None] | None = None  # a frozen base's, computed once
        self.tested = None  # the Evaluation of the test split, made by test()

    def _images(self, split) -> torch.Tensor | FileSplit:
        """A split's images: uint8 N×C×H×W on the CPU (fitted to the spec's input: a base's size and 3 channels),
        or, streamed, its FileSplit (decoded straight to that size)."""
        if isinstance(split, FileSplit):
            return replace(split, shape=self.run.spec.input)
        return to_tensor(fit_images(split.images, self.run.spec.input))

    def log_data_notes(self) -> None:
        for path, reason in self.skipped:
            log.info("skipped %s: %s", path, reason)  # the terminal was told while the data loaded
        if isinstance(self.train_x, FileSplit):  # said while the data loaded, before train.log was open
            log.info(
                "streaming the %d training images from disk (%s decoded; cache_limit %s)",
                len(self.train_x),
                human_bytes(self.train_x.nbytes),
                self.config.cache_limit or "half the available memory",
            )
        check = self.data_check
        # The terminal shows the line through data_lines (the callbacks' on_note: the CLI, the notebook); `noted`
        # keeps the CLI's log handler from showing a serious one a second time.
        log.log(logging.WARNING if check.serious else logging.INFO, "%s", check.line(), extra={"noted": True})
        log.info("data check: %.2f s", check.seconds)

    def data_lines(self) -> list[str]:
        return [self.data_check.line()]

    # -- a frozen base's features, computed once (cache_features) ----------------------------------------------------
    def start_phase(self, model: torch.nn.Module, phase: int, epoch: int) -> None:
        self.features = None
        if phase == 1 and self.config.cache_features and epoch < self.config.epochs:
            self.features = self._cache_features(model)

    @torch.no_grad()  # not inference_mode: the head trains on these tensors
    def _cache_features(self, model) -> tuple[torch.Tensor, torch.Tensor | None]:
        base = model.base
        splits = [self.train_x] + ([self.val[0]] if self.val is not None else [])
        started = time.perf_counter()
        base.train(False)
        cached = [torch.cat([base(x) for x in self._normalised(images)]) for images in splits]
        log.info(
            "cached the base's features of %d images in %.1f s (%.0f MiB); phase 1 trains without augmentation",
            sum(len(x) for x in cached),
            time.perf_counter() - started,
            sum(x.nelement() * x.element_size() for x in cached) / 2**20,
        )
        return cached[0], (cached[1] if len(cached) > 1 else None)

    def _normalised(self, images: torch.Tensor | FileSplit) -> Iterator[torch.Tensor]:
        """Standardised inference batches of all `images`, in order, on the device."""
        if isinstance(images, FileSplit):
            step = batch_for(torch.empty(1, *images.shape))
            order = [torch.arange(i, min(i + step, len(images))) for i in range(0, len(images), step)]
            for x in stream_batches(images, order, pin_memory=self.device.type == "cuda"):
                yield normalise(x.to(self.device, non_blocking=True), self.mean, self.std)
            return
        step = batch_for(images)
        for i in range(0, len(images), step):
            yield normalise(images[i : i + step].to(self.device, non_blocking=True), self.mean, self.std)

    # -- training ----------------------------------------------------------------------------------------------------
    def batches(self, index: list[torch.Tensor]) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
        """(index, uint8 images on the device) per batch; no images when the head trains on cached features."""
        if self.features is not None:
            yield from ((i, None) for i in index)
        elif isinstance(self.train_x, FileSplit):
            streamed = stream_batches(self.train_x, index, pin_memory=self.device.type == "cuda")
            for i, x in zip(index, streamed, strict=True):
                yield i, x.to(self.device, non_blocking=True)
        else:
            yield from ((i, self.train_x[i].to(self.device, non_blocking=True)) for i in index)

    def loss(self, model, batch, generator: torch.Generator) -> tuple[torch.Tensor, int, int]:
        index, images = batch
        y = self.train_y[index].to(self.device, non_blocking=True)
        if self.features is not None:  # the frozen base's output, computed once
            logits = model.forward_head(self.features[0][index.to(self.features[0].device)])
        else:
            logits = model(augment_batch(normalise(images, self.mean, self.std), self.augment, generator))
        loss = F.cross_entropy(logits, y, label_smoothing=self.config.label_smoothing)
        return loss, int((logits.argmax(1) == y).sum()), len(index)

    def validate(self, model) -> dict[str, float]:
        if self.val is None:
            return dict.fromkeys(self.validation_keys, math.nan)
        if self.features is not None and self.features[1] is not None:
            with torch.inference_mode():
                logits = model.head().train(False)(self.features[1]).float().cpu()
        else:
            logits = self._logits(model, self.val[0])
        loss, accuracy = _loss_accuracy(logits, self.val[1])
        return {"val_loss": loss, "val_acc": accuracy}

    def _logits(self, model, images: torch.Tensor | FileSplit) -> torch.Tensor:
        """N×classes float32 logits on the CPU, with mirror averaging where the run tests with it; run by a copy of
        `model` with its batchnorms folded (convscope.fused: same logits, less work), the model itself untouched."""
        predictor = with_test_flips(inference_copy(model), self.config)
        if isinstance(images, torch.Tensor):
            return predict_logits(predictor, images, self.mean, self.std, self.device)
        with torch.inference_mode():
            predictor.train(False)
            return torch.cat([predictor(x).float().cpu() for x in self._normalised(images)])

    def score(self, row: dict[str, float]) -> float:
        """What makes a checkpoint the best one: validation accuracy (training accuracy without validation); between
        equal accuracies, the lower validation loss. A small validation split ties often (cats vs dogs: 200 images,
        99.0% after head training and again after fine-tuning), and the first of the tied epochs is not the better
        one. The loss term is below one image's share of the accuracy, so it never outweighs a right answer."""
        if self.val is None:
            return row["train_acc"]
        return row["val_acc"] + 1 / (len(self.val[1]) + 1) / (1 + row["val_loss"])

    def test(self, model, epochs: int) -> dict:
        from convscope.classify.evaluate import evaluation_from_logits, warn_if_one_class

        x, y = self.test_split
        logits = self._logits(model, x)
        test_loss, test_acc = _loss_accuracy(logits, y)
        # The images as the model saw them (N×H×W×C), for the report's pictures of mistakes.
        images = x.permute(0, 2, 3, 1).numpy() if isinstance(x, torch.Tensor) else _DecodedOnDemand(x)
        self.tested = evaluation_from_logits(self.run, logits, y.numpy(), images)
        log.info("test accuracy %.4f after %d epochs", test_acc, epochs)
        warn_if_one_class(logits.argmax(1), y, self.run.data.classes)
        return {"test_acc": test_acc, "test_loss": test_loss, "test_images": len(y)} | skipped_results(self.skipped)

    # The modules of a finished run (evaluation, report, prediction) draw with matplotlib: they are imported when a
    # finished run asks for them, so that every training process does not pay for them at start.
    def write_report(self) -> None:
        from convscope.classify.report import write_report

        write_report(self.run, self.tested)

    @staticmethod
    def evaluation(run: Run, data: str | None = None, data_dir: str | None = None, device: str = "auto"):
        from convscope.classify.evaluate import evaluation_of

        return evaluation_of(run, data, data_dir, device)

    @staticmethod
    def report(run: Run) -> Path:
        from convscope.classify.report import write_report

        return write_report(run)

    @staticmethod
    def predict(loaded, items: list, top_k: int = 3):
        from convscope.classify.predict import Predictions, predict_image

        return Predictions(predict_image(loaded, item, top_k) for item in items)

    @classmethod
    def headline(cls, results: dict) -> str:
        return f"test accuracy {results['test_acc']:.2%}" if "test_acc" in results else ""

    @staticmethod
    def predictor(model, config: TrainConfig):
        """Mirror averaging where the run trains on mirrored images (TrainConfig.flips_at_test): logits of an image
        and of its mirror image, averaged."""
        return with_test_flips(model, config)


class _DecodedOnDemand:
    """A streamed split's images as the report indexes them (images[i] → H×W×C uint8), decoded one at a time."""

    def __init__(self, split: FileSplit):
        self.split = split

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i: int) -> np.ndarray:
        return self.split.take(np.array([i])).load().images[0]


def _loss_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    return float(F.cross_entropy(logits, labels)), float((logits.argmax(1) == labels).float().mean())
