"""Trainings started from the studio: `convscope train` in a child process, writing a run folder inside `--runs`.

A child process, not a thread: training keeps its own Ctrl-C handling (Stop sends SIGINT, so the run saves at the
end of its batch and stays resumable, exactly as Ctrl-C in a terminal), its own thread count, and cannot block the
web server. The run folder is named here when the training starts (its date and time: a preview shows the pattern,
never a name that would not be the one started), so the page can follow it from the first second.

A page may start at most `max_trainings` at once (429 beyond), each on a built-in dataset or a folder inside one of
the `data_roots` (403 otherwise: a page cannot make the studio read any folder of the machine). A relative folder
is looked up in the data roots, in their order (the first is `--runs`), never in the server's working folder.

A training is planned before it starts (`Jobs.plan`, what the page's preview shows): every field checked (422 in the
studio's words), a spec's text linted (400 naming its line), the command and the recipe it resolves to. A spec
written on the page is saved in the studio's own temporary folder under its SHA-256 (never beside the user's data):
the child reads it with `--model FILE.yaml`, and the run folder keeps its own spec.yaml — the file a started job's
command names, since the studio's folder is deleted when it stops. A spec that is the chosen preset, unchanged, trains
as the preset itself, so the preset's recipe applies.

A classifier's data folder is checked for what a new user gives by mistake: a folder of data sets (a data root: its
would-be classes hold train/ or test/ or a detection layout) or a detection data set (format_of recognises it).
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from convscope.data.folder import IMAGE_SUFFIXES
from convscope.data.load import BUILT_IN
from convscope.errors import ConfigError, ConvscopeError, DataError, SpecError
from convscope.files import atomic_write_text
from convscope.presets import get_preset, preset_names
from convscope.studio.guards import AUGMENT_CHARS, SPEC_CHARS, NotAllowed, OutOfBounds, TooMany, check
from convscope.studio.spec_lint import lint

WHEN = "YYYYMMDD-HHMMSS"  # the run folder's time stamp, as a preview shows it (time.strftime's %Y%m%d-%H%M%S)
CLASSES_LOOKED_AT = (
    32  # class folders checked for being data sets themselves: enough for a data root, cheap for ImageNet
)
STOP_WAIT = 3.0  # seconds the studio waits, at shutdown, for its trainings to save after Ctrl-C before killing them


@dataclass
class Job:
    name: str  # the run folder's name inside --runs
    command: list[str]
    process: subprocess.Popen
    log: Path  # the child's terminal output
    started: float = field(default_factory=time.time)
    stopped: bool = False  # Stop was pressed
    shown: list[str] | None = None  # the command as shown: a written spec read from the run's own spec.yaml

    def to_dict(self) -> dict[str, Any]:
        code = self.process.poll()
        state = "running" if code is None else "finished" if code == 0 else "stopped" if self.stopped else "failed"
        lines = self.log.read_text(errors="replace").splitlines() if self.log.is_file() else []
        errors = [line for line in lines if line.startswith("convscope:")]
        return {"name": self.name, "state": state, "exit_code": code, "message": errors[-1] if errors else "",
                "command": shown_command(self.shown or self.command), "started": self.started,
                "resume": shlex.join(["convscope", "train", "--resume", self.command[-1]])}  # fmt: skip


def shown_command(command: list[str]) -> str:
    """The child's command as a person would type it: 'convscope train --model lenet5 …' (quoted where needed)."""
    return shlex.join(["convscope", *command[3:]])


@dataclass(frozen=True)
class Plan:
    """A training checked and ready to start: its run folder's name (less the time it starts), the child's command
    (its --out the pattern), what it resolves to."""

    stem: str  # the run folder's name is f"{stem}-{time it starts}"
    command: list[str]
    recipe: str  # the recipe line the training prints when it starts ('' for a model without a recipe)
    settings: str  # the resolved settings that matter most: 'epochs 1, batch_size 16, optimizer adamw, lr 0.002 …'
    spec: str  # the spec's name, or the preset's
    spec_file: str | None  # the file a written spec was saved to; None for a preset

    def to_dict(self) -> dict[str, Any]:
        return {"name": f"{self.stem}-{WHEN}", "command": shown_command(self.command), "recipe": self.recipe,
                "settings": self.settings, "spec": self.spec, "spec_file": self.spec_file,
                "named": f"the run folder is named when it starts: {WHEN} is its date and time"}  # fmt: skip


@dataclass(frozen=True)
class TrainRequest:
    """What the Train page asks for; None: not given (the model's recipe, then TrainConfig's default)."""

    model: str  # a preset
    data: str
    epochs: int = 2
    spec: str | None = None  # a spec's YAML text, written or pasted on the page
    batch_size: int | None = None
    lr: float | None = None
    augment: str | None = None  # 'flip,translate=2', 'none'
    device: str | None = None  # auto, cpu, cuda, cuda:N, mps: one this machine has
    per_class: int | None = None  # images per class (seeded); None: all

    def flags(self) -> list[str]:
        """The settings given, as `convscope train` flags (their order fixed, so a preview is what starts)."""
        given = [("--batch-size", self.batch_size), ("--lr", self.lr), ("--augment", self.augment),
                 ("--per-class", self.per_class), ("--device", self.device)]  # fmt: skip
        return [part for flag, value in given if value is not None for part in (flag, str(value))]  # 1e-05: exact


