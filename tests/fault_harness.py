"""Fault injection for a run folder's writes, shared by the crash-safety tests of every kind of training.

Every file convscope writes into a run folder is an atomic write (files.atomic_write_bytes): a temporary file
beside the target, its bytes fsync-ed, then `os.replace` onto the target. Each rename is a *write boundary*; a kill
between two of them is what a crash can leave. This module makes the Nth write under a folder go wrong:

- "kill-before": the writer dies with the temporary file complete but not renamed (the target keeps its old bytes);
- "kill-after":  the writer dies right after the rename, before anything else;
- "fsync":       the fsync of the temporary file fails with ENOSPC (a full disk), so the write raises;
- "rename":      the rename fails with EIO (an I/O error), so the write raises;
- "then":        the write goes through, then `action()` runs (e.g. `fill` the disk the run is on).

In-process (`run_with_fault`, a callable) a kill is the BaseException `Killed`, which no `except Exception`
clean-up catches; a real kill runs no clean-up at all, so what that clean-up removes (the temporary file) is put back
first. In a child process (`run_command_with_fault`, a `convscope` command line) a kill is SIGKILL, the real thing.
`write_boundaries` lists the boundaries of an uninterrupted run; `outcome` and `differences` compare two runs' final
weights bit for bit; `tmpfs` mounts a small file system of its own (as root) that `fill` fills up.
"""

from __future__ import annotations

import errno
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FAULTS = ("kill-before", "kill-after", "fsync", "rename")  # the faults every write boundary is tried with
_KINDS = (*FAULTS, "then")
_TEMP = re.compile(r"\.(?P<target>.+)\.[a-z0-9_]{8}\.tmp")  # what tempfile names an atomic write's temporary file
TESTS = Path(__file__).resolve().parent


Ending = BaseException | None  # how a run under a fault ended: its exception, or None when it finished


class Killed(BaseException):
    """What SIGKILL does to the writer, in-process: nothing after this point runs (no `except Exception` cleanup)."""


def _raise_killed() -> None:
    raise Killed


def _sigkill() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


@dataclass
class Injector:
    """Makes write number `n` (1-based) under `root` go wrong as `fault` says; counts every write under `root`.

    `kill` is what a kill does (raise Killed in-process, SIGKILL in a child). After the run, `writes` holds the
    target file names of the writes that happened (renamed) in order, and `hit` the one the fault struck (None when
    the run made fewer than `n` writes)."""

    root: Path
    n: int
    fault: str
    kill: Callable[[], None] = _raise_killed
    action: Callable[[], Any] | None = None  # what "then" runs
    writes: list[str] = field(default_factory=list)
    hit: str | None = None

    def __post_init__(self) -> None:
        if self.fault not in _KINDS:
            raise ValueError(f"fault must be one of {_KINDS}, not {self.fault!r}")
        self.root = Path(os.path.abspath(self.root))
        self._replace, self._fsync = os.replace, os.fsync

    def _ours(self, path: str | os.PathLike) -> bool:
        return Path(os.path.abspath(path)).is_relative_to(self.root)

    def replace(self, src, dst) -> None:
        if not self._ours(dst):  # another folder's writes (a data cache's) are not counted
            return self._replace(src, dst)
        number = len(self.writes) + 1
        if number != self.n or self.fault == "fsync" or self.hit is not None:
            self.writes.append(Path(dst).name)
            return self._replace(src, dst)
        self.hit = Path(dst).name
        if self.fault == "rename":
            raise OSError(errno.EIO, os.strerror(errno.EIO), str(dst))
        if self.fault == "kill-before":
            if self.kill is _raise_killed:  # the writer's clean-up will remove src; a real kill would leave it
                src = str(src)
                shutil.copy(src, src[: -len("12345678.tmp")] + "left1234.tmp")
            self.kill()
        self._replace(src, dst)
        self.writes.append(self.hit)
        if self.fault == "then":
            return self.action()
        self.kill()

    def fsync(self, fd: int) -> None:
        if self.fault == "fsync" and len(self.writes) + 1 == self.n and self.hit is None:
            name = os.readlink(f"/proc/self/fd/{fd}")
            if self._ours(name) and (match := _TEMP.fullmatch(Path(name).name)):
                self.hit = match["target"]
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self._fsync(fd)


@contextmanager
def injected(root: str | os.PathLike, n: int, fault: str, kill: Callable[[], None] = _raise_killed,
             action: Callable[[], Any] | None = None) -> Iterator[Injector]:  # fmt: skip
    """Within the body, write number `n` under `root` goes wrong as `fault` says (see the module's docstring).
    Patches `os.replace` and `os.fsync`, which convscope's atomic writes call through the `os` module. progress.json
    is written only at each epoch's end meanwhile: its writes within an epoch come once a second, so their number
    would depend on the machine's speed and write N would not be the same file in every run."""
    from convscope.training import live

    injector = Injector(Path(root), n, fault, kill, action)
    os.replace, os.fsync = injector.replace, injector.fsync
    every, live.EVERY = live.EVERY, math.inf
    try:
        yield injector
    finally:
        os.replace, os.fsync = injector._replace, injector._fsync
        live.EVERY = every


