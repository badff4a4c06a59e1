"""The trainer: epochs of batches into a run folder that survives crashes and resumes exactly, for any task.

It owns the loop (epochs, steps, the optimizer and its schedule, the two phases of a pretrained base, checkpoints,
Ctrl-C / SIGTERM, callbacks) and knows nothing of classes or boxes: the task (training/task.py) gives the batches, the
loss of one, the validation entries and the score, and tests at the end.

Randomness has three sources, all restored on resume: the order of the images (a generator seeded by seed and epoch,
so it can be redrawn), the augmentation draws (a CPU generator whose state is saved, so they are the same on every
device), and dropout / initialisation (torch's global generators, CUDA's included, saved with the optimizer state).

Under torchrun it is one of several processes (training/distributed.py): each trains its part of every step's
images through DistributedDataParallel, and rank 0 alone validates, writes and tests.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import signal
import time

import numpy as np
import torch

from convscope.builder import build
from convscope.config import TrainConfig
from convscope.device import autocast, needs_grad_scaler, resolve_device
from convscope.errors import Interrupted, OutputError, TrainingError
from convscope.files import atomic_write_text
from convscope.run import CHECKPOINT, LOG, RESULTS, Run
from convscope.signals import StopRequest
from convscope.training import phases
from convscope.training.callbacks import data_progress
from convscope.training.checkpoint_file import read_checkpoint
from convscope.training.checkpoints import Checkpointing
from convscope.training.distributed import Group, batches_per_epoch, check_world_size, rank_seed, shard
from convscope.training.ema import ModelEMA
from convscope.training.filmstrip import FilmstripWriter
from convscope.training.live import ProgressFile
from convscope.training.runtime import log_file, optimizer_for, scheduler_for
from convscope.training.task import Task
from convscope.training.tuning import Tuned

log = logging.getLogger("convscope.train")


def set_threads(config: TrainConfig, group: Group | None = None) -> None:
    """config.threads, or this process's share of the cores (all of them for one process per machine)."""
    processes = group.local_world_size if group is not None else 1
    torch.set_num_threads(config.threads or max(1, (os.cpu_count() or 1) // processes))


def _peer_gone(err: RuntimeError) -> bool:
    """A collective that failed because another process is gone: gloo's and NCCL's errors (RuntimeError, or
    DistBackendError) name their backend or the broken connection."""
    text = str(err)
    return isinstance(err, torch.distributed.DistError) or any(
        word in text for word in ("gloo", "Gloo", "NCCL", "Connection reset", "Connection closed")
    )


class Trainer(Checkpointing, Tuned):
    """Trains `run` with `task_class`'s task: `Trainer(run, ClassifyTask, callbacks).fit()`.

    `data`: the task's dataset when the caller loaded it already (a new run); a resumed run (`resuming`) reads its
    checkpoint first (a damaged or foreign one is refused before any data is read), then its data.
    `group`: this process's place among torchrun's workers (default: one process alone), its process group joined.
    """

    def __init__(
        self,
        run: Run,
        task_class: type[Task],
        callbacks=(),
        resuming=False,
        data=None,
        started: float | None = None,
        group: Group | None = None,
    ):
        self.run, self.callbacks, self.config = run, list(callbacks), run.config
        self.started = time.perf_counter() if started is None else started  # of this segment, for wall_seconds
        self.group = group = group or Group()
        cfg = self.config
        self.device = group.device or resolve_device(cfg.device)
        set_threads(cfg, group)
        torch.manual_seed(cfg.seed)  # every rank: the same initial weights
        np.random.seed(cfg.seed % 2**32)
        saved = self._read_checkpoint() if resuming else None
        if data is None:
            data = group.main_first(lambda: task_class.load_data(cfg, run.spec, data_progress(self.callbacks)))
        self.task = task_class(run, data, self.device)
        # channels_last: the memory order oneDNN's CPU convolutions and CUDA's tensor cores are fastest with.
        self.model = build(run.spec).to(self.device, memory_format=torch.channels_last)
        if cfg.sync_bn and group.distributed:  # BatchNorm over the global batch (CUDA only: train() checks)
            self.model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
        if group.rank:  # the other ranks draw their own dropout masks
            torch.manual_seed(rank_seed(cfg.seed, group.rank))
        # ema_decay: the weights' moving average, which validation, the test and the saved weights use (training/ema.py)
        self.ema = ModelEMA(self.model, cfg.ema_decay, cfg.ema_tau) if cfg.ema_decay else None
        self.scaler = torch.amp.GradScaler("cuda", enabled=needs_grad_scaler(self.device, cfg.precision))
        self.train_size = self.task.train_size
        self.total_epochs = cfg.epochs + cfg.finetune_epochs
        self.batches = batches_per_epoch(self.train_size, cfg.batch_size, group.world_size)
        # Augmentation draws: on the CPU, so they are the same on every device; one stream per rank.
        self.generator = torch.Generator().manual_seed(rank_seed(cfg.seed, group.rank))
        self.epoch, self.batch, self.best, self.stale = 0, 0, None, 0
        self.best_weights: dict[str, torch.Tensor] | None = None  # a copy of the weights that scored `best`
        self.rows: list[dict[str, float]] = []  # metrics.csv
        self.seconds = {"train_seconds": 0.0, "wall_seconds": 0.0}  # of earlier segments of a resumed run
        self.running = (0.0, 0, 0)  # loss sum, correct, seen of the epoch so far (kept when stopped mid-epoch)
        self.stop = StopRequest()
        # What a watcher reads while it trains (rank 0 writes): progress.json and the film strip's snapshots
        self.live = ProgressFile(run.path, self.total_epochs, self.batches, self.task.counts_correct, group.is_main)
        self.filmstrip = FilmstripWriter(run, self.task.probe_image(), self.total_epochs) if group.is_main else None
        self.resumed_at: tuple[int, int] | None = None  # (epoch, batch) a resumed run continues from
        if saved is None:
            if resuming:  # killed before the first checkpoint: start again; the seeded start is the one it had
                log.info("%s has no checkpoint yet: training starts from the beginning", run.path)
            self._enter_phase(1)
        else:
            self._restore(saved)

    def _read_checkpoint(self):
        """The checkpoint a resumed run continues from (None: killed before its first one). Rank 0 reads it first
        and decides whether there is one; the others read the same file (a run folder on a shared file system)."""
        path = self.run.path / CHECKPOINT
        if not self.group.on_main(path.exists):
            return None

        def read():
            saved = read_checkpoint(path)
            check_world_size(saved.extra.get("world_size", 1), self.group, self.config.batch_size, path)
            return saved

        return self.group.main_first(read)

    def _enter_phase(self, phase: int, schedule: tuple[int, int] | None = None) -> None:
        """A phase (training/phases.py) begins: its trainable layers, an optimizer over them and its learning-rate
        schedule. `schedule`: (first epoch, epochs) of the schedule; by default the whole phase."""
        self.phase = phase
        phases.enter(self.model, self.config, phase)
        self.optimizer = optimizer_for(self.model, self.config, phases.learning_rate(self.config, phase))
        self.net = self.group.wrap(self.model)  # what trains: DDP over the parameters that train in this phase
        self._new_schedule(*(schedule or phases.schedule(self.config, phase)))

    def _new_schedule(self, first: int, epochs: int) -> None:
        """A learning-rate schedule over `epochs` epochs from epoch `first` (0-based) on the current optimizer."""
        self.schedule = (first, epochs)
        lr = phases.learning_rate(self.config, self.phase)
        self.scheduler = scheduler_for(self.optimizer, self.config, self.batches, epochs, lr)

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
            if self.group.is_main:  # one writer: the others log only to their terminal
                stack.enter_context(log_file(self.run.path / LOG))
            self._log_start()
            try:
                self._epochs()
                seconds = self.seconds["train_seconds"] + time.perf_counter() - self.fit_started
                results = self.group.on_main(lambda: self._finish(train_seconds=seconds))  # the others wait for it
            except KeyboardInterrupt:
                if self.stop.signal is None:
                    raise
                raise self._interrupted() from None  # outside the loop: the last checkpoint is complete
            except RuntimeError as err:
                if self.group.distributed and _peer_gone(err):  # a peer died (killed, out of memory) or hung
                    raise self._lost_peers(err) from None
                raise
            finally:
                self.net = self.model  # DDP lets go of the process group, which the caller ends
        for cb in self.callbacks:
            cb.on_end(self.run, results)
        return self.run

    def _log_start(self) -> None:
        from convscope.device import device_line, precision_line

        cfg = self.config
        log.info(
            "training %s on %s: %d images, %d batches of %d per epoch",
            self.run.spec.name,
            self.run.data.name,
            self.train_size,
            self.batches,
            cfg.batch_size * self.group.world_size,  # the step's images over every process (said next)
        )
        # precision_line is '' on the CPU, where the tuning line says it (training/tuning.py)
        lines = (cfg.recipe_line(), self.group.line(cfg.batch_size), precision_line(self.device, cfg.precision))
        for line in (*lines, device_line(self.device)):
            if line:
                log.info("%s", line)
        if self.resumed_at is not None:
            log.info("resuming %s at epoch %d, batch %d", self.run.path, self.resumed_at[0] + 1, self.resumed_at[1])
        if line := phases.describe(self.model, self.phase):  # said again now that train.log is open
            log.info("%s", line)
        self.task.log_data_notes()
        for line in self.task.data_lines():
            for cb in self.callbacks:
                if hasattr(cb, "on_note"):  # the CLI's and the notebook's progress show it
                    cb.on_note(line)

    def _epochs(self) -> None:
        if self.filmstrip is not None and self.epoch == self.batch == 0:  # the untrained network
            self.filmstrip.snapshot(self.evaluated, 0)
        self.task.start_phase(self.model, self.phase, self.epoch)
        self._choose(restored=self.resumed_at is not None)
        self.stop.armed = True  # from here a signal only asks the loop to stop at the end of a batch
        try:
            while self.epoch < self.total_epochs:
                if self._early_stop():
                    if self.phase == 2 or not self.config.finetune_epochs:
                        break
                    log.info("no better validation score for %d epochs: on to fine-tuning", self.stale)
                    self.epoch = self.config.epochs
                if self.phase == 1 and self.epoch >= self.config.epochs:
                    self._enter_phase(2)
                    self.task.start_phase(self.model, 2, self.epoch)
                    self._choose(restored=False)
                    self.stale = 0
                elif self.epoch >= sum(self.schedule):  # epochs added by --resume --epochs: a schedule of their own
                    log.info("epochs %d to %d: a new learning-rate schedule", self.epoch + 1, self.config.epochs)
                    self._new_schedule(self.epoch, self.config.epochs - self.epoch)
                row = self._epoch()
                for cb in self.callbacks:
                    cb.on_epoch(row)
                if self.group.any(self.stop.signal is not None):  # asked in the last batch, validation or save
                    raise self._interrupted()
        finally:
            self.stop.armed = False

    def _early_stop(self) -> bool:
        return self.config.patience is not None and self.stale >= self.config.patience

    def _epoch(self) -> dict[str, float]:
        cfg, model, task = self.config, self.model, self.task
        order = torch.randperm(self.train_size, generator=torch.Generator().manual_seed(cfg.seed * 1009 + self.epoch))
        model.train()
        loss_sum, correct, seen = self.running if self.batch else (0.0, 0, 0)  # a resumed epoch goes on counting
        t0 = time.perf_counter()
        self.live.epoch_started(self.epoch, self.batch)
        steps = shard(order, cfg.batch_size, self.group.rank, self.group.world_size)[self.batch :]
        for (_, weight), batch in zip(steps, task.batches([index for index, _ in steps]), strict=True):
            started = time.perf_counter()
            with autocast(self.device, self.precision):
                loss, right, images = task.loss(self.net, batch, self.generator)
            # The step's numbers over every rank, before the step: a loss that is not finite stops them all here.
            total, right, images = self.group.sum([loss.item() * images, right, images])
            right, images = int(right), int(images)
            value = total / images  # the step's mean loss
            if not math.isfinite(value):
                raise TrainingError(
                    f"the loss became {value} at epoch {self.epoch + 1}, batch {self.batch + 1} "
                    f"(step {self.epoch * self.batches + self.batch + 1}); try a smaller --lr"
                    + (f". The checkpoint of epoch {self.epoch} is kept" if self.epoch else "")
                )
            self.optimizer.zero_grad(set_to_none=True)
            # weight: this rank's share of the step's images (1 unless the last batch splits unevenly); scaled only
            # for fp16 on CUDA
            self.scaler.scale(loss * weight if weight != 1 else loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.scheduler.step()
            if self.ema is not None:
                self.ema.update(self.model)
            self._step_done(images, time.perf_counter() - started)  # a busy machine: re-check the threads
            self.batch += 1
            loss_sum += total
            correct += right
            seen += images
            accuracy = correct / seen if task.counts_correct else None
            self.live.batch(self.epoch, self.batch, images, loss_sum, correct, seen, self.phase)
            for cb in self.callbacks:
                cb.on_batch(self.epoch, self.batch, value, accuracy, seen / (time.perf_counter() - t0))
            # Every rank stops at the same step: each saw the request, or one did (torchrun signals them all).
            if self.group.any(self.stop.signal is not None) and self.batch < self.batches:
                self.running = (loss_sum, correct, seen)
                self._save()
                raise self._interrupted()
        seconds = time.perf_counter() - t0
        row = {"epoch": self.epoch + 1, "train_loss": loss_sum / max(seen, 1)}
        if task.counts_correct:
            row["train_acc"] = correct / max(seen, 1)
        if self._validation_due():  # once, on rank 0; every rank needs the score (the best epoch, patience)
            row |= self.group.on_main(lambda: task.validate(self.evaluated))
        else:
            row |= dict.fromkeys(task.validation_keys, math.nan)
        row |= {"lr": self.scheduler.get_last_lr()[0], "seconds": seconds}
        score = task.score(row)
        self.epoch, self.batch, self.running = self.epoch + 1, 0, (0.0, 0, 0)
        if math.isnan(score):  # not validated this epoch (val_every): neither better nor counted by patience
            pass
        elif self.best is None or score > self.best:
            self.best, self.stale = score, 0
            if self.group.is_main:  # the one that saves them
                self.best_weights = {k: v.detach().clone() for k, v in self.evaluated.state_dict().items()}
        else:
            self.stale += 1
        self.rows.append(row)
        if self.filmstrip is not None:  # before the checkpoint: a checkpointed epoch has its snapshot
            self.filmstrip.snapshot(self.evaluated, self.epoch)
        self._save()
        self.live.epoch_done(row, self.phase)
        shown = ", ".join(f"{k} {v:.4f}" for k, v in row.items() if k not in ("epoch", "lr", "seconds"))
        log.info("epoch %d/%d: %s (%.1f s)", row["epoch"], self.total_epochs, shown, seconds)
        return row

    @property
    def evaluated(self) -> torch.nn.Module:
        """What validation scores and weights/best and weights/last hold: the weights' moving average (ema_decay),
        else the model itself."""
        return self.ema.module if self.ema is not None else self.model

    def _validation_due(self) -> bool:
        """Validate after every val_every epochs, and after the last epoch of each phase."""
        done, cfg = self.epoch + 1, self.config
        return done % cfg.val_every == 0 or done in (cfg.epochs, self.total_epochs)

    def _interrupted(self) -> Interrupted:
        name = signal.Signals(self.stop.signal).name
        if not (self.run.path / CHECKPOINT).exists():  # stopped before the first one (e.g. caching a base's features)
            return Interrupted(f"stopped by {name} before the first checkpoint: nothing to resume", self.stop.exit_code)
        where = f"epoch {self.epoch + 1}, batch {self.batch}/{self.batches}" if self.batch else f"epoch {self.epoch}"
        how = f"--nproc {self.group.world_size} " if self.group.distributed else ""
        stopped = f"stopped by {name} at {where}; saved."
        resume = f"Resume with: convscope train {how}--resume {self.run.path}"
        log.info("%s %s", stopped, resume)  # train.log says how the training ended (the terminal gets the error)
        return Interrupted(
            f"{stopped} {resume}",
            self.stop.exit_code,
            stopped,
            self.run.path,
        )

    def _lost_peers(self, err: Exception) -> TrainingError:
        """A collective failed: another rank died (killed, out of memory) or stopped answering. Nothing is saved
        (the step is half done); the last checkpoint is complete, and every rank resumes from it."""
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        kept = f"the checkpoint of epoch {self.epoch} is kept" if self.epoch else "there is no checkpoint yet"
        return TrainingError(
            f"rank {self.group.rank}: lost the other processes at epoch {self.epoch + 1}, batch {self.batch + 1} "
            f"({reason}); {kept}. Resume with: convscope train --nproc {self.group.world_size} --resume "
            f"{self.run.path}"
        )

    def write_report(self) -> None:
        """report.html and its pictures, from the test pass just made (not a second one). Raises OutputError when
        they cannot be written (a full disk), saying that the training itself is saved and how to draw it again."""
        try:
            self.task.write_report()
        except OutputError as err:
            path = self.run.path
            raise OutputError(
                f"{err}; the training itself is saved in {path} (`convscope report {path}` draws the report again)"
            ) from None

    def _finish(self, train_seconds: float) -> dict:
        """Test the best weights and write results.json. `train_seconds`: of the epochs, over every segment of a
        resumed run (wall_seconds adds up the whole commands, data loading and tests included). Rank 0 only."""
        if self.best_weights is not None:
            self.model.load_state_dict(self.best_weights)
        elif self.ema is not None:  # never validated: the moving average of the last step
            self.model.load_state_dict(self.ema.weights())
        results = {**self.task.test(self.model, self.epoch), "epochs": self.epoch, "train_seconds": train_seconds}
        results["stopped_early"] = self.epoch < self.total_epochs
        results["wall_seconds"] = self.seconds["wall_seconds"] + time.perf_counter() - self.started
        atomic_write_text(self.run.path / RESULTS, json.dumps(results, indent=2) + "\n")
        return results
