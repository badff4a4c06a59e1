"""A training the studio started (`convscope train` in a child process of the studio's Jobs), its process killed
with SIGKILL mid-training: the job says it failed, and `convscope train --resume` of its run folder ends with the
weights of the same training left alone, bit for bit."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time

import pytest
from fault_harness import differences, outcome, temp_files
from helpers import make_folder, wait_for

from convscope.run import CHECKPOINT
from convscope.studio.jobs import Jobs
from convscope.training.checkpoint_file import read_checkpoint

EPOCHS = 30  # about 2 s of training after the first checkpoint (one batch an epoch): the kill lands mid-training


@pytest.fixture
def jobs(tmp_path):
    """The studio's Jobs on a runs folder that also holds the images (inside the folders a page may train on); at
    the end, whatever it started and is still running is killed (a failed assertion leaves nothing behind)."""
    runs = tmp_path / "runs"
    make_folder(runs / "shades", per_class=40, size=20)
    (tmp_path / "logs").mkdir()
    jobs, started = Jobs(runs, tmp_path / "logs"), []
    real = jobs.start
    jobs.start = lambda *args: started.append(real(*args)) or started[-1]
    yield jobs
    for job in started:
        if job.process.poll() is None:
            job.process.kill()
            job.process.wait()


def _finish(job, seconds=180) -> int:
    return job.process.wait(timeout=seconds)


def test_a_studio_training_killed_mid_run_resumes_to_the_identical_weights(jobs):
    data = str(jobs.runs_dir / "shades")
    straight = jobs.start("lenet5", data, EPOCHS)
    assert _finish(straight) == 0, straight.log.read_text()
    killed = jobs.start("lenet5", data, EPOCHS)
    run = jobs.runs_dir / killed.name
    wait_for(lambda: (run / CHECKPOINT).exists(), killed.process)
    time.sleep(random.Random(0).uniform(0, 0.3))  # somewhere in the epochs that follow
    assert killed.process.poll() is None, "the training ended before it could be killed"
    killed.process.send_signal(signal.SIGKILL)
    assert _finish(killed) == -signal.SIGKILL
    state = next(j for j in jobs.list() if j["name"] == killed.name)
    assert (state["state"], state["exit_code"]) == ("failed", -9)
    assert read_checkpoint(run / CHECKPOINT).epoch < EPOCHS and not (run / "results.json").exists()
    resumed = subprocess.run(
        [sys.executable, "-m", "convscope", "train", "--resume", str(run)], capture_output=True, text=True, timeout=180
    )
    assert resumed.returncode == 0, resumed.stderr
    assert not differences(outcome(run), outcome(jobs.runs_dir / straight.name)) and not temp_files(run)
