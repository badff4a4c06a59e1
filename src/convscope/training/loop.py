"""fit: train a spec on a dataset into a run folder that survives crashes and resumes exactly.

Randomness has three sources, all restored on resume: the order of the images (a generator seeded by seed and epoch,
so it can be redrawn), the augmentation draws (a generator whose state is saved), and dropout / initialisation
(torch's global RNG, saved with the optimizer state).
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from convscope.build import build
from convscope.data.dataset import Dataset, seeded_split
from convscope.data.load import load_dataset
from convscope.errors import ConvscopeError, SpecError, TrainingError
from convscope.presets import resolve_spec
from convscope.run import DataInfo, Run, load_run, new_run_folder
from convscope.shapes import infer
from convscope.spec import Dense, NetSpec
from convscope.training import checkpoint as ckpt
from convscope.training.config import TrainConfig
from convscope.training.metrics import write_metrics_row

log = logging.getLogger("convscope.train")


class Interrupted(ConvscopeError):
    """SIGINT / SIGTERM: training stopped at the end of a batch and saved; `exit_code` is 130 or 143."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


class Callback:
    """Hooks a front end (the CLI's progress bar) uses to show training; the library itself only logs."""

    def on_start(self, run: Run, epochs: int, batches: int, epoch: int) -> None: ...
    def on_batch(self, epoch: int, batch: int, loss: float, accuracy: float, images_per_s: float) -> None: ...
    def on_epoch(self, row: dict[str, float]) -> None: ...
    def on_end(self, run: Run, results: dict) -> None: ...


def train(
    config: TrainConfig | None = None, *, resume: str | Path | None = None, callbacks=(), report=True, **settings
) -> Run:
    """Train and return the run. `train(model="fashion-fast", epochs=3)` or `train(resume="runs/x")`.

    With `report` (the default) the run folder also gets confusion.png, curves.png and report.html at the end.
    """
    run = _train(config, resume, callbacks, settings)
    if report:
        from convscope.inspect.report import write_report

        write_report(run)
    return run


def _train(config: TrainConfig | None, resume, callbacks, settings: dict) -> Run:
    if resume is not None:
        run = load_run(resume)
        return _Trainer(run, callbacks, resuming=True).fit()
    config = config or TrainConfig()
    if settings:
        config = TrainConfig.from_dict({**config.to_dict(), **settings}, where="train()")
    spec = resolve_spec(config.model)
    _set_threads(config)
    data = load_dataset(config.data, config.data_dir, spec.input, config.seed, config.val_fraction)
    if data.image_shape != spec.input:  # convnets take any size their layers allow: fit the spec to the data
        log.info("%s: input %s adapted to the data's %s", spec.name, spec.input, data.image_shape)
        spec = spec.with_input(data.image_shape)
    spec = _fit_head(spec, len(data.classes))
    infer(spec)  # a spec that cannot run on these images fails here, before anything is written
    path = new_run_folder(config)
    mean, std = _channel_stats(data.train.images)
    info = DataInfo(data.name, data.classes, mean, std, data.source)
    run = Run(path, config, spec, info)
    (path / "weights").mkdir(parents=True, exist_ok=True)
    ckpt.atomic_write_text(path / "spec.yaml", spec.to_yaml())
    ckpt.atomic_write_text(path / "config.yaml", run.config_yaml())
    return _Trainer(run, callbacks, resuming=False, data=data).fit()


def _fit_head(spec: NetSpec, classes: int) -> NetSpec:
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


