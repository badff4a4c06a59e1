"""The CLI's view of training: a rich progress bar with ETA, loss, accuracy and images/s, and a line per epoch."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from convscope.training.loop import Callback


class ProgressBar(Callback):
    def __init__(self, console: Console):
        self.console = console
        self.progress = Progress(
            TextColumn("epoch {task.fields[epoch]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4f}  acc {task.fields[acc]:.2%}  {task.fields[speed]:,.0f} img/s"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        )
        self.task = None
        self.epochs = self.batches = 0

    def on_start(self, run, epochs, batches, epoch):
        self.epochs, self.batches = epochs, batches
        h, w, c = run.spec.input
        self.console.print(f"training {run.spec.name} ({h}×{w}×{c}) on {run.data.name} → {run.path}")
        self.progress.start()
        self.task = self.progress.add_task(
            "train",
            total=epochs * batches,
            completed=epoch * batches,
            epoch=f"{epoch + 1}/{epochs}",
            loss=0.0,
            acc=0.0,
            speed=0.0,
        )

    def on_batch(self, epoch, batch, loss, accuracy, images_per_s):
        self.progress.update(
            self.task,
            completed=epoch * self.batches + batch,
            epoch=f"{epoch + 1}/{self.epochs}",
            loss=loss,
            acc=accuracy,
            speed=images_per_s,
        )

    def on_epoch(self, row):
        self.progress.console.print(
            f"epoch {int(row['epoch'])}/{self.epochs}  loss {row['train_loss']:.4f}  acc {row['train_acc']:.2%}  "
            f"val loss {row['val_loss']:.4f}  val acc {row['val_acc']:.2%}  {row['seconds']:.1f} s"
        )

    def on_end(self, run, results):
        self.progress.stop()

    def close(self):
        self.progress.stop()
