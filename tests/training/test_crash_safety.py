"""A kill at any write boundary leaves a run that resumes to the identical result; one writer per run folder; resume
means what a user thinks; failures before the first checkpoint block nothing; OS errors are one line."""

import errno
import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from helpers import make_folder
from safetensors.torch import load_file

from convscope import files
from convscope.config import TrainConfig
from convscope.errors import CheckpointError, ConfigError, OutputError
from convscope.run import CHECKPOINT, RunLock
from convscope.tasks import ClassifyTask
from convscope.tasks.train import train
from convscope.training.checkpoint_file import read_checkpoint


class Killed(BaseException):
    """What SIGKILL does to the writer, in-process: nothing after this point runs (no `except Exception` cleanup)."""


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_folder(tmp_path_factory.mktemp("images"), per_class=40)


def config(folder, out, **kw):
    settings = {"model": "lenet5", "data": str(folder), "epochs": 2, "batch_size": 16, "out": str(out), "threads": 1}
    return TrainConfig(**{**settings, **kw})


def outcome(path: Path) -> dict:
    """What must be bit-identical: both weight files, metrics.csv without the seconds column, the test accuracy."""
    metrics = [line.rsplit(",", 1)[0] for line in (path / "metrics.csv").read_text().splitlines()]
    weights = {name: load_file(path / "weights" / name) for name in ("last.safetensors", "best.safetensors")}
    return {
        "metrics": metrics,
        "weights": weights,
        "test_acc": json.loads((path / "results.json").read_text())["test_acc"],
    }


def same(a: dict, b: dict) -> bool:
    return (
        a["metrics"] == b["metrics"]
        and a["test_acc"] == b["test_acc"]
        and all(
            a["weights"][f].keys() == b["weights"][f].keys()
            and all(torch.equal(a["weights"][f][k], b["weights"][f][k]) for k in a["weights"][f])
            for f in a["weights"]
        )
    )


@pytest.fixture(scope="module")
def straight(folder, tmp_path_factory):
    """The uninterrupted run, and how many atomic replaces (write boundaries) it makes."""
    out = tmp_path_factory.mktemp("runs") / "straight"
    calls = []
    real = os.replace

    def counting(src, dst):
        if Path(dst).is_relative_to(out):  # the run's own writes (not the decoded-folder cache's)
            calls.append(Path(dst).name)
        real(src, dst)

    mp = pytest.MonkeyPatch()
    mp.setattr(files.os, "replace", counting)
    try:
        train(config(folder, out), report=False)
    finally:
        mp.undo()
    return outcome(out), calls


def test_the_write_boundaries_are_the_ones_expected(straight):
    _, calls = straight
    per_epoch = ["checkpoint.safetensors", "last.safetensors", "best.safetensors", "metrics.csv"]
    # evaluation.json: the test evaluation (per class, confusion), saved so viewers read it instead of computing it
    assert calls == ["spec.yaml", "config.yaml", *per_epoch, *per_epoch, "evaluation.json", "results.json"]


@pytest.mark.parametrize("when", ["before", "after"])
def test_a_kill_at_every_write_boundary_resumes_to_the_identical_run(folder, straight, tmp_path, monkeypatch, when):
    expected, calls = straight
    real = os.replace
    for k in range(len(calls)):
        out = tmp_path / f"{when}-{k}"
        count = 0

        def dying(src, dst, k=k, out=out):
            nonlocal count
            if not Path(dst).is_relative_to(out):
                return real(src, dst)
            count += 1
            if count == k + 1:
                if when == "before":  # the temporary file is complete, the rename never happened
                    shutil.copy(
                        src, src[: -len("12345678.tmp")] + "left1234.tmp"
                    )  # what the kill leaves (the original is
                    raise Killed  # removed by the writer's cleanup, which a real kill would not run)
                real(src, dst)
                raise Killed  # renamed, then killed before anything else
            real(src, dst)

        monkeypatch.setattr(files.os, "replace", dying)
        with pytest.raises(Killed):
            train(config(folder, out), report=False)
        monkeypatch.setattr(files.os, "replace", real)
        if (out / "config.yaml").exists() and not (out / "results.json").exists():
            train(resume=out, report=False)  # what a user does after a crash
        elif not (out / "config.yaml").exists():
            train(config(folder, out), report=False)  # not a run yet: the same command again is not blocked
        assert same(outcome(out), expected), f"killed {when} write {k + 1} ({calls[k]})"
        assert not list(out.rglob("*.tmp")), f"temp files left after a kill {when} write {k + 1}"


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


def test_a_full_disk_mid_training_is_one_line_and_the_last_checkpoint_survives(folder, straight, tmp_path, monkeypatch):
    out = tmp_path / "run"
    real_fsync, saves = os.fsync, []

    def fsync(fd):
        name = os.readlink(f"/proc/self/fd/{fd}")
        if ".checkpoint.safetensors." in name:
            saves.append(name)
            if len(saves) == 2:  # the second epoch's checkpoint
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    monkeypatch.setattr(files.os, "fsync", fsync)
    with pytest.raises(OutputError) as info:
        train(config(folder, out), report=False)
    assert str(info.value) == f"{out / CHECKPOINT}: cannot write (No space left on device); nothing was changed"
    assert read_checkpoint(out / CHECKPOINT).epoch == 1
    monkeypatch.undo()
    train(resume=out, report=False)
    assert same(outcome(out), straight[0])


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
