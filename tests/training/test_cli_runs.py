"""The run folder from the command line: Ctrl-C pressed many times, two trainings on one --out, resume messages,
output paths that cannot be written."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import make_folder, train_args, wait_for


def cli(*args):
    """The `convscope` command as users run it: the script pip installed beside this Python."""
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    return subprocess.Popen(
        [str(Path(sys.executable).with_name("convscope")), *map(str, args)],
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_folder(tmp_path_factory.mktemp("images"), per_class=300)


@pytest.fixture(scope="module")
def finished(folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "done"
    proc = cli(*train_args(folder, out, epochs=1, batch_size=32))
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    return out


def test_ctrl_c_pressed_three_times_still_stops_once_cleanly(folder, tmp_path):
    out = tmp_path / "run"
    proc = cli(*train_args(folder, out, epochs=3))
    wait_for(lambda: (out / "metrics.csv").exists(), proc)
    for _ in range(3):
        proc.send_signal(signal.SIGINT)
        time.sleep(0.005)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("convscope: stopped by SIGINT at epoch "), err
    assert lines[0].endswith(f"saved. Resume with: convscope train --resume {out}")


def test_ctrl_c_while_the_command_starts_is_one_line(folder, tmp_path):
    """During the imports of the first second (torch) or while the data loads: no traceback, exit 130, no folder."""
    out = tmp_path / "run"
    proc = cli(*train_args(folder, out, epochs=3))
    maps = Path(f"/proc/{proc.pid}/maps")
    if maps.exists():  # torch is imported by the command, after main() took Ctrl-C in hand: from then on, whatever load
        wait_for(lambda: "libtorch" in maps.read_text(errors="replace"), proc)
    else:  # before main() runs (the interpreter and numpy starting) Ctrl-C is Python's own KeyboardInterrupt
        time.sleep(0.8)
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    if err.strip() == "convscope: interrupted":  # stopped before training: nothing is left that blocks a retry
        assert not (out / "config.yaml").exists()


def test_sigterm_twice_saves_once_and_exits_143(folder, tmp_path):
    out = tmp_path / "run"
    proc = cli(*train_args(folder, out, epochs=3))
    wait_for(lambda: (out / "metrics.csv").exists(), proc)
    proc.send_signal(signal.SIGTERM)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143 and "Traceback" not in err and "saved" in err


def test_two_trainings_on_one_out_started_together_one_trains_one_is_refused(folder, tmp_path):
    out = tmp_path / "run"
    procs = [cli(*train_args(folder, out, epochs=1)) for _ in range(2)]
    results = [(p.wait(timeout=300), p.communicate()[1]) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    refused = next(err for code, err in results if code == 2).strip()
    assert "\n" not in refused
    # Refused while the other trains (naming it), or after it finished (the folder then holds its run).
    assert f"{out}: another training is writing this run (pid " in refused or "already holds a run" in refused
    assert (out / "train.log").read_text().count("training lenet5 on") == 1
    assert json.loads((out / "results.json").read_text())["epochs"] == 1


def test_resuming_a_finished_run_says_so_and_changes_nothing(finished):
    before = {p: p.stat().st_mtime_ns for p in finished.rglob("*") if p.is_file()}
    proc = cli("train", "--resume", finished)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0 and err == ""
    assert out.startswith(f"{finished}: finished (1 epoch, test accuracy ")
    assert f"To train longer: convscope train --resume {finished} --epochs N (N > 1)" in out.replace("\n", " ")
    assert {p: p.stat().st_mtime_ns for p in finished.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--lr", "0.1"], "--lr cannot be changed (only --epochs, to train longer, and --threads, --device"),
        (["--config", "x.yaml"], "--config cannot be changed"),
        (["--epochs", "0"], "is set to train 1 epoch; --resume can only add epochs"),
    ],
)
def test_resume_with_other_flags_is_refused_in_one_line(finished, flags, message):
    proc = cli("train", "--resume", finished, *flags)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_an_output_path_that_cannot_be_made_is_one_line(folder, tmp_path):
    (tmp_path / "afile").write_text("not a folder")
    proc = cli(*train_args(folder, tmp_path / "afile" / "run", epochs=1))
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2, err
    assert err.strip() == (
        f"convscope: error: {tmp_path / 'afile' / 'run'}: cannot be written, {tmp_path / 'afile'} is a file, not a "
        "folder; nothing was changed"
    )


def _listing(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(
    "user_files, message",
    [
        ({"notes.txt": "mine", ".hidden.abcd1234.tmp": "mine too", "sub/.config.yaml.abcd1234.tmp": "and this"},
         "is not empty and not a convscope run (it holds .hidden.abcd1234.tmp, notes.txt, sub)"),
        ({"config.yaml": "lr: 0.1\n", "spec.yaml": "mine\n"}, "config.yaml: is not a convscope run's config"),
    ],
)  # fmt: skip
def test_train_out_on_a_folder_of_the_users_is_refused_and_left_as_it_was(folder, tmp_path, user_files, message):
    out = tmp_path / "mine"
    for name, text in user_files.items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text(text)
    before = _listing(out)
    proc = cli(*train_args(folder, out, epochs=1))
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert _listing(out) == before and not (out / ".lock").exists()  # not even the lock file was made


def test_a_run_on_a_read_only_file_system_is_one_line_and_keeps_the_checkpoint(finished, tmp_path):
    """A real read-only file system (a tmpfs remounted read-only; needs root, skipped otherwise)."""
    mount = tmp_path / "ro"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount)], capture_output=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({made.stderr.decode().strip()}); disk full is in test_crash_safety")
    try:
        subprocess.run(["cp", "-a", str(finished), str(mount / "run")], check=True)
        subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
        proc = cli("train", "--resume", mount / "run", "--epochs", "2")
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 2, err
        assert err.strip() == f"convscope: error: {mount / 'run'}: cannot write in this folder (Read-only file system)"
        saved = (mount / "run" / "checkpoint.safetensors").read_bytes()
        assert saved == (finished / "checkpoint.safetensors").read_bytes()
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_a_finished_run_without_its_report_says_how_to_write_it(finished, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(finished, copy)
    (copy / "report.html").unlink()  # killed while the report was being written
    proc = cli("train", "--resume", copy)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0 and f"Its report is missing: convscope report {copy}." in out.replace("\n", " ")


def test_resuming_a_folder_that_does_not_exist_says_so(tmp_path):
    proc = cli("train", "--resume", tmp_path / "nowhere")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2 and err == f"convscope: error: {tmp_path / 'nowhere'}: no such run folder\n"
