"""Auto-tuning: the trainer times its candidates (threads; bf16 where the CPU has it) at the start of a phase, keeps
the fastest, records the choice, honours a forced one, re-checks on a busy machine, and resumes with its choice.

The timings are replaced by fixed figures (`fake_speeds`): what is tested is what the trainer does with them, not the
machine's speed (speed lives in bench/)."""

import signal

import pytest
import torch
import yaml
from helpers import make_folder
from safetensors.torch import load_file

from convscope.errors import CheckpointError, Interrupted
from convscope.signals import StopRequest
from convscope.tasks.train import train
from convscope.training import autotune
from convscope.training.autotune import Choice, Tuning, Watch, candidates, steps_to_tune, thread_counts, worth_tuning
from convscope.training.callbacks import Callback


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_folder(tmp_path_factory.mktemp("images"))  # 120 images, 96 to train on: 96 steps an epoch at batch 1


def settings(folder, out, **kw):
    # 3 epochs of 96 steps: long enough to be worth tuning (240 steps for 2 candidates), a few seconds of lenet5
    return {"model": "lenet5", "data": str(folder), "epochs": 3, "batch_size": 1, "out": str(out), **kw}


@pytest.fixture
def fake_speeds(monkeypatch):
    """Two cores without bf16 instructions (so 2 candidates on every CPU, AMX included), and a trial's images/s read
    from `speeds` (threads → images/s) instead of a clock."""
    speeds = {1: 300.0, 2: 200.0}
    monkeypatch.setattr(autotune.os, "cpu_count", lambda: 2)
    monkeypatch.setattr("convscope.training.tuning.cpu_has_fast_bf16", lambda: False)
    monkeypatch.setattr("convscope.training.tuning.time_steps", lambda step, batch: speeds[torch.get_num_threads()])
    return speeds


class Threads(Callback):
    """The torch thread count at each batch."""

    def __init__(self, stop: StopRequest | None = None, at: tuple[int, int] | None = None):
        self.seen, self.stop, self.at = [], stop, at

    def on_batch(self, epoch, batch, *args):
        self.seen.append(torch.get_num_threads())
        if self.stop is not None and (epoch, batch) == self.at:
            self.stop.signal = signal.SIGTERM


def tuning(run) -> dict:
    return yaml.safe_load((run.path / "config.yaml").read_text())["tuning"]


def same_weights(a, b) -> bool:
    x, y = load_file(a), load_file(b)
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


def test_the_candidates_and_when_tuning_is_worth_it():
    assert thread_counts(1) == [1] and thread_counts(2) == [1, 2] and thread_counts(6) == [1, 2, 4, 6]
    choices, notes = candidates(None, "auto", 2, bf16_native=False)
    assert choices == [Choice(1, "fp32"), Choice(2, "fp32")] and notes == ["bf16 not tried: no bf16 instructions"]
    choices, _ = candidates(None, "auto", 2, bf16_native=True)
    assert [c.label() for c in choices] == ["1 thread, fp32", "2 threads, fp32", "1 thread, bf16", "2 threads, bf16"]
    assert candidates(3, "bf16", 8, bf16_native=False) == ([Choice(3, "bf16")], [])  # forced: nothing to measure
    # two candidates cost about 12 steps: worth it from 240 steps on (5%), four from 480; never a single candidate
    assert not worth_tuning(2, 239) and worth_tuning(2, 240) and not worth_tuning(1, 10**6)
    assert steps_to_tune(4) == 480


def test_a_tuning_is_saved_and_read_back_and_a_damaged_one_is_refused():
    made = Tuning(Choice(2, "bf16"), "measured", {"2 threads, bf16": 812.5}, ["note"], 1.5)
    assert Tuning.from_dict(made.to_dict(), "cp", 8) == made
    assert made.line() == "tuned: 2 threads, bf16 (812 images/s; note) in 1.5 s"
    for bad in ({"threads": 0, "precision": "fp32", "how": "measured"}, {"threads": 2, "precision": "fp16"}, [1]):
        with pytest.raises(CheckpointError, match="cp: tuning is"):
            Tuning.from_dict(bad, "cp", 8)


