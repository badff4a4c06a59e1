"""What `--resume` means: which settings a resumed run may change, when a run is finished, whether the values read
back from its checkpoint can belong to it; and the trainer's checkpoints themselves (`Checkpointing`).

A resumed run keeps its own settings. Some may be given: `threads`, `device` and `cache_limit` (where and how fast
it runs, not what it learns) and `epochs`, to train longer than planned. The added epochs get a learning-rate
schedule of their own, of the run's kind and peak rate, over just those epochs (what `fit_one_cycle` called again does
in fastai); the schedule of the epochs already planned is unchanged, so an interrupted run that is also extended first
finishes its planned schedule.
"""

from __future__ import annotations

import math
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from convscope.config import MAX_THREADS, TrainConfig
from convscope.errors import CheckpointError, ConfigError, OutputError
from convscope.files import atomic_write_bytes
from convscope.run import CHECKPOINT, METRICS, REPORT, Run, weights_file
from convscope.training.autotune import Tuning
from convscope.training.checkpoint_file import MAX_COUNT, Checkpoint, restore, save_checkpoint
from convscope.training.metrics_csv import write_metrics
from convscope.training.task import Task
from convscope.weights import safetensors_bytes, save_weights

CHANGEABLE = ("epochs", "threads", "device", "cache_limit")  # the settings `--resume` accepts


def resumable(err: OutputError, folder: Path) -> OutputError:
    """A write into the run folder `folder` failed (a full disk): `err`, with how to go on once the run has a
    checkpoint (the file named is as it was, and the run resumes from its checkpoint)."""
    if not (folder / CHECKPOINT).exists():
        return err
    return OutputError(
        f"{err}; the run keeps its last checkpoint: resume with `convscope train --resume {folder}` once it can be "
        "written"
    )


def is_finished(run: Run) -> bool:
    """The run trained all its epochs (or stopped early) and was tested: results.json was written for its config."""
    results = run.results()
    if not results:
        return False
    planned = run.config.epochs + run.config.finetune_epochs
    return bool(results.get("stopped_early")) or results.get("epochs", 0) >= planned


def check_format(run: Run) -> None:
    """Refuse a run whose checkpoint an earlier convscope wrote (a state/ folder of two files): resuming it would
    silently start over."""
    if (run.path / "state").is_dir() and not (run.path / CHECKPOINT).exists():
        raise CheckpointError(
            f"{run.path}: its checkpoint (state/) is in the format of an earlier convscope, which is no longer read; "
            "train it again with another --out"
        )


def resumed_config(run: Run, settings: dict[str, Any]) -> TrainConfig:
    """The run's config with the settings a resume may change. Raises ConfigError for any other setting, for fewer
    epochs than planned, and for extending a two-phase (fine-tuning) run or one that stopped early."""
    if refused := sorted(set(settings) - set(CHANGEABLE)):
        flags = ", ".join("--" + name.replace("_", "-") for name in refused)
        raise ConfigError(
            f"{run.path}: a resumed run keeps its own settings; {flags} cannot be changed "
            f"(only --epochs, to train longer, and --threads, --device, --cache-limit)"
        )
    config = run.config
    for name in ("threads", "device", "cache_limit"):  # where and how fast, not what: a resumed run may move
        if settings.get(name) is not None:
            config = replace(config, **{name: settings[name]})
    epochs = settings.get("epochs")
    if epochs is None or epochs == config.epochs:
        return config
    if epochs < config.epochs:
        planned = f"{config.epochs} epoch{'' if config.epochs == 1 else 's'}"
        raise ConfigError(f"{run.path}: is set to train {planned}; --resume can only add epochs")
    if config.finetune_epochs:
        raise ConfigError(f"{run.path}: trains in two phases (head, then fine-tuning); --epochs cannot extend it")
    if run.results().get("stopped_early"):
        raise ConfigError(f"{run.path}: stopped early (no better validation score for {config.patience} epochs)")
    return replace(config, epochs=epochs)


