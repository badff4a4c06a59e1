"""The run's pictures: learning curves and the confusion matrix, as figures (a notebook shows them) and PNG files.

Drawn on `matplotlib.figure.Figure` objects, never through pyplot: the library leaves the user's backend and pyplot's
figure list alone (a notebook's inline backend keeps working).
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter

from convscope.files import dataset_name
from convscope.show import Picture


def curves_figure(rows: list[dict[str, float]], title: str) -> Figure:
    """Loss and accuracy (a detector: validation mAP) per epoch, training and validation, side by side.

    `rows` are the run's metrics.csv rows (`Run.metrics()`); NaN values (epochs not validated) are left out.
    Returns a new 11×4.2 inch Figure at 110 dpi with two axes (loss, then accuracy or mAP); raises KeyError if a row
    lacks a column the panels need.
    """
    epochs = [r["epoch"] for r in rows]
    fig = Picture(figsize=(11, 4.2), dpi=110, layout="constrained")
    ax_loss, ax_acc = fig.subplots(1, 2)
    detector = bool(rows) and "val_map50" in rows[0]
    lines = {  # panel → (label, key) of each line; training first
        ax_loss: [("training (augmented batches)", "train_loss"), ("validation", "val_loss")],
        ax_acc: [("validation mAP@0.5", "val_map50"), ("validation mAP@0.5:0.95", "val_map50_95")]
        if detector
        else [("training (augmented batches)", "train_acc"), ("validation", "val_acc")],
    }
    names = {
        ax_loss: "loss (focal + box L1)" if detector else "loss (cross-entropy)",
        ax_acc: "mAP" if detector else "accuracy",
    }
    for ax, series in lines.items():
        for marker, (label, key) in zip(("o-", "s-"), series, strict=True):
            # Epochs without validation (--val-every) are left out, so the validated ones are joined by a line.
            measured = [(e, r[key]) for e, r in zip(epochs, rows, strict=True) if not math.isnan(r[key])]
            if measured:
                ax.plot(*zip(*measured, strict=True), marker, label=label)
        ax.set_xlabel("epoch")
        ax.set_ylabel(names[ax])
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.legend()
    ax_acc.yaxis.set_major_formatter(PercentFormatter(1.0))
    fig.suptitle(title)
    return fig


def plot_curves(rows: list[dict[str, float]], path: Path, title: str) -> Path:
    """curves_figure saved as a PNG at `path`; returns the path."""
    return curves_figure(rows, title).save(path)


def confusion_figure(evaluation, title: str) -> Figure:
    """The confusion matrix: counts per (true, predicted) class, cells coloured by share of the true class (rows).

    `evaluation` has `.confusion` (n×n counts, rows true) and `.classes` (n names). Counts and class names are written
    in up to 30 classes. Returns a new Figure (110 dpi, sized to the class count) with two axes: the matrix and its
    colorbar.
    """
    m = evaluation.confusion
    n = len(evaluation.classes)
    share = m / np.maximum(m.sum(1, keepdims=True), 1)
    size = max(5.5, 0.62 * n + 2.5)
    fig = Picture(figsize=(size + 1.2, size), dpi=110, layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    if n <= 30:
        for (t, p), count in np.ndenumerate(m):
            if count:
                ax.text(
                    p,
                    t,
                    str(count),
                    ha="center",
                    va="center",
                    fontsize=8 if n <= 12 else 6,
                    color="white" if share[t, p] > 0.6 else "black",
                )
        ax.set_xticks(range(n), evaluation.classes, rotation=45, ha="right")
        ax.set_yticks(range(n), evaluation.classes)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    fig.colorbar(
        image,
        ax=ax,
        fraction=0.046,
        pad=0.04,
        format=PercentFormatter(1.0),
        label="share of the true class",
    )
    ax.set_title(title)
    return fig


def plot_confusion(evaluation, path: Path, title: str) -> Path:
    """confusion_figure saved as a PNG at `path` (cropped to what is drawn); returns the path."""
    return confusion_figure(evaluation, title).save(path, bbox_inches="tight", pad_inches=0.15)


def picture_path(folder: Path, picture: str, data: str | None = None) -> Path:
    """Where an evaluation's picture goes in a run folder: folder/picture for the run's own data (`data` None), else
    folder/STEM-NAME.png (NAME: the other dataset's folder or file name, characters other than letters, digits, '.',
    '_' and '-' made '_'), so that another dataset's picture never replaces the run's own."""
    if data is None:
        return folder / picture
    name = re.sub(r"[^A-Za-z0-9._-]", "_", dataset_name(str(data))) or "data"
    return folder / f"{Path(picture).stem}-{name}.png"