def test_the_watch_calls_for_a_recheck_when_the_steps_slow_down_by_a_third(monkeypatch):
    clock = [0.0]
    monkeypatch.setattr(autotune.time, "perf_counter", lambda: clock[0])
    watch = Watch(all_threads=2, threads=2, cost=1.0)  # re-checks 20 s apart at the least (5%)
    steps = lambda speed, n: [watch.step(64, 64 / speed) for _ in range(n)]  # noqa: E731
    assert not any(steps(3000, 100)) and watch.reference == pytest.approx(3000)  # the first 2 s of steps
    assert not any(steps(1900, 100))  # below two thirds, but 20 s have not passed since the measurement
    assert not any(steps(2100, 200))
    clock[0] = 21.0
    assert not any(steps(2100, 100))  # 70% of the yardstick: not yet
    slower = steps(1900, 100)
    assert slower[-1] and not slower[0]  # only once the window of 2 s is below two thirds
    one = Watch(all_threads=2, threads=1, period=120)  # on one thread of two: every `period` seconds
    assert not any(one.step(64, 0.25) for _ in range(9))
    clock[0] = 142.0
    assert one.step(64, 0.25)


def test_a_long_run_is_tuned_and_keeps_the_fastest_choice(folder, tmp_path, fake_speeds, monkeypatch):
    monkeypatch.setattr(Watch, "step", lambda *a: False)  # no re-check on a noisy test machine: the choice stays
    seen = Threads()
    run = train(**settings(folder, tmp_path / "r"), callbacks=[seen], report=False)
    saved = tuning(run)["phase 1"]
    assert saved["how"] == "measured" and (saved["threads"], saved["precision"]) == (1, "fp32")
    assert saved["measured"]["1 thread, fp32"] == 300.0 and saved["measured"]["2 threads, fp32"] == 200.0
    assert set(seen.seen) == {1}  # every step on the chosen thread count
    assert "tuned: 1 thread, fp32 (300 images/s; 2 threads, fp32: 200" in (run.path / "train.log").read_text()


def test_a_phase_too_short_for_every_candidate_tunes_the_precision_alone(folder, tmp_path, fake_speeds, monkeypatch):
    """A bf16 CPU has 4 candidates (480 steps to be worth timing); 288 steps are worth timing the 2 precisions on all
    cores, which a bf16 phase of a few hundred steps gains most from (AMX: up to 2.4×)."""
    monkeypatch.setattr("convscope.training.tuning.cpu_has_fast_bf16", lambda: True)
    monkeypatch.setattr(Watch, "step", lambda *a: False)  # no re-check on a noisy test machine: the choice stays
    tried = []

    def fake_tune(trial, choices, notes):  # bf16 measured fastest: the run must go on with it
        tried.extend(choice.label() for choice in choices)
        return Tuning(choices[-1], "measured", {c.label(): 100.0 + i for i, c in enumerate(choices)}, notes, 0.5)

    monkeypatch.setattr("convscope.training.tuning.tune", fake_tune)
    run = train(**settings(folder, tmp_path / "r"), report=False)  # 3 epochs of 96 steps
    saved = tuning(run)["phase 1"]
    assert tried == ["2 threads, fp32", "2 threads, bf16"]
    assert (saved["how"], saved["threads"], saved["precision"]) == ("measured", 2, "bf16")
    assert saved["notes"] == ["288 steps: too short to tune the threads too"]
    short = train(**settings(folder, tmp_path / "s", epochs=1, batch_size=8), report=False)  # 12 steps: nothing
    assert tuning(short)["phase 1"]["how"] == "default" and tried == ["2 threads, fp32", "2 threads, bf16"]


