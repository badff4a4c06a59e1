"""The weights' moving average (ema_decay, training/ema.py): its arithmetic, that validation and the saved weights
use it, and that a run stopped mid-epoch or killed at a checkpoint resumes to the bit-identical average."""

from __future__ import annotations

import math

import pytest
import torch
from fault_harness import Killed, again, differences, outcome, run_with_fault
from fault_harness import write_boundaries as boundaries
from helpers import StopRequestAt, make_folder
from safetensors.torch import load_file

from convscope.config import TrainConfig
from convscope.errors import CheckpointError, ConfigError, Interrupted
from convscope.run import CHECKPOINT
from convscope.signals import StopRequest
from convscope.tasks.train import train
from convscope.training.checkpoint_file import read_checkpoint
from convscope.training.ema import ModelEMA


def test_each_update_moves_the_average_by_the_ramped_decay():
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    ema = ModelEMA(model, decay=0.9, tau=4.0)
    start = {k: v.clone() for k, v in ema.module.state_dict().items()}
    with torch.no_grad():
        model[0].weight.add_(1.0)
        model[1].running_mean.fill_(2.0)
        model[1].num_batches_tracked.fill_(7)
    ema.update(model)
    d = 0.9 * (1 - math.exp(-1 / 4))  # 0.199…: the ramp's first step
    assert ema.rate() == pytest.approx(d)
    got = ema.module.state_dict()
    torch.testing.assert_close(got["0.weight"], d * start["0.weight"] + (1 - d) * model[0].weight)
    torch.testing.assert_close(got["1.running_mean"], torch.full((2,), (1 - d) * 2.0))
    assert int(got["1.num_batches_tracked"]) == 7  # integers are copied, not averaged
    for _ in range(99):
        ema.update(model)
    assert ema.updates == 100 and ema.rate() == pytest.approx(0.9, abs=1e-9)
    assert not any(p.requires_grad for p in ema.module.parameters())


def test_a_state_that_does_not_fit_is_one_line_naming_the_file():
    ema = ModelEMA(torch.nn.Linear(3, 2), decay=0.9, tau=4.0)
    for bad in (None, {"updates": 3}, {"updates": -1, "weights": ema.state()["weights"]},
                {"updates": 1, "weights": {"weight": torch.zeros(2, 3)}}):  # fmt: skip
        with pytest.raises(CheckpointError, match=r"^run/checkpoint\.safetensors: expected the weights' moving"):
            ema.load_state(bad, "run/checkpoint.safetensors")
    other = ModelEMA(torch.nn.Linear(3, 2), decay=0.9, tau=4.0)
    other.update(torch.nn.Linear(3, 2))
    ema.load_state(other.state(), "x")
    assert ema.updates == 1 and torch.equal(ema.module.weight, other.module.weight)


@pytest.mark.parametrize(
    ("key", "value"), [("ema_decay", 1.0), ("ema_decay", -0.1), ("ema_tau", 0), ("giou_weight", -1)]
)
def test_the_settings_are_checked(key, value):
    with pytest.raises(ConfigError, match=key):
        TrainConfig(**{key: value})


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_folder(tmp_path_factory.mktemp("images"), per_class=40)


def _train(folder, out, **kw):
    settings = {"model": "lenet5", "data": str(folder), "epochs": 2, "batch_size": 16, "threads": 1}
    settings |= {"precision": "fp32", "ema_decay": 0.9, "ema_tau": 3.0}
    return train(**(settings | kw), out=str(out), report=False)


@pytest.fixture(scope="module")
def straight(folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "straight"
    _, calls = boundaries(lambda: _train(folder, out), out)
    return outcome(out), calls


def test_the_saved_weights_are_the_average_and_the_checkpoint_keeps_both(folder, straight, tmp_path):
    expected, _ = straight
    plain = _train(folder, tmp_path / "plain", ema_decay=0.0)
    saved = read_checkpoint(tmp_path / "plain" / CHECKPOINT)
    assert "ema" not in saved.extra
    last = expected["weights"]["last.safetensors"]
    raw = plain.weights / "last.safetensors"
    assert all(torch.equal(v, load_file(raw)[k]) for k, v in saved.model.items())  # without EMA: the model itself
    # With EMA, the same training steps (the average does not touch them): the raw weights equal the plain run's,
    # and weights/last is their average, which is not the raw weights.
    out = tmp_path / "again"
    _train(folder, out)
    cp = read_checkpoint(out / CHECKPOINT)
    assert cp.extra["ema"]["updates"] == cp.step > 0
    assert all(torch.equal(cp.model[k], saved.model[k]) for k in saved.model)
    assert all(torch.equal(last[k], cp.extra["ema"]["weights"][k]) for k in last)
    assert any(not torch.equal(last[k], cp.model[k]) for k in last if k.endswith("weight"))


def test_a_run_stopped_mid_epoch_resumes_to_the_identical_average(folder, straight, tmp_path):
    expected, _ = straight
    out, stop = tmp_path / "stopped", StopRequest()
    with pytest.raises(Interrupted, match="epoch 2, batch 2/"):
        _train(folder, out, stop=stop, callbacks=[StopRequestAt(stop, 1, 2)])
    assert read_checkpoint(out / CHECKPOINT).extra["ema"]["updates"] > 0
    train(resume=out, report=False)
    assert not (problems := differences(outcome(out), expected)), problems


def test_a_run_killed_at_its_checkpoint_resumes_to_the_identical_average(folder, straight, tmp_path):
    expected, calls = straight
    k = [i for i, call in enumerate(calls, start=1) if call == CHECKPOINT][0]
    out = tmp_path / "run"
    error, _ = run_with_fault(lambda: _train(folder, out), out, k + 1, "kill-before")  # after the first checkpoint
    assert isinstance(error, Killed)
    again(out, lambda: _train(folder, out))
    assert not (problems := differences(outcome(out), expected)), problems
