"""Training progress where learners run it: one bar per epoch that stays with the epoch's numbers, like Keras.

tqdm.auto draws a Jupyter widget in a notebook (with ipywidgets installed; text otherwise) and a text bar on stderr
in a terminal or a plain `python script.py`: a well-kept library for exactly this, rather than our own rendering.
"""

from __future__ import annotations

import math
import sys

from convscope.training.callbacks import Callback

TEST_NAMES = {
    "test_acc": "test accuracy",
    "test_loss": "test loss",
    "test_map50": "test mAP@0.5",
    "test_map50_95": "test mAP@0.5:0.95",
}


def test_numbers(results: dict, keys=tuple(TEST_NAMES)) -> str:
    """results.json's test numbers named in words, e.g. 'test accuracy 91.23%, test loss 0.2512'; '' before testing.
    `keys`: which of TEST_NAMES, in results' order."""
    formats = {"test_acc": "{:.2%}", "test_loss": "{:.4g}"}  # mAPs: "{:.3f}"
    shown = (
        f"{TEST_NAMES[k]} {formats.get(k, '{:.3f}').format(v)}"
        for k, v in results.items()
        if k in keys and isinstance(v, float)
    )
    return ", ".join(shown)


# metrics.csv's columns by the names Keras gives them in `history` (run.history and the bars use these)
KERAS_NAMES = {"train_loss": "loss", "train_acc": "accuracy", "val_loss": "val_loss", "val_acc": "val_accuracy"}


def epoch_numbers(row: dict[str, float]) -> dict[str, str]:
    """An epoch's measured numbers by Keras' names ('loss', 'accuracy', 'val_loss', …), NaN (not measured) left out."""
    out = {}
    for key, value in row.items():
        if key in ("epoch", "lr", "seconds") or not math.isfinite(value):
            continue
        name = KERAS_NAMES.get(key, key)
        out[name] = f"{value:.2%}" if key.endswith("_acc") else f"{value:.4f}"
    return out


def open_bar(**kwargs):
    """A tqdm bar (tqdm.auto's keyword arguments): a widget in Jupyter, text elsewhere. In Jupyter the widget shows
    its text form (text/plain, what a notebook saved, rendered on GitHub or by nbconvert, shows) as it was when first
    displayed: "0%". So it is displayed here with an id, and close_bar() replaces it with the bar's last state."""
    from tqdm.auto import tqdm

    notebook = sys.modules.get("tqdm.notebook")  # imported by tqdm.auto inside a Jupyter kernel only
    if notebook is None or not issubclass(tqdm, notebook.tqdm_notebook):
        return tqdm(**kwargs)  # a text bar (a terminal, a script, Jupyter without ipywidgets)
    from IPython.display import display

    bar = tqdm(display=False, **kwargs)
    bar.shown = display(bar.container, display_id=True)
    return bar


def close_bar(bar) -> None:
    """Close a bar of open_bar; in Jupyter its output becomes its last state (leave=True) or nothing (leave=False)."""
    bar.close()
    shown = getattr(bar, "shown", None)
    if shown is not None:
        # ipywidgets cuts text/plain at 110 characters; the whole line keeps the epoch's last numbers.
        last = {**bar.container._repr_mimebundle_(), "text/plain": str(bar)} if bar.leave else {"text/plain": ""}
        shown.update(last, raw=True)


class EpochBars(Callback):
    """verbose=1: a bar per epoch (kept, with loss, accuracy and the validation numbers); verbose=2: one line per
    epoch, no bar (for logs). Prints; used by convscope.train, never by the library below it."""

    def __init__(self, verbose: int = 1, note: str = ""):
        self.verbose = verbose
        self.note = note  # a line said when training starts (e.g. where the test numbers come from)
        self.bar = None
        self.reading = None
        self.epochs = self.batches = 0
        if verbose == 1:
            # Imported now, before image folders are decoded in threads: tqdm.auto hides its own import-time warning
            # with warnings.catch_warnings, which a reader thread's catch_warnings (files.reader_warnings) can record
            # and show after all (in red, in a notebook: TqdmExperimentalWarning).
            import tqdm.auto  # noqa: F401

    def on_data(self, done: int, total: int) -> None:
        if self.verbose != 1:
            return
        if self.reading is None:
            if done >= total:  # read from the decoded cache at once: nothing to show
                return
            self.reading = open_bar(total=total, desc="reading images", unit="img", leave=False)
        self.reading.update(done - self.reading.n)
        if done >= total:
            close_bar(self.reading)
            self.reading = None

    def on_start(self, run, epochs: int, batches: int, epoch: int) -> None:
        self.epochs, self.batches = epochs, batches
        h, w, c = run.spec.input
        augment, flips = augmentation_of(run)
        mirror = ", test images averaged with their mirror images" if flips else ""
        lines = [
            run.config.recipe_line(),
            f"training {run.spec.name} ({h}×{w}×{c}) on {run.data.name} → {run.path}",
            f"augmentation: {augment}{mirror} (augment='none' turns it off)",
            self.note,
        ]
        print("\n".join(line for line in lines if line), flush=True)

    def on_note(self, line: str) -> None:
        if self.verbose:
            print(line, flush=True)

    def on_batch(self, epoch: int, batch: int, loss: float, accuracy, images_per_s: float) -> None:
        if self.verbose != 1:
            return
        if self.bar is None:
            desc = f"epoch {epoch + 1}/{self.epochs}"
            self.bar = open_bar(total=self.batches, desc=desc, unit="batch", leave=True, dynamic_ncols=True)
        self.bar.update(batch - self.bar.n)
        shown = {"loss": f"{loss:.4f}"} | ({} if accuracy is None else {"accuracy": f"{accuracy:.2%}"})
        self.bar.set_postfix(shown | {"img/s": f"{images_per_s:,.0f}"}, refresh=False)

    def on_epoch(self, row: dict[str, float]) -> None:
        numbers = epoch_numbers(row)
        if self.bar is not None:
            self.bar.set_postfix(numbers, refresh=False)
            self.bar.update(self.bar.total - self.bar.n)
            close_bar(self.bar)
            self.bar = None
        elif self.verbose:
            cells = "  ".join(f"{k} {v}" for k, v in numbers.items())
            print(f"epoch {int(row['epoch'])}/{self.epochs}  {cells}  {row['seconds']:.1f} s", flush=True)

    def on_end(self, run, results: dict) -> None:
        self.close()
        if scores := test_numbers(results):
            print(f"{run.path}: {scores}", flush=True)

    def close(self) -> None:
        for bar in (self.bar, self.reading):
            if bar is not None:
                close_bar(bar)
        self.bar = self.reading = None


def augmentation_of(run) -> tuple[str, bool]:
    """(the augmentation a run trains with, as its report names it: 'flip,translate=2' for a classifier, 'flip,scale'
    for a detector; 'none' for none) and whether its test images are averaged with their mirror images."""
    from convscope.tasks import DetectTask, task_of

    if task_of(run) is DetectTask:
        from convscope.data.detection.augment import AUGMENTS, augments
        from convscope.detect.evaluate import flips_at_test

        chosen = augments(run.config)
        return ",".join(word for word in AUGMENTS if word in chosen) or "none", flips_at_test(run.config)
    return run.config.augmentation().text() or "none", run.config.flips_at_test()