def _channel_stats(images: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 N×H×W×C images scaled to [0, 1] (computed in chunks: no float copy)."""
    c = images.shape[-1]
    total, total_sq, count = np.zeros(c), np.zeros(c), 0
    for start in range(0, len(images), 4096):
        chunk = images[start : start + 4096].reshape(-1, c).astype(np.float64) / 255
        total += chunk.sum(0)
        total_sq += (chunk**2).sum(0)
        count += chunk.shape[0]
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean**2, 1e-12))
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 N×H×W×C -> uint8 N×C×H×W (a channels_last view: no copy unless the array is read-only)."""
    images = np.ascontiguousarray(images)
    if not images.flags.writeable:  # e.g. np.asarray of a Pillow image; torch wants memory it could write
        images = images.copy()
    return torch.from_numpy(images).permute(0, 3, 1, 2)


def run_stats(run: Run) -> tuple[torch.Tensor, torch.Tensor]:
    """The run's per-channel mean and std (of its training images in [0, 1]) as 1×C×1×1 tensors, for `normalise`."""
    c = len(run.data.mean)
    return torch.tensor(run.data.mean).view(1, c, 1, 1), torch.tensor(run.data.std).view(1, c, 1, 1)


def normalise(batch: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 N×C×H×W -> float32, scaled to [0, 1] and standardised per channel, channels_last."""
    x = batch.contiguous(memory_format=torch.channels_last).float().div_(255)
    return x.sub_(mean).div_(std)


@torch.inference_mode()
def predict_logits(model, images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, batch: int = 1000):
    model.train(False)
    return torch.cat([model(normalise(images[i : i + batch], mean, std)) for i in range(0, len(images), batch)])


class _Trainer:
    def __init__(self, run: Run, callbacks, resuming: bool, data: Dataset | None = None):
        self.run, self.callbacks, self.config = run, list(callbacks), run.config
        _set_threads(self.config)
        torch.manual_seed(self.config.seed)
        np.random.seed(self.config.seed % 2**32)
        cfg = self.config
        data = data or load_dataset(cfg.data, cfg.data_dir, run.spec.input, cfg.seed, cfg.val_fraction)
        self.classes = data.classes
        train, val = data.train, data.val
        if val is None and self.config.val_fraction > 0:
            train, val = seeded_split(train, self.config.val_fraction, self.config.seed)
        self.train_x, self.train_y = to_tensor(train.images), torch.from_numpy(train.labels).long()
        self.val = (
            (to_tensor(val.images), torch.from_numpy(val.labels).long()) if val is not None and len(val) else None
        )
        self.test = (to_tensor(data.test.images), torch.from_numpy(data.test.labels).long())
        self.mean, self.std = run_stats(run)
        self.model = build(run.spec).to(memory_format=torch.channels_last)
        self.batches = math.ceil(len(self.train_y) / self.config.batch_size)
        self.optimizer = _optimizer(self.model, self.config)
        self.scheduler = _scheduler(self.optimizer, self.config, self.batches)
        self.augment = self.config.augmentation()
        self.generator = torch.Generator().manual_seed(self.config.seed)
        self.epoch, self.batch, self.best, self.stale = 0, 0, -1.0, 0
        self.running = (0.0, 0, 0)  # loss sum, correct, seen of the epoch so far (kept when stopped mid-epoch)
        self.stop_signal: int | None = None
        if resuming:
            self._restore()

    # -- checkpoints ------------------------------------------------------------------------------------------
    def _save(self) -> None:
        extra = {
            "batch": self.batch,
            "best": self.best,
            "stale": self.stale,
            "running": list(self.running),
            "generator": self.generator.get_state(),
        }
        ckpt.save_weights(self.run.weights / "last.safetensors", self.model)
        ckpt.save_training_state(
            self.run.path / "state",
            optimizer=self.optimizer,
            scheduler=self.scheduler,
            epoch=self.epoch,
            step=self.epoch * self.batches + self.batch,
            extra=extra,
        )

    def _restore(self) -> None:
        if not (self.run.path / "state" / ckpt.STATE_JSON).exists():
            # Killed before the first checkpoint: start again; the seeded start is the one the run had.
            log.info("%s has no saved state yet: training starts from the beginning", self.run.path)
            return
        ckpt.load_weights(self.run.weights / "last.safetensors", self.model)
        state = ckpt.load_training_state(self.run.path / "state", optimizer=self.optimizer, scheduler=self.scheduler)
        self.epoch, self.batch, self.best, self.stale = state["epoch"], state["batch"], state["best"], state["stale"]
        self.running = tuple(state["running"])
        self.generator.set_state(state["generator"])
        log.info("resuming %s at epoch %d, batch %d", self.run.path, self.epoch + 1, self.batch)

    # -- the loop -----------------------------------------------------------------------------------------------
    def fit(self) -> Run:
        log.info(
            "training %s on %s: %d images, %d batches of %d per epoch",
            self.run.spec.name,
            self.run.data.name,
            len(self.train_y),
            self.batches,
            self.config.batch_size,
        )
        for cb in self.callbacks:
            cb.on_start(self.run, self.config.epochs, self.batches, self.epoch)
        started = time.perf_counter()
        with _stop_on_signals(self), _log_file(self.run.path / "train.log"):
            while self.epoch < self.config.epochs and not self._early_stop():
                row = self._epoch()
                for cb in self.callbacks:
                    cb.on_epoch(row)
        results = self._finish(time.perf_counter() - started)
        for cb in self.callbacks:
            cb.on_end(self.run, results)
        return self.run

    def _early_stop(self) -> bool:
        return self.config.patience is not None and self.stale >= self.config.patience

    def _epoch(self) -> dict[str, float]:
        cfg, model = self.config, self.model
        order = torch.randperm(len(self.train_y), generator=torch.Generator().manual_seed(cfg.seed * 1009 + self.epoch))
        model.train()
        loss_sum, correct, seen = self.running if self.batch else (0.0, 0, 0)  # a resumed epoch goes on counting
        t0 = time.perf_counter()
        while self.batch < self.batches:
            index = order[self.batch * cfg.batch_size : (self.batch + 1) * cfg.batch_size]
            x = self.augment(normalise(self.train_x[index], self.mean, self.std), self.generator)
            y = self.train_y[index]
            logits = model(x)
            loss = F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
            value = loss.item()
            if not math.isfinite(value):
                raise TrainingError(
                    f"the loss became {value} at epoch {self.epoch + 1}, batch {self.batch + 1} "
                    f"(step {self.epoch * self.batches + self.batch + 1}); try a smaller --lr. "
                    f"weights/best.safetensors was left as it was"
                )
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.scheduler.step()
            self.batch += 1
            loss_sum += value * len(y)
            correct += int((logits.argmax(1) == y).sum())
            seen += len(y)
            for cb in self.callbacks:
                cb.on_batch(self.epoch, self.batch, value, correct / seen, seen / (time.perf_counter() - t0))
            if self.stop_signal is not None:
                self.running = (loss_sum, correct, seen)
                self._save()
                raise self._interrupted()
        seconds = time.perf_counter() - t0
        row = {"epoch": self.epoch + 1, "train_loss": loss_sum / max(seen, 1), "train_acc": correct / max(seen, 1)}
        val_loss, val_acc = self._evaluate(self.val) if self.val is not None else (float("nan"), float("nan"))
        row |= {"val_loss": val_loss, "val_acc": val_acc, "lr": self.scheduler.get_last_lr()[0], "seconds": seconds}
        score = val_acc if self.val is not None else row["train_acc"]
        self.epoch, self.batch = self.epoch + 1, 0
        if score > self.best:
            self.best, self.stale = score, 0
            ckpt.save_weights(self.run.weights / "best.safetensors", model)
        else:
            self.stale += 1
        write_metrics_row(self.run.path / "metrics.csv", row)
        self._save()
        log.info(
            "epoch %d/%d: loss %.4f, accuracy %.4f, validation %.4f (%.1f s)",
            row["epoch"],
            cfg.epochs,
            row["train_loss"],
            row["train_acc"],
            val_acc,
            seconds,
        )
        return row

    def _evaluate(self, split) -> tuple[float, float]:
        x, y = split
        logits = predict_logits(self.model, x, self.mean, self.std)
        return float(F.cross_entropy(logits, y)), float((logits.argmax(1) == y).float().mean())

    def _interrupted(self) -> Interrupted:
        name = signal.Signals(self.stop_signal).name
        return Interrupted(
            f"stopped by {name} at epoch {self.epoch + 1}, batch {self.batch}/{self.batches}; saved. "
            f"Resume with: convscope train --resume {self.run.path}",
            128 + self.stop_signal,
        )

    def _finish(self, seconds: float) -> dict:
        ckpt.load_weights(self.run.weights / "best.safetensors", self.model)
        test_loss, test_acc = self._evaluate(self.test)
        results = {
            "test_acc": test_acc,
            "test_loss": test_loss,
            "epochs": self.epoch,
            "train_seconds": seconds,
            "test_images": len(self.test[1]),
        }
        ckpt.atomic_write_text(self.run.path / "results.json", json.dumps(results, indent=2) + "\n")
        log.info("test accuracy %.4f after %d epochs", test_acc, self.epoch)
        return results


def _optimizer(model, cfg: TrainConfig) -> torch.optim.Optimizer:
    # No weight decay on biases and batchnorm scales/shifts (1-D parameters): decaying them only hurts.
    decay = [p for p in model.parameters() if p.ndim > 1]
    other = [p for p in model.parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": other, "weight_decay": 0.0}]
    lr = cfg.learning_rate
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(groups, lr=lr)
    return torch.optim.AdamW(groups, lr=lr)


def _scheduler(optimizer, cfg: TrainConfig, batches: int):
    total = cfg.epochs * batches + 1  # the schedule's last point is reached by the last step, not one before
    if cfg.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=cfg.learning_rate, total_steps=total, pct_start=0.25, anneal_strategy="linear"
        )
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)
    return torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)


@contextmanager
def _log_file(path: Path):
    """Everything convscope logs while training also goes to the run's train.log."""
    logger = logging.getLogger("convscope")
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO if level in (logging.NOTSET,) or level > logging.INFO else level)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        handler.close()


@contextmanager
def _stop_on_signals(trainer: _Trainer):
    """SIGINT / SIGTERM ask the loop to stop at the end of the current batch (then save and raise Interrupted)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def ask_to_stop(signum, _frame):
        trainer.stop_signal = signum

    previous = {s: signal.signal(s, ask_to_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
