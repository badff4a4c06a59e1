"""val_every: validation after every N epochs and after the last epoch of each phase; the best checkpoint is chosen
among the validated epochs, and patience counts validations."""

import math

from helpers import make_folder

from convscope.run import load_run
from convscope.tasks import ClassifyTask
from convscope.tasks.train import train


def test_validation_runs_every_n_epochs_and_at_the_end(tmp_path):
    folder = make_folder(tmp_path / "images", per_class=40)
    run = train(
        model="lenet5", data=str(folder), epochs=5, val_every=2, batch_size=16, threads=1, out=str(tmp_path / "r"),
        report=False,
    )  # fmt: skip
    rows = load_run(run.path).metrics()
    validated = [int(row["epoch"]) for row in rows if not math.isnan(float(row["val_acc"]))]
    assert validated == [2, 4, 5]
    assert all(math.isnan(float(row["val_loss"])) for row in rows if int(row["epoch"]) in (1, 3))


def test_patience_counts_validations_not_epochs(tmp_path, monkeypatch):
    folder = make_folder(tmp_path / "images", per_class=40)
    # Every validation scores the same, so the first one is the best and each later one is stale.
    monkeypatch.setattr(ClassifyTask, "score", lambda self, row: math.nan if math.isnan(row["val_acc"]) else 0.5)
    run = train(
        model="lenet5", data=str(folder), epochs=12, val_every=3, patience=1, batch_size=16, threads=1,
        out=str(tmp_path / "r"), report=False,
    )  # fmt: skip
    rows = load_run(run.path).metrics()
    # Validated at 3 (the best) and 6 (not better): one stale validation stops it after epoch 6, not epoch 4.
    assert [int(row["epoch"]) for row in rows] == [1, 2, 3, 4, 5, 6]


def test_the_epoch_line_leaves_out_what_was_not_measured():
    from rich.console import Console

    from convscope.progress import ProgressBar

    console = Console(record=True, width=200)
    bar = ProgressBar(console)
    bar.epochs = 5
    bar.on_epoch({"epoch": 1, "train_loss": 0.5, "val_loss": math.nan, "val_acc": math.nan, "lr": 0.1, "seconds": 2})
    bar.on_epoch({"epoch": 2, "train_loss": 0.4, "val_loss": 0.3, "val_acc": 0.9, "lr": 0.1, "seconds": 2})
    lines = console.export_text().splitlines()
    assert lines == ["epoch 1/5  loss 0.5000  2.0 s", "epoch 2/5  loss 0.4000  val loss 0.3000  val acc 90.00%  2.0 s"]