def write_boundaries(fn: Callable[[], Any], root: str | os.PathLike) -> tuple[Any, list[str]]:
    """Run `fn()` uninterrupted: what it returned, and the names of the files it wrote under `root`, in order (a
    name once per write)."""
    with injected(root, 0, "kill-after") as injector:  # write 0 never comes
        result = fn()
    return result, injector.writes


def run_with_fault(fn: Callable[[], Any], root: str | os.PathLike, n: int, fault: str) -> tuple[Ending, Injector]:
    """Run `fn()` with write `n` under `root` going wrong: the exception it ended with (Killed for a kill, the
    library's error for a failed write; None when it finished), and the injector (`hit`: the file struck)."""
    with injected(root, n, fault) as injector:
        try:
            fn()
        except BaseException as err:  # noqa: BLE001 - Killed is a BaseException on purpose
            if isinstance(err, KeyboardInterrupt):
                raise
            return err, injector
    return None, injector


def run_command_with_fault(args: list[str], root: str | os.PathLike, n: int, fault: str, timeout: float = 300):
    """`convscope ARGS` in a child process whose write `n` under `root` goes wrong (a kill is SIGKILL): the
    CompletedProcess (returncode -9 when killed; stdout and stderr as text)."""
    code = f"import sys; sys.path.insert(0, {str(TESTS)!r}); import fault_harness; fault_harness._child()"
    command = [sys.executable, "-c", code, str(root), str(n), fault, *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def _child() -> None:
    root, n, fault, *args = sys.argv[1:]
    from convscope.cli import main

    with injected(root, int(n), fault, kill=_sigkill):
        code = main(args)
    sys.exit(code)


def again(out: Path, start: Callable[[], Any]) -> None:
    """What a user does after a crash: `--resume` a run that had not finished; `start()`, the same command again,
    where no run was made yet (nothing blocks it)."""
    from convscope.tasks.train import train

    if not (out / "config.yaml").exists():
        start()
    elif not (out / "results.json").exists():
        train(resume=out, report=False)


# ── a real full disk ──────────────────────────────────────────────────────────────────────────────────────────────
@contextmanager
def tmpfs(path: str | os.PathLike, size: str, options: str = "") -> Iterator[Path]:
    """A tmpfs of `size` bytes ("8m") mounted on `path` (made if missing) for the body, unmounted after it; `options`
    adds mount options ("ro": a read-only file system, which root cannot write either). Skips the calling test,
    saying why, where it cannot be mounted (not root, or no right to mount in this container)."""
    import pytest

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    settings = ",".join(filter(None, (options, f"size={size}")))
    command = ["mount", "-t", "tmpfs", "-o", settings, "tmpfs", str(path)]
    mounted = subprocess.run(command, capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip() or mounted.returncode})")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True, capture_output=True)


def fill(folder: str | os.PathLike) -> Path:
    """Fill the file system `folder` is on with one file in it, until the system says ENOSPC: that file (delete it
    to free the space)."""
    filler = Path(folder) / "filler"
    with open(filler, "wb", buffering=0) as f:
        for chunk in (2**20, 4096, 1):  # then whatever part of a page is left
            try:
                while True:
                    f.write(b"\0" * chunk)
            except OSError as err:
                if err.errno != errno.ENOSPC:
                    raise
    return filler


# ── comparing runs ────────────────────────────────────────────────────────────────────────────────────────────────
def outcome(path: str | os.PathLike) -> dict[str, Any]:
    """What must be bit-identical between two runs of the same settings: both weight files (every tensor), the
    metrics.csv rows without their seconds column, and results.json without its times."""
    from safetensors.torch import load_file

    path = Path(path)
    rows = (path / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    keep = [i for i, name in enumerate(header) if name != "seconds"]
    results = json.loads((path / "results.json").read_text())
    return {
        "metrics": [[cells[i] for i in keep] for cells in (row.split(",") for row in rows)],
        "weights": {p.name: load_file(p) for p in sorted((path / "weights").glob("*.safetensors"))},
        "results": {k: v for k, v in results.items() if not k.endswith("seconds")},
    }


def differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """What differs between two `outcome`s, one line each (empty: bit-identical)."""
    import torch

    found = [f"{key} differ" for key in ("metrics", "results") if a[key] != b[key]]
    if a["weights"].keys() != b["weights"].keys():
        return [*found, f"weight files {sorted(a['weights'])} != {sorted(b['weights'])}"]
    for name, tensors in a["weights"].items():
        other = b["weights"][name]
        if tensors.keys() != other.keys():
            found.append(f"{name}: tensor names differ")
            continue
        found += [f"{name}: {key} differs" for key in tensors if not torch.equal(tensors[key], other[key])]
    return found


def temp_files(path: str | os.PathLike) -> list[Path]:
    """Temporary files of atomic writes left anywhere under `path`."""
    return [p for p in Path(path).rglob("*.tmp") if _TEMP.fullmatch(p.name)]
