"""Trainings started from the studio: `convscope train` in a child process, writing a run folder inside `--runs`.

A child process, not a thread: training keeps its own Ctrl-C handling (Stop sends SIGINT, so the run saves at the
end of its batch and stays resumable, exactly as Ctrl-C in a terminal), its own thread count, and cannot block the
web server. The run folder is named here, so the page can follow it from the first second.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from convscope.data.load import BUILT_IN
from convscope.errors import ConfigError
from convscope.presets import preset_names


@dataclass
class Job:
    name: str  # the run folder's name inside --runs
    command: list[str]
    process: subprocess.Popen
    log: Path  # the child's terminal output
    started: float = field(default_factory=time.time)
    stopped: bool = False  # Stop was pressed

    def to_dict(self) -> dict[str, Any]:
        code = self.process.poll()
        state = "running" if code is None else "finished" if code == 0 else "stopped" if self.stopped else "failed"
        lines = self.log.read_text(errors="replace").splitlines() if self.log.is_file() else []
        errors = [line for line in lines if line.startswith("convscope:")]
        return {"name": self.name, "state": state, "exit_code": code, "message": errors[-1] if errors else "",
                "command": " ".join(["convscope", *self.command[3:]]), "started": self.started}  # fmt: skip


class Jobs:
    """The trainings this studio started (thread-safe)."""

    def __init__(self, runs_dir: Path, logs: Path) -> None:
        self.runs_dir, self.logs = runs_dir, logs
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()

    def start(self, model: str, data: str, epochs: int) -> Job:
        """Train preset `model` on `data` (a built-in dataset or a folder on this machine) for `epochs` epochs.
        Raises ConfigError for anything else, before a process starts."""
        if model not in preset_names():
            presets = ", ".join(preset_names())
            raise ConfigError(f"model must be one of the presets: {presets}. Received: {model[:40]!r}")
        if data not in BUILT_IN and not Path(data).is_dir():
            built_in = ", ".join(BUILT_IN)
            raise ConfigError(f"data must be {built_in} or a folder on this machine. Received: {data[:80]!r}")
        if not isinstance(epochs, int) or not 1 <= epochs <= 1000:
            raise ConfigError(f"epochs must be an integer from 1 to 1000. Received: {epochs!r}")
        stem = re.sub(r"[^A-Za-z0-9._-]+", "-", f"{model}-{Path(data.rstrip('/')).name}")
        name = f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}"
        with self._lock:
            while name in self._jobs or (self.runs_dir / name).exists():
                name += "x"
            command = [sys.executable, "-m", "convscope", "train", "--model", model, "--data", data,
                       "--epochs", str(epochs), "--out", str(self.runs_dir / name)]  # fmt: skip
            log = self.logs / f"{name}.log"
            with log.open("w") as out:
                process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            job = self._jobs[name] = Job(name, command, process, log)
        return job

    def stop(self, name: str) -> Job:
        """Ask the training to stop as Ctrl-C does: it saves at the end of its batch. Raises KeyError."""
        with self._lock:
            job = self._jobs[name]
        if job.process.poll() is None:
            job.stopped = True
            job.process.send_signal(signal.SIGINT)
        return job

    def list(self) -> list[dict[str, Any]]:
        with self._lock:
            jobs = list(self._jobs.values())
        return [job.to_dict() for job in sorted(jobs, key=lambda j: j.started, reverse=True)]

    def close(self) -> None:
        """At shutdown: stop every training still running (saved, resumable), waiting a little for each."""
        for job in list(self._jobs.values()):
            if job.process.poll() is None:
                job.process.send_signal(signal.SIGINT)
        for job in list(self._jobs.values()):
            try:
                job.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                job.process.kill()