def finished_message(run: Run, task: type[Task]) -> str:
    """What a resume of a finished run says: its epochs and test numbers, and how to train it longer."""
    results = run.results()
    score = task.headline(results) or "not tested"
    epochs = results.get("epochs", "?")
    missing = "" if (run.path / REPORT).is_file() else f" Its report is missing: convscope report {run.path}."
    return (
        f"{run.path}: finished ({epochs} epoch{'' if epochs == 1 else 's'}, {score}); nothing was changed. "
        f"To train longer: convscope train --resume {run.path} --epochs N (N > {run.config.epochs}).{missing}"
    )


def check_extra(cp: Checkpoint, config: TrainConfig, batches: int, batch_size: int, world_size: int = 1) -> dict:
    """The checkpoint's own values, each checked against the run it is resumed into (trained by `world_size`
    processes); CheckpointError names the first that cannot belong (a hand-edited file, or another run's)."""
    extra, where = cp.extra, cp.path
    total = config.epochs + config.finetune_epochs

    def want(name: str, ok: bool, expected: str) -> None:
        if not ok:
            shown = str(extra.get(name, cp.epoch if name == "epoch" else None))[:60]
            raise CheckpointError(f"{where}: {name} is {shown}, expected {expected} (edited, or from another run?)")

    want("epoch", cp.epoch <= total, f"at most the run's {total} epochs")
    want("batch", _int(extra.get("batch"), 0, batches - 1), f"a batch from 0 to {batches - 1}")
    want("batch", cp.epoch < total or extra["batch"] == 0, "0 after the last epoch")
    want("step", cp.step == cp.epoch * batches + extra["batch"], "epoch × batches per epoch + batch")
    best = extra.get("best")
    want("best", best is None or (_number(best) and math.isfinite(best)), "a finite score or none")
    want("best", (best is None) == (cp.best is None), "a score exactly when best weights are saved")
    want("stale", _int(extra.get("stale"), 0, cp.epoch), f"an epoch count from 0 to {cp.epoch}")
    running = extra.get("running")
    seen_max = extra["batch"] * batch_size * world_size  # counted over every rank
    want(
        "running",
        isinstance(running, list)
        and len(running) == 3
        and _number(running[0])
        and _int(running[1], 0, seen_max)
        and _int(running[2], 0, seen_max),
        "[loss sum, correct, seen] of the epoch so far",
    )
    generator = extra.get("generator")
    want("generator", isinstance(generator, torch.Tensor) and generator.dtype == torch.uint8, "a generator state")
    want("world_size", extra.get("world_size", 1) == world_size, f"{world_size} processes")
    ranks = extra.get("ranks", [])
    want(
        "ranks",
        isinstance(ranks, list)
        and len(ranks) == world_size - 1
        and all(isinstance(r, dict) and all(_bytes(r.get(k)) for k in ("generator", "torch")) for r in ranks),
        f"the random states of ranks 1 to {world_size - 1}" if world_size > 1 else "none (one process)",
    )
    phase = extra.get("phase")
    want("phase", phase == 1 or (phase == 2 and config.finetune_epochs > 0), "1, or 2 in a fine-tuning run")
    schedule = extra.get("schedule")
    want(
        "schedule",
        isinstance(schedule, list)
        and len(schedule) == 2
        and _int(schedule[0], 0, cp.epoch)
        and _int(schedule[1], 1, total - schedule[0]),
        f"[first epoch, epochs] of a learning-rate schedule inside the run's {total} epochs",
    )
    rows = extra.get("metrics")
    want(
        "metrics",
        isinstance(rows, list)
        and len(rows) <= cp.epoch
        and all(isinstance(r, dict) and all(isinstance(k, str) and _number(v) for k, v in r.items()) for r in rows),
        f"a row of numbers per finished epoch (at most {cp.epoch})",
    )
    for name in ("train_seconds", "wall_seconds"):
        value = extra.get(name)
        want(name, _number(value) and 0 <= value < MAX_COUNT, "a number of seconds")
    return extra


def _bytes(value: Any) -> bool:
    return isinstance(value, torch.Tensor) and value.dtype == torch.uint8 and value.dim() == 1


