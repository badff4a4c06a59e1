"""The trainer: epochs of batches into a run folder that survives crashes and resumes exactly.

Randomness has three sources, all restored on resume: the order of the images (a generator seeded by seed and epoch,
so it can be redrawn), the augmentation draws (a generator whose state is saved), and dropout / initialisation
(torch's global RNG, saved with the optimizer state).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import signal
import time
from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F

from convscope.builder import build
from convscope.data.dataset import Dataset, per_class_subset, seeded_split, skipped_results
from convscope.data.load import load_dataset
from convscope.data.resize import fit_images
from convscope.errors import SpecError, TrainingError
from convscope.files import atomic_write_text
from convscope.run import (
    CHECKPOINT,
    LOG,
    RESULTS,
    Run,
    with_test_flips,
)
from convscope.shapes import infer
from convscope.signals import StopRequest
from convscope.spec import Dense, NetSpec
from convscope.training.callbacks import Interrupted, data_progress
from convscope.training.config import FINETUNE_LR_SCALE, TrainConfig
from convscope.training.resume import Checkpointing
from convscope.training.runtime import log_file, optimizer_for, precision_line, scheduler_for, uses_bf16
from convscope.training.state import read_checkpoint
from convscope.training.tensors import batch_for, normalise, predict_logits, run_stats, to_tensor
from convscope.transfer.bases import BaseNet, spec_base

log = logging.getLogger("convscope.train")


def _cache_bytes(spec: NetSpec, images: int) -> int:
    """float32 bytes of the base's features of `images` images (cache_features keeps them in memory)."""
    return math.prod(infer(spec).layers[0].output_shape) * 4 * images


def _subset(data: Dataset, config: TrainConfig) -> Dataset:
    """The dataset with only `config.per_class` training images per class, when that is set."""
    if config.per_class is None:
        return data
    log.info("%s: training on %d images per class (seed %d)", data.name, config.per_class, config.seed)
    return replace(data, train=per_class_subset(data.train, config.per_class, config.seed))


def fit_head(spec: NetSpec, classes: int) -> NetSpec:
    """The last layer gives one score (logit) per class: a preset's last dense layer is resized to the data."""
    last = spec.layers[-1]
    if not isinstance(last, Dense):
        raise SpecError(f"{spec.name}: the last layer must be a dense layer with one unit per class ({classes})")
    if last.units == classes:
        return spec
    log.info("%s: last dense layer resized from %d to %d units, one per class", spec.name, last.units, classes)
    return replace(spec, layers=(*spec.layers[:-1], replace(last, units=classes)))


def _set_threads(config: TrainConfig) -> None:
    torch.set_num_threads(config.threads or os.cpu_count() or 1)


