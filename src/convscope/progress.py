"""The CLI's view of training: a rich progress bar with ETA, loss, accuracy and images/s, and a line per epoch."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from convscope.training.callbacks import Callback


class ProgressBar(Callback):
    def __init__(self, console: Console):
        self.console = console
        self.progress = Progress(
            TextColumn("epoch {task.fields[epoch]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4f}  {task.fields[acc]}  {task.fields[speed]:,.0f} img/s"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
            transient=True,
            disable=not console.is_terminal,  # a pipe or a log file gets the epoch lines, not bar frames
        )
        self.task = None
        self.epochs = self.batches = 0
        self.loading = None  # the "reading images" bar, while a folder is decoded

    def on_data(self, done, total):
        if self.loading is None:
            if done >= total:  # all at once: read from the decoded cache, nothing to show
                return
            self.loading = Progress(
                TextColumn("reading images"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=self.console,
                transient=True,
                disable=not self.console.is_terminal,
            )
            self.loading.start()
            self.loading_task = self.loading.add_task("read", total=total)
        self.loading.update(self.loading_task, completed=done, total=total)
        if done >= total:
            self.loading.stop()
            self.loading = None

    def on_start(self, run, epochs, batches, epoch):
        from convscope.device import device_line, precision_line, resolve_device

        self.epochs, self.batches = epochs, batches
        device = resolve_device(run.config.device)
        # Said once training starts, not before: a refused command prints only its one-line error.
        # (on the CPU, the threads and precision the trainer chooses are said by on_note, once chosen)
        for line in (run.config.recipe_line(), precision_line(device, run.config.precision), device_line(device)):
            if line:
                self.console.print(line, style="dim", highlight=False)
        h, w, c = run.spec.input
        self.console.print(f"training {run.spec.name} ({h}×{w}×{c}) on {run.data.name} → {run.path}")
        self.progress.start()
        self.task = self.progress.add_task(
            "train",
            total=epochs * batches,
            completed=epoch * batches,
            epoch=f"{epoch + 1}/{epochs}",
            loss=0.0,
            acc="",
            speed=0.0,
        )

    def on_note(self, line):
        self.progress.console.print(line, style="dim", highlight=False)

    def on_batch(self, epoch, batch, loss, accuracy, images_per_s):
        self.progress.update(
            self.task,
            completed=epoch * self.batches + batch,
            epoch=f"{epoch + 1}/{self.epochs}",
            loss=loss,
            acc="" if accuracy is None else f"acc {accuracy:.2%}",
            speed=images_per_s,
        )

    def on_epoch(self, row):
        # NaN: not measured this epoch (no validation split, or not a --val-every epoch): left out, not shown as nan
        cells = (_cell(k, v) for k, v in row.items() if k not in ("epoch", "lr", "seconds") and v == v)
        shown = "  ".join(cells)
        self.progress.console.print(f"epoch {int(row['epoch'])}/{self.epochs}  {shown}  {row['seconds']:.1f} s")

    def on_end(self, run, results):
        self.progress.stop()

    def close(self):
        if self.loading is not None:  # stopped while reading
            self.loading.stop()
        if self.task is not None:  # a bar never started would still print an empty line when stopped
            self.progress.stop()


SHOWN_AS = {"val_map50": "val mAP@0.5", "val_map50_95": "val mAP@0.5:0.95"}


def _cell(key: str, value: float) -> str:
    """'train_acc', 0.91 → 'acc 91.00%'; 'val_loss', 0.3 → 'val loss 0.3000'; 'val_map50', 0.9 → 'val mAP@0.5 0.900'."""
    name = SHOWN_AS.get(key) or key.removeprefix("train_").replace("_", " ")
    if key.endswith("_acc"):
        return f"{name} {value:.2%}"
    return f"{name} {value:.4f}" if key.endswith("_loss") else f"{name} {value:.3f}"
