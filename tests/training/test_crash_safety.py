"""A kill at any write boundary leaves a run that resumes to the identical result; one writer per run folder; resume
means what a user thinks; failures before the first checkpoint block nothing; OS errors are one line."""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import pytest
from fault_harness import (
    FAULTS,
    Killed,
    again,
    differences,
    fill,
    injected,
    outcome,
    run_command_with_fault,
    run_with_fault,
    temp_files,
    tmpfs,
)
from fault_harness import write_boundaries as boundaries
from helpers import make_folder, train_args, wait_for
from safetensors.torch import load_file

from convscope.cli import main
from convscope.config import TrainConfig
from convscope.errors import CheckpointError, ConfigError, OutputError
from convscope.run import CHECKPOINT
from convscope.run_lock import RunLock
from convscope.tasks import ClassifyTask
from convscope.tasks.train import train
from convscope.training.checkpoint_file import read_checkpoint


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_folder(tmp_path_factory.mktemp("images"), per_class=40)


def config(folder, out, **kw):
    settings = {"model": "lenet5", "data": str(folder), "epochs": 2, "batch_size": 16, "out": str(out), "threads": 1}
    return TrainConfig(**{**settings, **kw})


@pytest.fixture(scope="module")
def straight(folder, tmp_path_factory):
    """The uninterrupted run's outcome, and the names of the files it writes in its folder, in order (its write
    boundaries: the decoded-folder cache's writes are not the run's)."""
    out = tmp_path_factory.mktemp("runs") / "straight"
    _, calls = boundaries(lambda: train(config(folder, out), report=False), out)
    return outcome(out), calls


def test_the_write_boundaries_are_the_ones_expected(straight):
    _, calls = straight

    def epoch(n):  # its film strip snapshot, its checkpoint and copies, its metrics, where the training is
        per_epoch = ["checkpoint.safetensors", "last.safetensors", "best.safetensors", "metrics.csv", "progress.json"]
        return [f"epoch-{n:04d}.npz", *per_epoch]

    # evaluation.json: the test evaluation (per class, confusion), saved so viewers read it instead of computing it;
    # confusion.png, its picture, is written atomically like every other picture
    tested = ["confusion.png", "evaluation.json", "results.json"]
    # config.yaml twice: the run's settings, then the threads and precision chosen when training starts (autotune);
    # the film strip's probe image and the untrained network's snapshot (epoch 0) in between
    started = ["spec.yaml", "config.yaml", "probe.png", "epoch-0000.npz", "config.yaml"]
    assert calls == [*started, *epoch(1), *epoch(2), *tested]


@pytest.mark.parametrize(
    "fault", [pytest.param(f, marks=pytest.mark.slow) if f == "rename" else f for f in FAULTS]
)  # a failing rename (about 3 s) is slow-marked: a failing fsync is the same error, from the same clean-up
def test_a_fault_at_every_write_boundary_resumes_to_the_identical_run(folder, straight, tmp_path, fault):
    """Killed just before or just after each rename, or that write failing (a full disk at its fsync, an I/O error
    at its rename): the run resumes (or, before it was a run, starts again) to the bit-identical result."""
    expected, calls = straight
    for k, name in enumerate(calls, start=1):
        out = tmp_path / f"{fault}-{k}"
        error, injector = run_with_fault(lambda out=out: train(config(folder, out), report=False), out, k, fault)
        assert injector.hit == name, f"write {k} is {injector.hit}, expected {name}"
        if fault.startswith("kill"):
            assert isinstance(error, Killed)
        else:  # one line naming the file, and the run's state as it was
            assert isinstance(error, OutputError) and str(error).startswith(f"{out}/") and name in str(error)
            assert "; nothing was changed" in str(error) and "\n" not in str(error)
        again(out, lambda out=out: train(config(folder, out), report=False))
        assert not (problems := differences(outcome(out), expected)), f"{fault} at write {k} ({name}): {problems}"
        assert not temp_files(out), f"temporary files left after {fault} at write {k} ({name})"


