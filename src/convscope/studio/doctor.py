"""Diagnoses started from the studio's Doctor page: the dataset doctor (convscope.diagnosis) in a thread of its own,
its progress (stage, done, total) polled by the page, its report written inside the runs folder.

A thread, not a child process as for trainings: the doctor's scan already spreads over the cores in its own worker
processes, and a thread hands its progress and its Diagnosis over without a file in between. It is stopped through
its progress callback (which raises once the studio stops), so a large scan ends at its next chunk.

Reports go to RUNS/.doctor/ID/{report.html, doctor.json}: inside the folder the studio was given to write in, under
a name no run folder can have (run names never begin with a dot: studio.runs.NAME), so they never mix with runs.
The data set is checked as trainings' is (a built-in name, or a folder or file inside the data roots: 403 outside);
the run, when one is picked, must be a run folder of RUNS (studio.runs.run_folder). One diagnosis at a time (429).
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException
from fastapi.responses import Response

from convscope.data.load import BUILT_IN
from convscope.errors import ConfigError, ConvscopeError
from convscope.studio.guards import TooMany
from convscope.studio.runs import NAME, json_ready

log = logging.getLogger(__name__)

FOLDER = ".doctor"  # inside the runs folder: the reports written from the studio
SHOWN = 8  # examples per finding in the API's answer (the report holds GALLERY, doctor.json all)


class Stopped(Exception):
    """The studio is stopping: the diagnosis ends at its next progress report."""


@dataclass
class Diagnosing:
    """One diagnosis started here, as the page polls it."""

    id: str
    data: str
    run: str | None
    folder: Path  # where its report goes
    started: float = field(default_factory=time.time)
    state: str = "running"  # running | finished | failed
    stage: str = "listing"
    done: int = 0
    total: int = 0
    message: str = ""  # why it failed, in one line
    seconds: float | None = None
    diagnosis: dict[str, Any] | None = None  # Diagnosis.as_dict(), examples trimmed to SHOWN per finding

    def to_dict(self) -> dict[str, Any]:
        report = f"/doctor/{self.id}/report.html" if self.state == "finished" else None
        return json_ready({
            "id": self.id, "data": self.data, "run": self.run, "state": self.state, "stage": self.stage,
            "done": self.done, "total": self.total, "message": self.message, "started": self.started,
            "seconds": self.seconds, "report": report, "folder": str(self.folder), "diagnosis": self.diagnosis,
        })  # fmt: skip


class Diagnoses:
    """The diagnoses this studio started (thread-safe), at most one running at a time.

    `check_data(data, files=True)` resolves a data path inside the data roots (studio.jobs.Jobs.check_data);
    `run_path(name)` a run folder of the runs folder (studio.runs.run_folder)."""

    def __init__(self, runs_dir: Path, check_data: Callable[..., Path], run_path: Callable[[str], Path]) -> None:
        self.root = runs_dir / FOLDER
        self.check_data, self.run_path = check_data, run_path
        self._jobs: dict[str, Diagnosing] = {}
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._stopping = False

    def start(self, data: str, run: str | None = None) -> Diagnosing:
        """Diagnose `data` (a built-in name, or a folder or file inside the data roots), its labels judged by the run
        folder named `run` when given. Raises ConfigError / NotAllowed (data), RunNotFound (run), TooMany (one
        already running), before anything starts."""
        source = data if data in BUILT_IN else str(self._data(data))
        run_folder = self.run_path(run) if run else None
        stem = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(data.rstrip("/")).name or "data").lstrip(".-") or "data"
        with self._lock:
            if any(job.state == "running" for job in self._jobs.values()):
                raise TooMany("a diagnosis is already running here; wait for it to finish")
            name = f"{stem[:80]}-{time.strftime('%Y%m%d-%H%M%S')}"
            while name in self._jobs or (self.root / name).exists():
                name += "x"
            job = self._jobs[name] = Diagnosing(name, data, run, self.root / name)
            thread = threading.Thread(
                target=self._work, args=(job, source, run_folder), name=f"convscope-doctor-{name}", daemon=True
            )
            self._threads.append(thread)
        thread.start()
        return job

    def _data(self, data: str) -> Path:
        """check_data(data, files=True), its refusal of a path that does not exist made plain when the path lies
        inside a data root: "no such folder or file: PATH" (the generic message lists what data may be)."""
        try:
            return self.check_data(data, files=True)
        except ConfigError as err:
            missing = self._missing(Path(data))
            if missing is None:
                raise
            raise ConfigError(f"no such folder or file: {missing}") from err

    def _missing(self, path: Path) -> Path | None:
        """Where `path` would be when it does not exist but its nearest existing folder is inside a data root (asked
        of check_data itself, which alone knows the roots); None otherwise (outside, or there but not a folder)."""
        for above in path.parents:
            rest = path.relative_to(above)
            if ".." in rest.parts:
                return None
            try:
                real = self.check_data(str(above))
            except ConfigError:  # not there either: the folder above it decides
                continue
            except ConvscopeError:  # there, but outside every data root
                return None
            return None if os.path.lexists(real / rest) else real / rest
        return None

    def _work(self, job: Diagnosing, source: str, run_folder: Path | None) -> None:
        from convscope.diagnosis.doctor import diagnose
        from convscope.diagnosis.report import write_report

        def progress(stage: str, done: int, total: int) -> None:
            if self._stopping:
                raise Stopped
            job.stage, job.done, job.total = stage, done, total

        try:
            diagnosis = diagnose(source, run_folder, progress=progress)
            job.stage = "report"
            write_report(diagnosis, job.folder)
            doc = diagnosis.as_dict()
            for finding in doc["findings"]:
                finding["examples"] = finding["examples"][:SHOWN]
            job.diagnosis, job.state = doc, "finished"
        except Stopped:
            job.state, job.message = "failed", "the studio stopped"
        except ConvscopeError as err:
            job.state, job.message = "failed", str(err)
        except Exception as err:  # a bug: its line on the page, its traceback in the log
            log.exception("convscope studio: the diagnosis of %s failed", job.data)
            job.state, job.message = "failed", f"internal error: {type(err).__name__}: {err}"[:300]
        finally:
            job.seconds = time.time() - job.started

    def get(self, name: str) -> Diagnosing:
        """Raises KeyError for a diagnosis not started here."""
        with self._lock:
            return self._jobs[name]

    def list(self) -> list[dict[str, Any]]:
        with self._lock:
            jobs = list(self._jobs.values())
        return [job.to_dict() for job in sorted(jobs, key=lambda j: j.started, reverse=True)]

    def report(self, name: str) -> Path:
        """The report.html of the diagnosis `name` (started here and finished). Raises KeyError otherwise."""
        if not NAME.fullmatch(name):
            raise KeyError(name)
        job = self.get(name)
        if job.state != "finished":
            raise KeyError(name)
        return job.folder / "report.html"

    def close(self, wait: float = 5.0) -> None:
        """At shutdown: a running diagnosis stops at its next progress report; waits up to `wait` seconds."""
        self._stopping = True
        deadline = time.monotonic() + wait
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))


# The report is a page of its own (inline style and pictures, no script): served so that it can run nothing.
REPORT_POLICY = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


def doctor_routes(diagnoses: Diagnoses) -> APIRouter:
    """The dataset doctor: start a diagnosis, follow it, read its report."""
    router = APIRouter()

    @router.get("/api/doctor")
    def api_diagnoses() -> list[dict[str, Any]]:
        return diagnoses.list()

    @router.post("/api/doctor")
    def api_diagnose(data: Annotated[str, Form(max_length=1000)], run: Annotated[str, Form(max_length=255)] = ""):
        return diagnoses.start(data, run or None).to_dict()

    @router.get("/api/doctor/{name}")
    def api_diagnosis(name: str) -> dict[str, Any]:
        try:
            return diagnoses.get(name).to_dict()
        except KeyError:
            raise HTTPException(404, f"no diagnosis {name[:80]!r} was started here") from None

    @router.get("/doctor/{name}/report.html")
    def doctor_report(name: str) -> Response:
        try:
            text = diagnoses.report(name).read_bytes()
        except (KeyError, OSError):
            raise HTTPException(404, f"no finished diagnosis {name[:80]!r} here") from None
        return Response(text, media_type="text/html", headers={"Content-Security-Policy": REPORT_POLICY})

    return router
