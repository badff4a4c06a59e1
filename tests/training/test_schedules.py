"""Every schedule works for any number of steps: one-cycle used to divide by zero below 8 steps."""

import math

import pytest
import torch
from helpers import make_folder
from hypothesis import given
from hypothesis import strategies as st

from convscope.config import SCHEDULES, TrainConfig
from convscope.tasks.train import train
from convscope.training.runtime import scheduler_for


@given(epochs=st.integers(1, 8), batches=st.integers(1, 8), schedule=st.sampled_from(SCHEDULES))
def test_every_schedule_runs_any_epochs_times_batches(epochs, batches, schedule):
    model = torch.nn.Linear(2, 1)
    opt = torch.optim.AdamW(model.parameters(), lr=0.01)
    sched = scheduler_for(opt, TrainConfig(schedule=schedule), batches, epochs, 0.01)
    lrs = []
    for _ in range(epochs * batches):
        opt.step()
        sched.step()
        lrs.append(sched.get_last_lr()[0])
    assert all(math.isfinite(lr) and 0 < lr <= 0.01 + 1e-12 for lr in lrs)
    if schedule == "onecycle" and epochs * batches >= 2:
        assert max(lrs) >= 0.008 and lrs[-1] < max(lrs)  # it warms up to (near) the peak, then anneals


def test_long_one_cycle_schedules_are_unchanged():
    """Runs of 8+ steps keep torch's own one-cycle with a 25% warm-up (the recipe's measured numbers stand)."""
    model = torch.nn.Linear(2, 1)
    opt = torch.optim.AdamW(model.parameters(), lr=0.01)
    sched = scheduler_for(opt, TrainConfig(), 10, 4, 0.01)
    assert sched.total_steps == 41 and sched._schedule_phases[0]["end_step"] == pytest.approx(0.25 * 41 - 1)


@pytest.mark.parametrize("per_class", [1, 8])
def test_a_run_of_one_to_three_steps_trains(tmp_path, per_class):
    folder = make_folder(tmp_path / "images", per_class=10)
    settings = {"model": "lenet5", "data": str(folder), "epochs": 1, "batch_size": 8, "threads": 1}
    run = train(TrainConfig(**settings, per_class=per_class, out=str(tmp_path / "run")), report=False)
    assert run.results()["epochs"] == 1 and len(run.metrics()) == 1