class Jobs:
    """The trainings this studio started (thread-safe): at most `max_trainings` running at once, on built-in data
    or folders inside `data_roots` (default: `runs_dir` only)."""

    def __init__(self, runs_dir: Path, logs: Path, max_trainings: int = 1, data_roots=None) -> None:
        self.runs_dir, self.logs, self.max_trainings = runs_dir, logs, max_trainings
        self.data_roots = tuple(Path(r).resolve() for r in (data_roots or [runs_dir]))
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()

    def plan(self, request: TrainRequest | str, data: str = "", epochs: int = 2) -> Plan:
        """Check `request` (or preset `request` on `data` for `epochs`) and say what would start; nothing starts (a
        written spec is saved, under its hash).
        Raises ConfigError for an unknown model or missing folder, SpecError (400) naming the line of a spec that
        cannot run, NotAllowed (403) for a folder outside the data roots, OutOfBounds (422) for a field out of its
        bounds (a number, the spec's or augment's length, a device this machine does not have)."""
        r = TrainRequest(request, data, epochs) if isinstance(request, str) else request
        if r.model not in preset_names():
            presets = ", ".join(preset_names())
            raise ConfigError(f"model must be one of the presets: {presets}. Received: {r.model[:40]!r}")
        for name in ("epochs", "batch_size", "lr", "per_class"):
            if getattr(r, name) is not None:
                check(name, getattr(r, name))
        self._check_texts(r)
        model, spec_name, spec_file, net = self._model(r)
        folder = r.data if r.data in BUILT_IN else str(check_layout(self.check_data(r.data), net.is_detector))
        settings = {"model": model, "data": folder, "epochs": r.epochs}
        settings |= {k: getattr(r, k) for k in ("batch_size", "lr", "augment", "device", "per_class")}
        config = _config({k: v for k, v in settings.items() if v is not None})
        stem = re.sub(r"[^A-Za-z0-9._-]+", "-", f"{spec_name}-{Path(r.data.rstrip('/')).name}")[:80]
        command = [sys.executable, "-m", "convscope", "train", "--model", model, "--data", folder,
                   "--epochs", str(r.epochs), *r.flags(), "--out", str(self.runs_dir / f"{stem}-{WHEN}")]  # fmt: skip
        return Plan(stem, command, config.recipe_line(), _settings_line(config), spec_name, spec_file)

    def start(self, request: TrainRequest | str, data: str = "", epochs: int = 2) -> Job:
        """Start the training `request` asks for (or preset `request` on `data` for `epochs`), checked as `plan`
        checks it. Raises as `plan` does, and TooMany (429) when `max_trainings` run."""
        plan = self.plan(request, data, epochs)
        with self._lock:
            running = sum(job.process.poll() is None for job in self._jobs.values())
            if running >= self.max_trainings:
                raise TooMany(f"{running} training(s) already running, the most this studio starts at once "
                              f"(convscope serve --max-trainings {self.max_trainings}): stop one or wait")  # fmt: skip
            name = self._free(f"{plan.stem}-{time.strftime('%Y%m%d-%H%M%S')}")
            command = [*plan.command[:-1], str(self.runs_dir / name)]
            # A written spec's file goes when the studio stops; the run's own copy does not (it writes it first).
            at = command.index("--model") + 1
            shown = [*command[:at], str(self.runs_dir / name / "spec.yaml"), *command[at + 1 :]]
            log = self.logs / f"{name}.log"
            with log.open("w") as out:
                process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            job = self._jobs[name] = Job(name, command, process, log, shown=shown if plan.spec_file else None)
        return job

    def _free(self, name: str) -> str:
        """`name`, or with x's added until no training of this studio and no folder in --runs has it."""
        while name in self._jobs or (self.runs_dir / name).exists():
            name += "x"
        return name

    def _check_texts(self, r: TrainRequest) -> None:
        if r.spec is not None and len(r.spec) > SPEC_CHARS:
            raise OutOfBounds(f"spec must be at most {SPEC_CHARS:,} characters of YAML. Received: {len(r.spec):,}")
        if r.augment is not None:
            try:
                check_augment(r.augment)
            except ConvscopeError as err:
                raise OutOfBounds(str(err)) from None
        if r.device is not None and r.device not in devices():
            raise OutOfBounds(f"device must be one of this machine's: {', '.join(devices())}. "
                              f"Received: {r.device[:40]!r}")  # fmt: skip

    def _model(self, r: TrainRequest) -> tuple[str, str, str | None, Any]:
        """(--model's value, the network's name, the file a written spec is saved to, the NetSpec). A spec that cannot
        run is a SpecError naming its line; the chosen preset, unchanged, is the preset's name."""
        preset = get_preset(r.model)
        if r.spec is None or not r.spec.strip():
            return r.model, r.model, None, preset
        linted = lint(r.spec)
        if linted.spec is None:
            raise SpecError(linted.message())
        if linted.spec == preset:
            return r.model, r.model, None, preset
        digest = hashlib.sha256(r.spec.encode()).hexdigest()[:16]
        path = self.logs / "specs" / f"{digest}.yaml"  # the studio's own temporary folder, never the user's data
        if not path.is_file():
            atomic_write_text(path, r.spec)
        return str(path), linted.spec.name, str(path), linted.spec

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