def test_a_kill_during_the_resume_itself_resumes_again_to_the_identical_run(folder, straight, tmp_path):
    """A second crash, at any write of the resumed training (its copies rewritten from the checkpoint first): the
    next --resume still ends with the identical run."""
    expected, calls = straight
    first = [k for k, name in enumerate(calls, start=1) if name == "metrics.csv"][0]  # epoch 1 saved, then killed
    killed = tmp_path / "killed"
    error, _ = run_with_fault(lambda: train(config(folder, killed), report=False), killed, first, "kill-after")
    assert isinstance(error, Killed)
    shutil.copytree(killed, base := tmp_path / "base")
    _, resumed_calls = boundaries(lambda: train(resume=base, report=False), base)
    assert resumed_calls[:3] == ["last.safetensors", "best.safetensors", "metrics.csv"]  # the copies, rewritten
    for k, name in enumerate(resumed_calls, start=1):
        shutil.copytree(killed, out := tmp_path / f"again-{k}")
        error, injector = run_with_fault(lambda out=out: train(resume=out, report=False), out, k, "kill-before")
        assert isinstance(error, Killed) and injector.hit == name
        train(resume=out, report=False)
        problems = differences(outcome(out), expected)
        assert not problems, f"killed at the resume's write {k} ({name}): {problems}"
        assert not temp_files(out)


def test_a_real_kill_at_a_write_boundary_resumes_from_the_command_line(folder, straight, tmp_path, capsys):
    """SIGKILL (no clean-up of any kind runs) with the second checkpoint's temporary file complete, not renamed:
    `convscope train --resume` removes it and finishes the identical run."""
    expected, calls = straight
    second = [k for k, name in enumerate(calls, start=1) if name == CHECKPOINT][1]
    out = tmp_path / "run"
    killed = run_command_with_fault(train_args(folder, out, 2, batch_size=16), out, second, "kill-before")
    assert killed.returncode == -9, killed.stderr
    assert [p.name.split(".")[1] for p in temp_files(out)] == ["checkpoint"]  # what the kill left
    assert read_checkpoint(out / CHECKPOINT).epoch == 1
    assert main(["train", "--resume", str(out)]) == 0, capsys.readouterr().err
    assert not differences(outcome(out), expected) and not temp_files(out)


def test_a_failure_before_the_first_checkpoint_blocks_no_retry(folder, tmp_path, monkeypatch):
    out = tmp_path / "run"

    def broken(self, model, batch, generator):
        raise RuntimeError("out of memory (simulated)")

    monkeypatch.setattr(ClassifyTask, "loss", broken)
    with pytest.raises(RuntimeError, match="simulated"):
        train(config(folder, out), report=False)
    assert not out.exists()  # this training made the folder, so it goes
    monkeypatch.undo()
    out.mkdir()
    (out / "notes.txt").write_text("the user's own")
    with pytest.raises(OutputError, match="is not empty and not a convscope run"):  # a user's folder is not a run's
        train(config(folder, out), report=False)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]  # refused before anything, the lock file too
    (out / "notes.txt").unlink()
    monkeypatch.setattr(ClassifyTask, "loss", broken)
    with pytest.raises(RuntimeError):
        train(config(folder, out), report=False)
    assert sorted(p.name for p in out.iterdir()) == [".lock"]  # the folder it did not make stays
    monkeypatch.undo()
    assert train(config(folder, out, epochs=1), report=False).results()["epochs"] == 1


