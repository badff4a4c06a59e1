"""Trainings started from the studio: `convscope train` in a child process, writing a run folder inside `--runs`.

A child process, not a thread: training keeps its own Ctrl-C handling (Stop sends SIGINT, so the run saves at the
end of its batch and stays resumable, exactly as Ctrl-C in a terminal), its own thread count, and cannot block the
web server. The run folder is named here, so the page can follow it from the first second.

A page may start at most `max_trainings` at once (429 beyond), each on a built-in dataset or a folder inside one of
the `data_roots` (403 otherwise: a page cannot make the studio read any folder of the machine). A relative folder
is looked up in the data roots, in their order (the first is `--runs`), never in the server's working folder.
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
from convscope.studio.guards import NotAllowed, TooMany, check

STOP_WAIT = 3.0  # seconds the studio waits, at shutdown, for its trainings to save after Ctrl-C before killing them


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
    """The trainings this studio started (thread-safe): at most `max_trainings` running at once, on built-in data
    or folders inside `data_roots` (default: `runs_dir` only)."""

    def __init__(self, runs_dir: Path, logs: Path, max_trainings: int = 1, data_roots=None) -> None:
        self.runs_dir, self.logs, self.max_trainings = runs_dir, logs, max_trainings
        self.data_roots = tuple(Path(r).resolve() for r in (data_roots or [runs_dir]))
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()

    def start(self, model: str, data: str, epochs: int) -> Job:
        """Train preset `model` on `data` (a built-in dataset, or a folder inside a data root: absolute, or relative to
        the first data root where it exists) for `epochs` epochs.
        Raises, before a process starts: ConfigError for an unknown model or missing folder, NotAllowed (403) for a
        folder outside the data roots, OutOfBounds (422) for epochs, TooMany (429) when `max_trainings` run."""
        if model not in preset_names():
            presets = ", ".join(preset_names())
            raise ConfigError(f"model must be one of the presets: {presets}. Received: {model[:40]!r}")
        check("epochs", epochs)
        folder = data if data in BUILT_IN else str(self.check_data(data))
        stem = re.sub(r"[^A-Za-z0-9._-]+", "-", f"{model}-{Path(data.rstrip('/')).name}")
        name = f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}"
        with self._lock:
            running = sum(job.process.poll() is None for job in self._jobs.values())
            if running >= self.max_trainings:
                raise TooMany(f"{running} training(s) already running, the most this studio starts at once "
                              f"(convscope serve --max-trainings {self.max_trainings}): stop one or wait")  # fmt: skip
            while name in self._jobs or (self.runs_dir / name).exists():
                name += "x"
            command = [sys.executable, "-m", "convscope", "train", "--model", model, "--data", folder,
                       "--epochs", str(epochs), "--out", str(self.runs_dir / name)]  # fmt: skip
            log = self.logs / f"{name}.log"
            with log.open("w") as out:
                process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            job = self._jobs[name] = Job(name, command, process, log)
        return job

    def check_data(self, data: str, files: bool = False) -> Path:
        """The real path of the data folder `data` (absolute, or relative to the first data root that has it; with
        `files`, a file too: a detection data set's data.yaml or COCO JSON). Raises ConfigError when there is no
        such folder (or file), NotAllowed when it lies outside every data root."""
        roots = ", ".join(map(str, self.data_roots))
        real = None
        for candidate in [Path(data)] if Path(data).is_absolute() else [root / data for root in self.data_roots]:
            try:
                real = candidate.resolve(strict=True)
            except (OSError, RuntimeError):
                continue
            if real.is_dir() or (files and real.is_file()):
                break
        if real is None or not (real.is_dir() or (files and real.is_file())):
            built_in = ", ".join(BUILT_IN)
            raise ConfigError(f"data must be {built_in} or a folder inside {roots} (absolute, or relative to one of "
                              f"them). Received: {data[:80]!r}")  # fmt: skip
        if not any(real.is_relative_to(root) for root in self.data_roots):
            raise NotAllowed(f"data folder {data[:80]!r} is outside the studio's data roots: {roots} "
                             "(convscope serve --data-root DIR adds one)")  # fmt: skip
        return real

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

    def close(self, wait: float = STOP_WAIT) -> None:
        """At shutdown: ask every training still running to stop (it saves at the end of its batch, resumable), wait
        up to `wait` seconds for them all, then kill those still running (they resume from their last save)."""
        with self._lock:
            jobs = list(self._jobs.values())
        for job in jobs:
            if job.process.poll() is None:
                job.process.send_signal(signal.SIGINT)
        deadline = time.monotonic() + wait
        for job in jobs:
            try:
                job.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                job.process.kill()
                job.process.wait()
