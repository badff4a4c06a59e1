"""`convscope train ... | head`: when standard output closes, the training saves at the end of the batch and stops
(exit status 141, as SIGPIPE; one line on stderr; a line in train.log), and `--resume` finishes it."""

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