def test_a_second_writer_is_refused_naming_the_holder(folder, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    with RunLock(out):
        with pytest.raises(
            CheckpointError, match=rf"{out}: another training is writing this run \(pid {os.getpid()} on "
        ):
            train(config(folder, out), report=False)
        assert sorted(p.name for p in out.iterdir()) == [".lock"]  # nothing written by the refused one
    train(config(folder, out, epochs=1), report=False)
    with RunLock(out):  # readers take no lock: a finished run can be read while another process holds it
        with pytest.raises(CheckpointError, match="another training is writing"):
            train(resume=out, epochs=2, report=False)


def test_a_finished_run_resumed_changes_nothing(folder, tmp_path):
    run = train(config(folder, tmp_path / "run", epochs=1), report=False)
    before = {p: p.read_bytes() for p in run.path.rglob("*") if p.is_file() and p.name != ".lock"}
    again = train(resume=run.path)
    assert again.path == run.path
    assert {p: p.read_bytes() for p in run.path.rglob("*") if p.is_file() and p.name != ".lock"} == before


def test_resume_with_more_epochs_continues_and_adds_up_the_time(folder, tmp_path):
    run = train(config(folder, tmp_path / "run", epochs=2), report=False)
    first = run.results()
    longer = train(resume=run.path, epochs=4, report=False)
    results = longer.results()
    assert [r["epoch"] for r in longer.metrics()] == [1, 2, 3, 4]
    assert results["epochs"] == 4 and longer.config.epochs == 4
    assert results["train_seconds"] > first["train_seconds"] and results["wall_seconds"] > first["wall_seconds"]
    # the added epochs have a one-cycle schedule of their own: low at the start of epoch 3, annealed at the end
    lrs = [r["lr"] for r in longer.metrics()]
    assert lrs[1] < 1e-5 and lrs[2] > lrs[1] and lrs[3] < lrs[2]
    cp = read_checkpoint(run.path / CHECKPOINT)
    assert (cp.epoch, cp.extra["schedule"]) == (4, [2, 2])


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"lr": 0.1}, r"a resumed run keeps its own settings; --lr cannot be changed"),
        ({"batch_size": 8, "seed": 3}, r"--batch-size, --seed cannot be changed"),
        ({"epochs": 1}, r"is set to train 2 epochs; --resume can only add epochs"),
    ],
)
def test_resume_refuses_every_other_change(folder, tmp_path, settings, message):
    run = train(config(folder, tmp_path / "run", epochs=2), report=False)
    with pytest.raises(ConfigError, match=message):
        train(resume=run.path, **settings)


def test_a_full_disk_mid_training_is_one_line_and_the_last_checkpoint_survives(folder, straight, tmp_path):
    out = tmp_path / "run"
    second = [k for k, name in enumerate(straight[1], start=1) if name == CHECKPOINT][1]  # the second epoch's
    error, _ = run_with_fault(lambda: train(config(folder, out), report=False), out, second, "fsync")
    assert isinstance(error, OutputError)
    assert str(error) == (
        f"{out / CHECKPOINT}: cannot write (No space left on device); nothing was changed; the run keeps its last "
        f"checkpoint: resume with `convscope train --resume {out}` once it can be written"
    )
    assert read_checkpoint(out / CHECKPOINT).epoch == 1
    train(resume=out, report=False)
    assert not differences(outcome(out), straight[0])


def test_a_real_full_disk_after_an_epoch_is_one_line_and_the_run_resumes_once_space_is_freed(
    folder, straight, tmp_path, capsys
):
    """The run folder on a tmpfs of its own, filled up as epoch 1's files are written: the next write (where the
    training is, progress.json) cannot be done; the command says so in one line naming the file, epoch 1's
    checkpoint stays whole, and once space is freed, `--resume` ends with the uninterrupted run's weights."""
    last_of_epoch_1 = [k for k, name in enumerate(straight[1], start=1) if name == "metrics.csv"][0]
    with tmpfs(tmp_path / "disk", "16m") as disk:
        out = disk / "run"
        with injected(out, last_of_epoch_1, "then", action=lambda: fill(disk)) as injector:
            code = main(train_args(folder, out, 2, batch_size=16))
        assert injector.hit == "metrics.csv"
        said = capsys.readouterr().err
        errors = [line for line in said.splitlines() if line.startswith("convscope:")]
        assert code == 2 and "Traceback" not in said and "Logging error" not in said
        assert errors == [f"convscope: error: {out / 'progress.json'}: cannot write (No space left on device); nothing "
                          f"was changed; the run keeps its last checkpoint: resume with `convscope train --resume "
                          f"{out}` once it can be written"]  # fmt: skip
        saved = read_checkpoint(out / CHECKPOINT)  # whole: its checksums hold
        assert saved.epoch == 1 and not temp_files(out)
        last = load_file(out / "weights" / "last.safetensors")  # the copies of epoch 1 load too
        assert last.keys() == straight[0]["weights"]["last.safetensors"].keys()
        (disk / "filler").unlink()
        assert main(["train", "--resume", str(out)]) == 0, capsys.readouterr().err
        assert not differences(outcome(out), straight[0])


