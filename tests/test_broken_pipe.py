"""`convscope train ... | head`: when standard output closes, the training saves at the end of the batch and stops
(exit status 141, as SIGPIPE; one line on stderr; a line in train.log), and `--resume` finishes it. Every other
command whose reader is gone exits 141 too: a failure (`detect lint` finding problems) never turns into success."""

import subprocess
import sys

from helpers import make_folder, train_args

EXIT_SIGPIPE = 141


def test_train_into_a_closed_pipe_saves_stops_and_resumes(tmp_path):
    folder = make_folder(tmp_path / "images", per_class=20)
    out = tmp_path / "run"
    command = [sys.executable, "-m", "convscope"]
    proc = subprocess.Popen(
        [*command, *train_args(folder, out, epochs=2)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    proc.stdout.close()  # the reader is gone before the first line: like `| head -0`
    _, err = proc.communicate(timeout=300)
    err = err.decode()
    assert proc.returncode == EXIT_SIGPIPE, err
    assert err.count("\n") == 1, err
    assert err.startswith("convscope: stopped by SIGPIPE at epoch 1, batch 1/4; saved.")
    assert f"Resume with: convscope train --resume {out}" in err
    assert (out / "checkpoint.safetensors").is_file() and not (out / "results.json").exists()
    log = (out / "train.log").read_text()
    assert "standard output closed (broken pipe): the training stops at the end of this batch and saves" in log

    from convscope.tasks.train import train  # what `convscope train --resume RUN` calls, without drawing the report

    run = train(resume=out, report=False)
    assert run.results()["epochs"] == 2 and (out / "results.json").is_file()


def _closed_reader(argv, cwd, stderr=subprocess.PIPE) -> tuple[int, str]:
    """Run convscope with its standard output's reader gone before the first line (`| true`); (status, stderr)."""
    proc = subprocess.Popen([sys.executable, "-m", "convscope", *argv], cwd=cwd, stdout=subprocess.PIPE, stderr=stderr)
    proc.stdout.close()
    _, err = proc.communicate(timeout=300)
    return proc.returncode, (err or b"").decode()


def test_a_closed_pipe_is_141_for_a_success_and_for_a_failure(tmp_path):
    code, err = _closed_reader(["summary", "lenet5"], tmp_path)
    assert (code, err) == (EXIT_SIGPIPE, "")
    subprocess.run([sys.executable, "-m", "convscope", "detect", "make-scenes", "--out", "s", "--n", "4", "--size",
                    "64"], cwd=tmp_path, check=True, capture_output=True)  # fmt: skip
    label = sorted((tmp_path / "s" / "labels" / "train").iterdir())[0]
    label.write_text(label.read_text() + "3 0.5 0.5 1.4 0.2\n")  # a box wider than the image: a problem
    read = subprocess.run([sys.executable, "-m", "convscope", "detect", "lint", "s"], cwd=tmp_path, capture_output=True)
    assert read.returncode == 1 and b"coordinates outside [0, 1]" in read.stdout
    code, err = _closed_reader(["detect", "lint", "s"], tmp_path)
    assert code == EXIT_SIGPIPE and "Traceback" not in err, err


def test_train_with_standard_error_closed_too_still_saves_and_exits_141(tmp_path):
    folder = make_folder(tmp_path / "images", per_class=10)
    out = tmp_path / "run"
    code, err = _closed_reader(train_args(folder, out, epochs=2), tmp_path, stderr=subprocess.STDOUT)  # `2>&1 | head`
    assert (code, err) == (EXIT_SIGPIPE, "")
    assert (out / "checkpoint.safetensors").is_file() and not (out / "results.json").exists()
    log = (out / "train.log").read_text()
    assert "standard output closed (broken pipe): the training stops at the end of this batch and saves" in log
