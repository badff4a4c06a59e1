"""The runs the studio shows: the run folders directly inside `--runs`, their status, and nothing outside it.

A run is addressed by its folder's name only. `run_folder` refuses any other name (a path, `..`, a link that leads
out of the runs folder) as `RunNotFound`, and a run whose own files link outside its folder as `RunNotServed`, which
says which file; the app answers both with 404 (and the list leaves them out), and the first refusal of a run is
logged as a warning: the studio never reads a file that is not inside a run folder of `--runs`.
`picture` reads a report picture only when its real path (links followed) is inside the run folder, and opens it
without following a link (O_NOFOLLOW), so a file swapped for a link in between is refused too.

The studio only reads a run folder: nothing here, nor in what a page asks for, writes into one.
"""

from __future__ import annotations

import logging
import math
import os
import re
import stat
import threading
from pathlib import Path
from typing import Any

from convscope.errors import ConvscopeError, RunNotFound
from convscope.run import CHECKPOINT, CONFIG, RESULTS, WEIGHTS, load_run
from convscope.run_lock import training_alive
from convscope.tasks import task_of

NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,254}")
PICTURES = ("curves.png", "confusion.png", "wrong.png", "pr_curves.png", "predictions.png")  # the report's
MAX_PICTURE = 64 * 2**20  # bytes: a report picture larger than this is not one convscope drew

log = logging.getLogger(__name__)
_refused: set[tuple[str, str]] = (
    set()
)  # (folder, reason) already logged: each refused run is logged once, not at every request
_refused_lock = threading.Lock()


class RunNotServed(RunNotFound):
    """A run folder that is there but not served: one of its files links outside it. str(): the one-line reason."""


def run_folder(runs_dir: Path, name: str) -> Path:
    """The run folder `name` directly inside `runs_dir`. Raises RunNotFound for a name that is not a plain folder
    name, that leads elsewhere once links are followed, or that holds no run (no config.yaml); RunNotServed for a
    run one of whose files links outside it (outside_link), logged as a warning the first time."""
    if not NAME.fullmatch(name) or name.strip(".") == "":
        raise RunNotFound(name)
    path = runs_dir / name
    try:
        inside = path.resolve(strict=True).parent == runs_dir.resolve(strict=True)
    except OSError:
        raise RunNotFound(name) from None
    if not inside or not (path / CONFIG).is_file():
        raise RunNotFound(name)
    link = outside_link(path)
    if link is not None:
        reason = f"run {name} is not served: its file {link}"
        with _refused_lock:
            first = (str(path), reason) not in _refused
            _refused.add((str(path), reason))
        if first:
            log.warning("convscope studio: %s (%s)", reason, path)
        raise RunNotServed(reason)
    return path


def outside_link(path: Path) -> str | None:
    """Which of the run folder's own files (directly inside it, or in its weights/) is a link that leads outside
    the folder or nowhere, as 'NAME links outside the run folder' (NAME relative to the folder); None when none."""
    root = path.resolve()
    for folder in (path, path / WEIGHTS):
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:  # no weights/ yet
            continue
        for entry in entries:
            if entry.is_symlink():
                shown = Path(entry.path).relative_to(path).as_posix()[:80]
                try:
                    target = Path(entry.path).resolve(strict=True)
                except (OSError, RuntimeError):  # a dangling link or a loop
                    return f"{shown} is a link that leads nowhere"
                if not target.is_relative_to(root):
                    return f"{shown} links outside the run folder"
    return None


def picture(path: Path, file: str) -> bytes:
    """The report picture `file` (one of PICTURES) of the run folder `path`, read when its real path is inside the
    folder and it is a regular file of at most MAX_PICTURE bytes. Raises FileNotFoundError otherwise."""
    if file not in PICTURES:
        raise FileNotFoundError(file)
    real = (path / file).resolve(strict=True)  # FileNotFoundError, as for a missing picture
    if not real.is_relative_to(path.resolve()):
        raise FileNotFoundError(file)
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(real, flags)  # O_NOFOLLOW: replaced by a link since it was resolved → OSError (ELOOP)
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_PICTURE:  # a named pipe, a device, not a picture
            raise FileNotFoundError(file)
        return f.read(MAX_PICTURE)