@pytest.mark.slow  # 25 to 45 s: a training, then four killed commands and their resumes (with reports)
def test_kill_9_at_random_instants_of_convscope_train_resumes_to_the_identical_run(folder, tmp_path, capsys):
    """`convscope train` SIGKILLed at seeded random instants of its training (anywhere: mid-batch, mid-write, while
    testing), then `convscope train --resume`: the same weights as a training left alone."""
    epochs, rng = 6, random.Random(0)
    out = tmp_path / "straight"
    started = time.monotonic()
    train(config(folder, out, epochs=epochs), report=False)
    expected, seconds = outcome(out), time.monotonic() - started
    killed = 0
    for i in range(4):
        out = tmp_path / f"killed-{i}"
        process = subprocess.Popen([sys.executable, "-m", "convscope", *train_args(folder, out, epochs, 16)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        try:
            wait_for(lambda out=out: (out / "config.yaml").exists(), process)
            time.sleep(rng.uniform(0, seconds))
            process.send_signal(signal.SIGKILL)
        finally:
            killed += process.wait() == -signal.SIGKILL
        assert main(["train", "--resume", str(out)]) == 0, capsys.readouterr().err
        assert not (problems := differences(outcome(out), expected)), f"kill {i}: {problems}"
        assert not temp_files(out)
    assert killed >= 2  # most instants fall inside the training, not after it


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.replace("epochs: 2", "epochs: 1000000000000000000000000000000"), r"epochs must be"),
        (lambda t: t.replace("seed: 0", "seed: -1"), r"seed must be"),
        (lambda t: t.replace("  std:\n  -", "  std:\n  - 0.0\n  -"), r"data: std must be 1 number\(s\) in \(0, 1\]"),
        (lambda t: t.replace("classes:", "classes: []\n  old_classes:"), r"data: classes must be a list of names"),
    ],
)
def test_a_hand_edited_config_yaml_is_refused_in_one_line(folder, tmp_path, edit, message):
    from convscope.run import load_run

    run = train(config(folder, tmp_path / "run", epochs=2), report=False)
    config_file = run.path / "config.yaml"
    config_file.write_text(edit(config_file.read_text()))
    with pytest.raises((CheckpointError, ConfigError), match=message) as info:
        load_run(run.path)
    assert "\n" not in str(info.value) and len(str(info.value)) < 300


def test_hand_edited_values_inside_the_checkpoint_are_refused(folder, tmp_path):
    import hashlib

    import safetensors.torch

    from convscope.training.checkpoint_file import DOC_KEY
    from convscope.weights import read_safetensors

    run = train(config(folder, tmp_path / "run", epochs=2), report=False)
    path = run.path / CHECKPOINT
    tensors, meta = read_safetensors(path)
    doc = json.loads(meta[DOC_KEY])
    doc["extra"]["batch"] = 10**30  # with a fresh checksum: only the value check can catch it
    meta[DOC_KEY] = json.dumps(doc)
    meta[DOC_KEY + ".sha256"] = hashlib.sha256(meta[DOC_KEY].encode()).hexdigest()
    path.write_bytes(safetensors.torch.save(tensors, metadata=meta))
    (run.path / "results.json").unlink()  # so the resume has work to do
    with pytest.raises(
        CheckpointError,
        match=r"checkpoint\.safetensors: batch is 1000000000000000000000000000000, expected a batch from 0 to 3",
    ):
        train(resume=run.path, report=False)


def test_a_run_in_the_earlier_two_file_format_is_refused_not_restarted(folder, tmp_path):
    run = train(config(folder, tmp_path / "run", epochs=1), report=False)
    (run.path / CHECKPOINT).unlink()
    (run.path / "state").mkdir()
    (run.path / "state" / "state.json").write_text("{}")
    (run.path / "results.json").unlink()
    with pytest.raises(CheckpointError, match=r"its checkpoint \(state/\) is in the format of an earlier convscope"):
        train(resume=run.path, report=False)
    assert (run.path / "metrics.csv").exists()  # nothing was started over