def _int(value: Any, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class Checkpointing:
    """The trainer's checkpoints: saving one (and the copies readers use) and continuing from one. A mixin of the
    trainer (training/trainer.py), whose attributes these methods read and set."""

    def _save(self) -> None:
        """One checkpoint, one atomic file (the previous one stays until it is replaced); then the copies readers use:
        weights/last, weights/best and metrics.csv. A kill between the two leaves copies one step old, which resume
        rewrites from the checkpoint. Several processes: rank 0 writes it, with the other ranks' random states, and
        every rank waits until it is complete."""
        ranks = self.group.rank_states(self.generator)  # a collective: before rank 0 goes its own way
        if not self.group.is_main:
            self.group.barrier()
            return
        now = time.perf_counter()
        extra = {
            "batch": self.batch,
            "best": self.best,
            "stale": self.stale,
            "running": list(self.running),
            "generator": self.generator.get_state(),
            "phase": self.phase,
            "schedule": list(self.schedule),
            "metrics": self.rows,
            "train_seconds": self.seconds["train_seconds"] + now - self.fit_started,
            "wall_seconds": self.seconds["wall_seconds"] + now - self.started,
        }
        if self.tuning is not None:  # the threads and precision in effect: a resumed run continues with them
            extra["tuning"] = self.tuning.to_dict()
        if self.ema is not None:  # the weights' moving average (training/ema.py): its count and tensors
            extra["ema"] = self.ema.state()
        if self.scaler.is_enabled():  # fp16 on CUDA: the loss scale it has found
            extra["grad_scaler"] = self.scaler.state_dict()
        if ranks is not None:
            extra |= {"world_size": self.group.world_size, "ranks": ranks}
        step = self.epoch * self.batches + self.batch
        try:
            save_checkpoint(
                self.run.path / CHECKPOINT,
                model=self.model,
                optimizer=self.optimizer,
                scheduler=self.scheduler,
                epoch=self.epoch,
                step=step,
                extra=extra,
                best=self.best_weights,
            )
            self._write_copies()
        except OutputError as err:  # a full disk: the file named is as it was, and the run resumes from its checkpoint
            raise resumable(err, self.run.path) from None
        self.group.barrier()

    def _write_copies(self) -> None:
        weights = self.run.weights
        save_weights(weights / weights_file("last"), self.evaluated)  # the moving average, with ema_decay
        if self.best_weights is not None:
            atomic_write_bytes(weights / weights_file("best"), safetensors_bytes(self.best_weights))
        write_metrics(self.run.path / METRICS, self.rows)

    def _restore(self, saved: Checkpoint) -> None:
        """Continue from a checkpoint: every value checked against this run first, then everything put back."""
        extra = check_extra(saved, self.config, self.batches, self.config.batch_size, self.group.world_size)
        self._enter_phase(extra["phase"], tuple(extra["schedule"]))
        restore(saved, model=self.model, optimizer=self.optimizer, scheduler=self.scheduler)
        self.epoch, self.batch, self.best, self.stale = saved.epoch, extra["batch"], extra["best"], extra["stale"]
        self.best_weights = saved.best if self.group.is_main else None  # rank 0 keeps and saves them
        self.rows = extra["metrics"]
        self.running = tuple(extra["running"])
        if "tuning" in extra:  # absent in checkpoints of runs that were not tuned: tuned anew
            self.tuning = Tuning.from_dict(extra["tuning"], f"{saved.path}", MAX_THREADS)
        if self.ema is not None:
            self.ema.load_state(extra.get("ema"), str(saved.path))
        if self.scaler.is_enabled() and isinstance(extra.get("grad_scaler"), dict):
            self.scaler.load_state_dict(extra["grad_scaler"])
        # A finished run extended with --epochs: its first segment's test pass counts too (results.json has it).
        earlier = {k: v for k, v in self.run.results().items() if _number(v) and math.isfinite(v)}
        self.seconds = {k: max(extra[k], earlier.get(k, 0.0)) for k in self.seconds}
        try:
            self.generator.set_state(extra["generator"])
            self.group.restore_rank_state(extra.get("ranks"), self.generator)  # ranks 1…: their own draws
        except RuntimeError as e:
            raise CheckpointError(f"{saved.path}: damaged augmentation generator state ({e})") from None
        if self.group.is_main:
            self._write_copies()  # the copies may be one step behind (killed between checkpoint and copies)
        self.resumed_at = (self.epoch, self.batch)