def status(path: Path) -> str:
    """'running' (a training holds the folder's lock and its process lives), 'finished' (tested: results.json),
    'stopped' (a checkpoint to resume from) or 'not started' (no checkpoint yet)."""
    if training_alive(path):
        return "running"
    if (path / RESULTS).is_file():
        return "finished"
    return "stopped" if (path / CHECKPOINT).is_file() else "not started"


def list_runs(runs_dir: Path) -> list[dict[str, Any]]:
    """One entry per run folder directly inside `runs_dir`, newest first: name, status, task, model, data, epochs
    done and planned, and the test score (accuracy, or mAP@0.5 for a detector) when finished."""
    entries = []
    for path in sorted(runs_dir.iterdir(), key=lambda p: p.stat().st_mtime, reverse=True) if runs_dir.is_dir() else ():
        try:
            entries.append(run_entry(run_folder(runs_dir, path.name)))
        except (RunNotFound, ConvscopeError, OSError):
            continue  # not a run, or one whose files cannot be read: left out of the list
    return entries


def run_entry(path: Path) -> dict[str, Any]:
    """The list's entry of one run folder. Raises ConvscopeError for a run whose files cannot be read."""
    run = load_run(path)
    results = run.results()
    task = task_of(run)
    score = results.get(task.score_key)
    planned = run.config.epochs + run.config.finetune_epochs
    return {
        "name": path.name,
        "status": status(path),
        "task": task.name,
        "model": run.spec.name,
        "data": run.data.name,
        "classes": len(run.data.classes),
        "epochs": len(run.metrics()),
        "planned_epochs": planned,
        "score_name": task.score_name,
        "score": _number(score),
    }


def run_detail(path: Path) -> dict[str, Any]:
    """Everything the run page shows: the entry, the config, results.json, the layers (shapes and parameters, as
    `convscope summary` gives them), the metrics rows and the report's pictures that exist."""
    from convscope.shapes import infer

    run = load_run(path)
    report = infer(run.spec)
    layers = [
        {
            "index": info.index,
            "name": info.name,
            "label": info.label,
            "output": "×".join(map(str, info.output_shape)),
            "params": info.params,
            "macs": info.macs,
        }
        for info in report.layers
    ]
    return run_entry(path) | {
        "config": run.config.to_dict(),
        "resolved": resolved(run),
        "results": json_ready(run.results()),
        "layers": layers,
        "input": "×".join(map(str, run.spec.input)),
        "params": report.params,
        "class_names": list(run.data.classes),
        "metrics": metrics(path),
        "pictures": [name for name in PICTURES if (path / name).is_file()],
    }


def resolved(run) -> dict[str, Any]:
    """What the settings left to convscope became: the peak learning rate (the optimizer's default when none was
    given), the augmentation (chosen from the data when none was given), and the threads and precision training
    measured and chose, per phase (config.yaml's `tuning`, written when training starts; absent before)."""
    from convscope.yamlfile import read_yaml

    config = run.config
    try:
        tuning = read_yaml(run.path / CONFIG).get("tuning") or {}
    except (ConvscopeError, AttributeError):  # unreadable or hand-edited into something else: nothing to show
        tuning = {}
    chosen = [t for _, t in sorted(tuning.items()) if isinstance(t, dict)]
    return {
        "lr": config.learning_rate,
        "augment": config.augmentation().text(),
        "precision": ", ".join(str(t.get("precision")) for t in chosen) or None,
        "threads": ", ".join(str(t.get("threads")) for t in chosen) or None,
    }


def metrics(path: Path) -> list[dict[str, float | None]]:
    """metrics.csv as rows (NaN → None, which JSON can carry); [] before the first epoch."""
    try:
        rows = load_run(path).metrics()
    except ConvscopeError:
        return []
    return [{k: _number(v) for k, v in row.items()} for row in rows]


def json_ready(value: Any) -> Any:
    """JSON data with every non-finite number as None (a JSON response cannot carry NaN)."""
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None