def test_a_forced_choice_is_honoured_and_nothing_is_measured(folder, tmp_path, fake_speeds):
    fake_speeds[2] = 10**6  # would win if measured
    seen = Threads()
    run = train(**settings(folder, tmp_path / "r", threads=1, precision="bf16"), callbacks=[seen], report=False)
    assert tuning(run)["phase 1"] | {"notes": []} == {
        "threads": 1,
        "precision": "bf16",
        "how": "forced",
        "measured": {},
        "notes": [],
        "seconds": 0.0,
    }
    assert set(seen.seen) == {1}


def test_a_short_run_is_not_tuned(folder, tmp_path, fake_speeds):
    run = train(**settings(folder, tmp_path / "r", epochs=1, batch_size=8), report=False)
    saved = tuning(run)["phase 1"]
    assert saved["how"] == "default" and saved["precision"] == "fp32"
    assert saved["notes"][0] == "12 steps: too short to tune, which takes 240; --threads N sets the count"


def test_a_tuned_run_resumes_with_its_own_choice_bit_identically(folder, tmp_path, fake_speeds, monkeypatch):
    monkeypatch.setattr(Watch, "step", lambda *a: False)  # no re-check on a noisy test machine: the choice stays
    straight = train(**settings(folder, tmp_path / "straight"), report=False)
    stop = StopRequest()
    out = tmp_path / "stopped"
    with pytest.raises(Interrupted):
        train(**settings(folder, out), stop=stop, callbacks=[Threads(stop, (1, 40))], report=False)
    fake_speeds[2] = 10**6  # the machine changed: a new measurement would choose 2 threads
    seen = Threads()
    resumed = train(resume=out, callbacks=[seen], report=False)
    assert set(seen.seen) == {1} and tuning(resumed)["phase 1"]["threads"] == 1
    assert "resumed with 1 thread, fp32" in (out / "train.log").read_text()
    for which in ("last", "best"):
        assert same_weights(resumed.weights / f"{which}.safetensors", straight.weights / f"{which}.safetensors")


def test_threads_given_on_resume_win_and_a_damaged_record_is_rewritten(folder, tmp_path, fake_speeds, monkeypatch):
    monkeypatch.setattr(Watch, "step", lambda *a: False)
    stop = StopRequest()
    out = tmp_path / "stopped"
    with pytest.raises(Interrupted):
        train(**settings(folder, out), stop=stop, callbacks=[Threads(stop, (1, 40))], report=False)
    config = out / "config.yaml"
    config.write_text(config.read_text().replace("tuning:\n", "tuning: edited\nwas:\n"))  # a hand-edited record
    seen = Threads()
    resumed = train(resume=out, threads=2, callbacks=[seen], report=False)
    assert set(seen.seen) == {2}
    assert tuning(resumed)["phase 1"]["how"] == "forced" and tuning(resumed)["phase 1"]["threads"] == 2
    assert "resumed with 2 threads, fp32 (threads given; fp32: the run's precision)" in (out / "train.log").read_text()


def test_a_busy_machine_makes_the_trainer_check_the_threads_again(folder, tmp_path, fake_speeds, monkeypatch):
    calls = []

    def slowed(self, images, seconds):  # the steps slow down at the 250th step (of 288)
        calls.append(1)
        if len(calls) == 250:
            self.now, self.reference = 100.0, 300.0
            fake_speeds[2] = 900.0  # and now two threads measure faster
            return True
        return False

    monkeypatch.setattr(Watch, "step", slowed)
    seen = Threads()
    run = train(**settings(folder, tmp_path / "r"), callbacks=[seen], report=False)
    assert seen.seen[:249] == [1] * 249 and set(seen.seen[249:]) == {2}  # from the step that was re-checked
    assert tuning(run)["phase 1"]["threads"] == 2
    log = (run.path / "train.log").read_text()
    said = [line for line in log.splitlines() if "re-checked" in line]
    assert len(said) == 1, log
    assert (
        "threads re-checked: now 2 threads, fp32, was 1 thread, fp32; 2 threads, fp32 (900 images/s; 1 thread, fp32: "
        "300; re-checked at epoch 3, batch 57: the steps ran at 100 images/s, against 300 after the choice) in "
    ) in said[0]
