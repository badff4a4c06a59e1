"""progress.json: where a training is inside its epoch, for whoever watches the run folder (the studio's run page).

The trainer's one writer (rank 0 under torchrun) replaces RUN/progress.json atomically at most once every `EVERY`
seconds while an epoch runs, and always at an epoch's end. It holds:

    epoch, epochs          the epoch running (1-based) and the epochs planned (both phases)
    batch, batches         batches done in this epoch, and the batches of an epoch
    images_per_s           training images per second in this epoch so far (this process's segment of it)
    eta_epoch_s, eta_run_s seconds left in this epoch and in the whole training (the test at the end not included)
    train_loss, train_acc  the mean loss and accuracy of this epoch's batches so far (train_acc null for a detector)
    phase, stage           1 or 2 (a pretrained base: head, then fine-tuning); 'training', 'epoch done', 'testing'
    updated                when it was written (seconds since 1970)

A batch costs one clock reading here; a write (a few hundred bytes) happens once a second at most: no slowdown.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from convscope.errors import OutputError
from convscope.files import atomic_write_text
from convscope.run import PROGRESS
from convscope.training.checkpoints import resumable

EVERY = 1.0  # seconds between two writes while an epoch runs


class ProgressFile:
    """RUN/progress.json, written by the trainer (see the module's docstring). `enabled`: False on every rank but
    the writer, where each call returns at once."""

    def __init__(self, folder: Path, epochs: int, batches: int, counts_correct: bool = True, enabled: bool = True):
        self.path, self.epochs, self.batches, self.enabled = Path(folder) / PROGRESS, epochs, batches, enabled
        self.counts_correct = counts_correct  # the task counts right answers: a training accuracy exists
        self.started = self.last = time.monotonic()
        self.first_batch, self.images = 0, 0  # where this process began the epoch, and the images it trained since
        self.epoch_seconds: list[float] = []  # whole epochs timed in this process (training, validation, saving)

    def epoch_started(self, epoch: int, batch: int) -> None:
        """Epoch `epoch` (0-based) begins, or resumes at `batch`."""
        self.started = self.last = time.monotonic()
        self.first_batch, self.images = batch, 0

    def batch(self, epoch: int, batch: int, images: int, loss_sum: float, correct: int, seen: int, phase: int) -> None:
        """Batch `batch` (1-based) of epoch `epoch` (0-based) is done: `images` trained in it; `loss_sum`, `correct`
        and `seen` of the epoch so far. Written when EVERY seconds have passed since the last write."""
        if not self.enabled:
            return
        self.images += images
        now = time.monotonic()
        if now - self.last < EVERY:
            return
        self.last = now
        self._write(epoch + 1, batch, now, loss_sum, correct if self.counts_correct else None, seen, phase, "training")

    def epoch_done(self, row: dict[str, float], phase: int) -> None:
        """The epoch of `row` (its 'epoch' 1-based) ended: its numbers, 'testing' after the last one."""
        if not self.enabled:
            return
        now = time.monotonic()
        self.epoch_seconds.append(now - self.started)
        epoch = int(row["epoch"])
        stage = "testing" if epoch >= self.epochs else "epoch done"
        self._write(epoch, self.batches, now, None, None, 0, phase, stage, row)

    def _write(self, epoch, batch, now, loss_sum, correct, seen, phase, stage, row=None) -> None:
        elapsed = max(now - self.started, 1e-9)
        done = batch - self.first_batch  # batches this process trained in this epoch
        per_batch = elapsed / done if done > 0 else None
        eta_epoch = 0.0 if batch >= self.batches else (self.batches - batch) * per_batch if per_batch else None
        later = self.epochs - epoch  # whole epochs after this one
        if self.epoch_seconds:  # whole epochs as they were timed (validation and saving included)
            per_epoch = sum(self.epoch_seconds) / len(self.epoch_seconds)
        else:
            per_epoch = self.batches * per_batch if per_batch else None
        eta_run = None if eta_epoch is None or per_epoch is None else eta_epoch + later * per_epoch
        if row is None:
            loss = loss_sum / seen if seen else None
            accuracy = correct / seen if seen and correct is not None else None
        else:
            loss, accuracy = row.get("train_loss"), row.get("train_acc")
        body = {
            "epoch": epoch,
            "epochs": self.epochs,
            "batch": batch,
            "batches": self.batches,
            "images_per_s": _rounded(self.images / elapsed),
            "eta_epoch_s": _rounded(eta_epoch),
            "eta_run_s": _rounded(eta_run),
            "train_loss": _rounded(loss, 6),
            "train_acc": _rounded(accuracy, 6),
            "phase": phase,
            "stage": stage,
            "updated": round(time.time(), 3),
        }
        try:
            atomic_write_text(self.path, json.dumps(body) + "\n")
        except OutputError as err:  # a full disk stops the training as a checkpoint's write would
            raise resumable(err, self.path.parent) from None


def _rounded(value: float | None, digits: int = 2) -> float | None:
    """`value` rounded, None when there is none or it is not finite (JSON carries no NaN)."""
    if value is None or value != value or value in (float("inf"), float("-inf")):
        return None
    return round(float(value), digits)