def check_layout(folder: Path, detector: bool) -> Path:
    """`folder`, when its layout suits the network: a detection data set (convscope's own format_of) for a detector;
    for a classifier, class folders (flat, or in train/ …: split_layout) that are neither data sets themselves (a data
    root given by mistake) nor a detection data set. DataError (one line, naming the folder) otherwise."""
    from convscope.data.detection.formats import format_of
    from convscope.data.folder import VAL_NAMES, class_folders, split_layout

    if detector:
        format_of(folder)  # its DataError names the folder and the layouts a detector reads
        return folder
    expected = "one subfolder of images per class (or train/ and test/ of them)"
    try:
        found = format_of(folder)
    except DataError:
        found = None
    if found is not None:
        raise DataError(f"data {folder}: is a detection data set ({found.name} layout), but the network is a "
                        f"classifier: expected {expected}")  # fmt: skip
    splits = {"train", "test", *VAL_NAMES}
    split, detection = [], []  # would-be classes that are classification data sets, detection data sets
    for name, sub in list(class_folders(split_layout(folder)[0]["train"]).items())[:CLASSES_LOOKED_AT]:
        if any(s.lower() in splits and class_folders(p) for s, p in class_folders(sub).items()):
            split.append(name)
        elif _detection(sub, format_of):
            detection.append(name)
    if split or detection:
        sets = sorted(split + detection)
        shown = ", ".join(sets[:4]) + (", …" if len(sets) > 4 else "")
        raise DataError(f"data {folder}: its class folders {shown} are data sets themselves (train/ or test/, or a "
                        f"detection layout): give one of them, e.g. {folder / (split or detection)[0]}; expected "
                        f"{expected}")  # fmt: skip
    return folder


def _detection(folder: Path, format_of) -> bool:
    """Whether `folder` is a detection data set. Every layout convscope reads keeps its labels or images in subfolders
    or beside a file only a data set has, so a folder of images only (a real class) is settled by one listing, not by
    format_of reading its thousands of files (0.3 s a CIFAR-10 class, for every preview)."""
    try:
        with os.scandir(folder) as entries:
            if all(entry.is_file() and entry.name.lower().endswith(IMAGE_SUFFIXES) for entry in entries):
                return False
    except OSError:
        return False
    try:
        format_of(folder)
    except DataError:
        return False
    return True


def check_augment(text: str) -> None:
    """Augment words as `convscope train --augment` takes them; ConfigError otherwise (a classifier's words only)."""
    from convscope.data.augment import Augment

    if len(text) > AUGMENT_CHARS:
        raise ConfigError(f"augment must be at most {AUGMENT_CHARS} characters. Received: {len(text):,}")
    words = [w for w in text.split(",") if w.strip() not in ("scale", "color")]  # a detector's, as TrainConfig
    Augment.parse(",".join(words) or "none")


@functools.cache
def devices() -> tuple[str, ...]:
    """The --device values this machine takes: auto, cpu, and the GPUs it has (cuda, cuda:N, mps); found once."""
    from convscope.device import available_devices

    found = available_devices().split(", ")
    return ("auto", *(["cuda"] if any(d.startswith("cuda") for d in found) else []), *found)


def _config(settings: dict[str, Any]):
    """The TrainConfig the child will resolve from these flags (the model's recipe filled in), as train reads them."""
    from convscope.config import TrainConfig

    return TrainConfig.from_dict(settings, "the Train page")


def _settings_line(config) -> str:
    """'epochs 1, batch_size 16, optimizer adamw, lr 0.002 (adamw's default), schedule onecycle, augment flip, all
    images of each class, device auto': the settings the run will use, in the CLI's words."""
    lr = f"lr {config.learning_rate:g}" + ("" if config.lr is not None else f" ({config.optimizer}'s default)")
    each = "all images of each class" if config.per_class is None else f"per_class {config.per_class}"
    return (f"epochs {config.epochs}, batch_size {config.batch_size}, optimizer {config.optimizer}, {lr}, schedule "
            f"{config.schedule}, augment {config.augmentation().text()}, {each}, device {config.device}")  # fmt: skip
