"""The Task interface is enough for a new task: a regression task written here, not known to convscope, trains with
the same Trainer (checkpoints, metrics, best weights, exact resume) without subclassing or changing it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from convscope.config import TrainConfig
from convscope.errors import Interrupted
from convscope.preprocess import normalise, run_stats, to_tensor
from convscope.run import DataInfo, Run
from convscope.signals import StopRequest
from convscope.spec import Conv, Dense, GlobalPool, NetSpec
from convscope.training.callbacks import Callback
from convscope.training.task import Task
from convscope.training.trainer import Trainer

SPEC = NetSpec(input="12x12x1", layers=[Conv(4, 3), GlobalPool("avg"), Dense(1)], name="brightness")


def images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n noisy gray images and their mean brightness in [0, 1] (what the task learns to say)."""
    rng = np.random.default_rng(seed)
    level = rng.uniform(0.1, 0.9, n)
    pixels = np.clip(level[:, None, None] * 255 + rng.normal(0, 20, (n, 12, 12)), 0, 255).astype(np.uint8)
    return pixels[..., None], (pixels.reshape(n, -1).mean(1) / 255).astype(np.float32)


class BrightnessTask(Task):
    """Regression of an image's mean brightness: MSE, validation loss, no accuracy."""

    counts_correct = False
    validation_keys = ("val_loss",)

    def __init__(self, run, data, device):
        super().__init__(run, data, device)
        (x, y), (vx, vy) = data
        self.x, self.y = to_tensor(x), torch.from_numpy(y)
        self.val = (to_tensor(vx), torch.from_numpy(vy))
        self.train_size = len(self.y)
        self.mean, self.std = run_stats(run)

    def batches(self, index):
        for part in index:
            yield self.x[part], self.y[part]

    def loss(self, model, batch, generator):
        x, y = batch
        return F.mse_loss(model(normalise(x, self.mean, self.std))[:, 0], y), 0, len(y)

    def validate(self, model):
        model.train(False)
        with torch.inference_mode():
            return {
                "val_loss": float(F.mse_loss(model(normalise(self.val[0], self.mean, self.std))[:, 0], self.val[1]))
            }

    def score(self, row):
        return -row["val_loss"]

    def test(self, model, epochs):
        return {"test_loss": self.validate(model)["val_loss"]}


def make_run(path, epochs=6) -> Run:
    config = TrainConfig(model="brightness", data="made-here", epochs=epochs, batch_size=16, lr=0.01, threads=1)
    path.mkdir()
    return Run(path, config, SPEC, DataInfo("made-here", ("brightness",), (0.5,), (0.25,)))


DATA = (images(96, 0), images(32, 1))


def test_a_task_written_outside_convscope_trains_with_the_same_trainer(tmp_path):
    run = make_run(tmp_path / "run")
    Trainer(run, BrightnessTask, data=DATA).fit()
    rows = run.metrics()
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4, 5, 6] and "train_acc" not in rows[0]
    assert rows[-1]["val_loss"] < rows[0]["val_loss"] / 4  # it learned
    results = run.results()
    best = min(r["val_loss"] for r in rows)  # metrics.csv keeps 6 decimals
    assert results["test_loss"] == pytest.approx(best, abs=1e-6)  # the best weights were tested
    assert results["epochs"] == 6 and not results["stopped_early"]


class StopAt(Callback):
    def __init__(self, stop):
        self.stop = stop

    def on_batch(self, epoch, batch, loss, accuracy, images_per_s):
        if (epoch, batch) == (2, 3):
            self.stop.signal = 15  # SIGTERM


def test_the_new_task_stops_and_resumes_exactly(tmp_path):
    straight = make_run(tmp_path / "straight")
    Trainer(straight, BrightnessTask, data=DATA).fit()
    stopped = make_run(tmp_path / "stopped")
    stop = StopRequest()
    try:
        Trainer(stopped, BrightnessTask, [StopAt(stop)], data=DATA).fit(stop)
    except Interrupted as err:
        assert "epoch 3, batch 3/6" in str(err)
    else:
        raise AssertionError("the stop was not honoured")
    Trainer(stopped, BrightnessTask, resuming=True, data=DATA).fit()
    a, b = load_file(straight.weights / "last.safetensors"), load_file(stopped.weights / "last.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    drop = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert drop(stopped.metrics()) == drop(straight.metrics())