class _Trainer(Checkpointing):
    def __init__(self, run: Run, callbacks, resuming: bool, data=None, started: float | None = None):
        self.run, self.callbacks, self.config = run, list(callbacks), run.config
        self.started = time.perf_counter() if started is None else started  # of this segment, for wall_seconds
        _set_threads(self.config)
        torch.manual_seed(self.config.seed)
        np.random.seed(self.config.seed % 2**32)
        cfg = self.config
        # Read before anything is built: a damaged or foreign checkpoint is refused before the data is loaded.
        saved = read_checkpoint(run.path / CHECKPOINT) if resuming and (run.path / CHECKPOINT).exists() else None
        self._use_data(data or self.load_data(cfg, run.spec, data_progress(self.callbacks)))
        self.mean, self.std = run_stats(run)
        self.model = build(run.spec).to(memory_format=torch.channels_last)
        self.base = self.model[0] if isinstance(self.model[0], BaseNet) else None
        self.head = self.model[1:]  # the layers after a base, trained on its cached features
        self.predictor = with_test_flips(self.model, cfg)  # what validation and test classify with
        self.total_epochs = cfg.epochs + cfg.finetune_epochs
        self.batches = math.ceil(self.train_size / self.config.batch_size)
        self.generator = torch.Generator().manual_seed(self.config.seed)
        self.epoch, self.batch, self.best, self.stale = 0, 0, None, 0
        self.best_weights: dict[str, torch.Tensor] | None = None  # a copy of the weights that scored `best`
        self.rows: list[dict[str, float]] = []  # metrics.csv
        self.seconds = {"train_seconds": 0.0, "wall_seconds": 0.0}  # of earlier segments of a resumed run
        self.evaluation = None  # of the test split, made at the end
        self.running = (0.0, 0, 0)  # loss sum, correct, seen of the epoch so far (kept when stopped mid-epoch)
        self.stop = StopRequest()
        self.resumed_at: tuple[int, int] | None = None  # (epoch, batch) a resumed run continues from
        if saved is None:
            if resuming:  # killed before the first checkpoint: start again; the seeded start is the one it had
                log.info("%s has no checkpoint yet: training starts from the beginning", run.path)
            self._enter_phase(1)
        else:
            self._restore(saved)

    def _enter_phase(self, phase: int, schedule: tuple[int, int] | None = None) -> None:
        """Phase 1: a base (if any) frozen, the learning rate of the config. Phase 2: the base's last unfreeze_blocks
        blocks train too, at a FINETUNE_LR_SCALE× smaller rate, with a schedule of its own.
        `schedule`: (first epoch, epochs) of the learning-rate schedule; by default the whole phase."""
        cfg = self.config
        self.phase = phase
        if self.base is not None:
            self.base.set_trainable(0 if phase == 1 else cfg.unfreeze_blocks)
            log.info("%s", self._phase_line())
        self.optimizer = optimizer_for(self.model, cfg, self._phase_lr())
        self._new_schedule(*(schedule or ((0, cfg.epochs) if phase == 1 else (cfg.epochs, cfg.finetune_epochs))))
        self.features = None  # phase 1 with cache_features: computed when training starts (see fit)

    def _phase_line(self) -> str:
        trainable, blocks = self.base.trainable_blocks, len(self.base.blocks)
        return f"phase {self.phase}: {trainable} of the base's {blocks} blocks trainable"

    def _phase_lr(self) -> float:
        return self.config.learning_rate * (FINETUNE_LR_SCALE if self.phase == 2 else 1)

    def _new_schedule(self, first: int, epochs: int) -> None:
        """A learning-rate schedule over `epochs` epochs from epoch `first` (0-based) on the current optimizer."""
        self.schedule = (first, epochs)
        self.scheduler = scheduler_for(self.optimizer, self.config, self.batches, epochs, self._phase_lr())

    # -- data (a task's own) ------------------------------------------------------------------------------------------
    @staticmethod
    def load_data(config: TrainConfig, spec: NetSpec, progress=None) -> Dataset:
        data = load_dataset(config.data, config.data_dir, spec.input, config.seed, config.val_fraction, progress)
        return _subset(data, config)

    @staticmethod
    def fit_spec(spec: NetSpec, data: Dataset) -> NetSpec:
        """The spec made to fit the data: its input (unless a base fixes it) and one output per class."""
        if spec_base(spec) is None and data.image_shape != spec.input:  # convnets take any size their layers allow
            log.info("%s: input %s adapted to the data's %s", spec.name, spec.input, data.image_shape)
            spec = spec.with_input(data.image_shape)
        return fit_head(spec, len(data.classes))

    def _use_data(self, data: Dataset) -> None:
        """Split off validation images (when the data has none) and keep every split as tensors."""
        cfg = self.config
        train, val = data.train, data.val
        if val is None and cfg.val_fraction > 0:
            train, val = seeded_split(train, cfg.val_fraction, cfg.seed)
        self.train_x, self.train_y = self._tensors(train)
        self.val = self._tensors(val) if val is not None and len(val) else None
        self.test = self._tensors(data.test)
        self.train_size = len(self.train_y)
        self.augment = cfg.augmentation()
        self.skipped = data.skipped  # files the loader left out: train.log (_log_data_notes) and results.json

    def _tensors(self, split) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 N×C×H×W images (fitted to the spec's input: a base's size and 3 channels) and int64 labels."""
        images = fit_images(split.images, self.run.spec.input)
        return to_tensor(images), torch.from_numpy(split.labels).long()

    @torch.no_grad()  # not inference_mode: the head trains on these tensors
    def _cache_features(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The frozen base's feature maps of the training (and validation) images, computed once for phase 1."""
        splits = [self.train_x] + ([self.val[0]] if self.val is not None else [])
        needed = _cache_bytes(self.run.spec, sum(len(x) for x in splits))
        started = time.perf_counter()
        self.base.train(False)
        cached = []
        for x in splits:
            b = batch_for(x)
            cached.append(
                torch.cat([self.base(normalise(x[i : i + b], self.mean, self.std)) for i in range(0, len(x), b)])
            )
        log.info(
            "cached the base's features of %d images in %.1f s (%.0f MiB); phase 1 trains without augmentation",
            sum(len(x) for x in splits),
            time.perf_counter() - started,
            needed / 2**20,
        )
        return cached[0], (cached[1] if len(cached) > 1 else None)

    # -- the loop -----------------------------------------------------------------------------------------------
    def fit(self, stop: StopRequest | None = None) -> Run:
        """Train the remaining epochs, then test the best weights and write results.json. Ctrl-C / SIGTERM (through
        `stop`, or a StopRequest installed here) save at the end of the batch and raise Interrupted."""
        for cb in self.callbacks:
            cb.on_start(self.run, self.total_epochs, self.batches, self.epoch)
        self.fit_started = time.perf_counter()
        self.stop = stop or StopRequest()
        with contextlib.ExitStack() as stack:
            if stop is None:
                stack.enter_context(self.stop.installed())
            stack.enter_context(log_file(self.run.path / LOG))
            log.info(
                "training %s on %s: %d images, %d batches of %d per epoch",
                self.run.spec.name,
                self.run.data.name,
                self.train_size,
                self.batches,
                self.config.batch_size,
            )
            for line in (self.config.recipe_line(), precision_line(self.config)):
                if line:
                    log.info("%s", line)
            if self.resumed_at is not None:
                log.info("resuming %s at epoch %d, batch %d", self.run.path, self.resumed_at[0] + 1, self.resumed_at[1])
            if self.base is not None:  # said again now that train.log is open (the phase began before it was)
                log.info("%s", self._phase_line())
            self._log_data_notes()
            try:
                self._epochs()
                results = self._finish(
                    train_seconds=self.seconds["train_seconds"] + time.perf_counter() - self.fit_started
                )
            except KeyboardInterrupt:
                if self.stop.signal is None:
                    raise
                raise self._interrupted() from None  # outside the loop: the last checkpoint is complete
        for cb in self.callbacks:
            cb.on_end(self.run, results)
        return self.run

    def _epochs(self) -> None:
        if self.phase == 1 and self.config.cache_features and self.epoch < self.config.epochs:
            self.features = self._cache_features()
        self.stop.armed = True  # from here a signal only asks the loop to stop at the end of a batch
        try:
            while self.epoch < self.total_epochs:
                if self._early_stop():
                    if self.phase == 2 or not self.config.finetune_epochs:
                        break
                    log.info("no better validation accuracy for %d epochs: on to fine-tuning", self.stale)
                    self.epoch = self.config.epochs
                if self.phase == 1 and self.epoch >= self.config.epochs:
                    self._enter_phase(2)
                    self.stale = 0
                elif self.epoch >= sum(self.schedule):  # epochs added by --resume --epochs: a schedule of their own
                    log.info("epochs %d to %d: a new learning-rate schedule", self.epoch + 1, self.config.epochs)
                    self._new_schedule(self.epoch, self.config.epochs - self.epoch)
                row = self._epoch()
                for cb in self.callbacks:
                    cb.on_epoch(row)
                if self.stop.signal is not None:  # asked during the epoch's last batch, its validation or its save
                    raise self._interrupted()
        finally:
            self.stop.armed = False

    def _early_stop(self) -> bool:
        return self.config.patience is not None and self.stale >= self.config.patience

    def _epoch(self) -> dict[str, float]:
        cfg, model = self.config, self.model
        order = torch.randperm(self.train_size, generator=torch.Generator().manual_seed(cfg.seed * 1009 + self.epoch))
        model.train()
        loss_sum, correct, seen = self.running if self.batch else (0.0, 0, 0)  # a resumed epoch goes on counting
        t0 = time.perf_counter()
        while self.batch < self.batches:
            index = order[self.batch * cfg.batch_size : (self.batch + 1) * cfg.batch_size]
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=uses_bf16(cfg)):
                loss, right = self._batch(index)
            value = loss.item()
            if not math.isfinite(value):
                raise TrainingError(
                    f"the loss became {value} at epoch {self.epoch + 1}, batch {self.batch + 1} "
                    f"(step {self.epoch * self.batches + self.batch + 1}); try a smaller --lr"
                    + (f". The checkpoint of epoch {self.epoch} is kept" if self.epoch else "")
                )
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.scheduler.step()
            self.batch += 1
            loss_sum += value * len(index)
            correct += right
            seen += len(index)
            accuracy = correct / seen if self.counts_correct else None
            for cb in self.callbacks:
                cb.on_batch(self.epoch, self.batch, value, accuracy, seen / (time.perf_counter() - t0))
            if self.stop.signal is not None and self.batch < self.batches:
                self.running = (loss_sum, correct, seen)
                self._save()
                raise self._interrupted()
        seconds = time.perf_counter() - t0
        row = {"epoch": self.epoch + 1, "train_loss": loss_sum / max(seen, 1)}
        if self.counts_correct:
            row["train_acc"] = correct / max(seen, 1)
        row |= self._validate() if self._validation_due() else dict.fromkeys(self.validation_keys, math.nan)
        row |= {"lr": self.scheduler.get_last_lr()[0], "seconds": seconds}
        score = self._score(row)
        self.epoch, self.batch, self.running = self.epoch + 1, 0, (0.0, 0, 0)
        if math.isnan(score):  # not validated this epoch (val_every): neither better nor counted by patience
            pass
        elif self.best is None or score > self.best:
            self.best, self.stale = score, 0
            self.best_weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            self.stale += 1
        self.rows.append(row)
        self._save()
        shown = ", ".join(f"{k} {v:.4f}" for k, v in row.items() if k not in ("epoch", "lr", "seconds"))
        log.info("epoch %d/%d: %s (%.1f s)", row["epoch"], self.total_epochs, shown, seconds)
        return row

    def _validation_due(self) -> bool:
        """Validate after every val_every epochs, and after the last epoch of each phase."""
        done, cfg = self.epoch + 1, self.config
        return self.val is None or done % cfg.val_every == 0 or done in (cfg.epochs, self.total_epochs)

    # -- what a task defines (classification here; detection subclasses these) -------------------------------------
    counts_correct = True  # _batch counts right answers (a training accuracy exists)
    validation_keys = ("val_loss", "val_acc")  # what _validate adds to an epoch's row (NaN when not validated)
    skipped: tuple = ()  # (path, reason) of files the data loader left out

    def _batch(self, index: torch.Tensor) -> tuple[torch.Tensor, int]:
        """The loss on the training images at `index`, and how many of them the model classified right."""
        y = self.train_y[index]
        if self.features is not None:  # the frozen base's output, computed once
            logits = self.head(self.features[0][index])
        else:
            logits = self.model(self.augment(normalise(self.train_x[index], self.mean, self.std), self.generator))
        loss = F.cross_entropy(logits, y, label_smoothing=self.config.label_smoothing)
        return loss, int((logits.argmax(1) == y).sum())

    def _validate(self) -> dict[str, float]:
        if self.val is None:
            return dict.fromkeys(self.validation_keys, math.nan)
        if self.features is not None and self.features[1] is not None:
            with torch.inference_mode():
                logits = self.head.train(False)(self.features[1])
        else:
            logits = predict_logits(self.predictor, self.val[0], self.mean, self.std)
        loss, accuracy = _loss_accuracy(logits, self.val[1])
        return {"val_loss": loss, "val_acc": accuracy}

    def _score(self, row: dict[str, float]) -> float:
        """What makes a checkpoint the best one: validation accuracy (training accuracy without validation); between
        equal accuracies, the lower validation loss. A small validation split ties often (cats vs dogs: 200 images,
        99.0% after head training and again after fine-tuning), and the first of the tied epochs is not the better
        one. The loss term is below one image's share of the accuracy, so it never outweighs a right answer."""
        if self.val is None:
            return row["train_acc"]
        return row["val_acc"] + 1 / (len(self.val[1]) + 1) / (1 + row["val_loss"])

    def _test(self) -> dict:
        """Evaluate the best weights (already loaded) on the test split: the results.json entries."""
        from convscope.evaluation import evaluation_from_logits, warn_if_one_class

        x, y = self.test
        logits = predict_logits(self.predictor, x, self.mean, self.std)
        test_loss, test_acc = _loss_accuracy(logits, y)
        images = x.permute(0, 2, 3, 1).numpy()  # back to N×H×W×C, as the model saw them
        self.evaluation = evaluation_from_logits(self.run, logits, y.numpy(), images)
        log.info("test accuracy %.4f after %d epochs", test_acc, self.epoch)
        warn_if_one_class(logits.argmax(1), y, self.run.data.classes)
        return {"test_acc": test_acc, "test_loss": test_loss, "test_images": len(y)}

    def _interrupted(self) -> Interrupted:
        name = signal.Signals(self.stop.signal).name
        if not (self.run.path / CHECKPOINT).exists():  # stopped before the first one (e.g. caching a base's features)
            return Interrupted(f"stopped by {name} before the first checkpoint: nothing to resume", self.stop.exit_code)
        where = f"epoch {self.epoch + 1}, batch {self.batch}/{self.batches}" if self.batch else f"epoch {self.epoch}"
        return Interrupted(
            f"stopped by {name} at {where}; saved. Resume with: convscope train --resume {self.run.path}",
            self.stop.exit_code,
        )

    def write_report(self) -> None:
        """report.html and its pictures, from the test pass just made (not a second one)."""
        from convscope.inspect.report import write_report

        write_report(self.run, self.evaluation)

    def _log_data_notes(self) -> None:
        """Write to train.log what loading the data found besides the images (files it skipped, and why)."""
        for path, reason in self.skipped:
            log.info("skipped %s: %s", path, reason)  # the terminal was told while the data loaded

    def _finish(self, train_seconds: float) -> dict:
        """Test the best weights and write results.json. `train_seconds`: of the epochs, over every segment of a
        resumed run (wall_seconds adds up the whole commands, data loading and tests included)."""
        if self.best_weights is not None:
            self.model.load_state_dict(self.best_weights)
        results = {**self._test(), "epochs": self.epoch, "train_seconds": train_seconds}
        results["stopped_early"] = self.epoch < self.total_epochs
        results |= skipped_results(self.skipped)
        results["wall_seconds"] = self.seconds["wall_seconds"] + time.perf_counter() - self.started
        atomic_write_text(self.run.path / RESULTS, json.dumps(results, indent=2) + "\n")
        return results


def _loss_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    return float(F.cross_entropy(logits, labels)), float((logits.argmax(1) == labels).float().mean())
