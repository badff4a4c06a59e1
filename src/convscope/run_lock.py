"""The one writer of a run folder (`RunLock`, an flock on RUN/.lock) and whether a training holds a folder now."""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import socket
import sys
import time
from pathlib import Path

from convscope.errors import CheckpointError, OutputError
from convscope.run import LOCK


class RunLock:
    """The one writer of a run folder: an exclusive `fcntl.flock` on RUN/.lock, held for a training's whole life.

    flock (standard library) rather than a lock file whose existence is the lock: the kernel drops it when the
    process ends in any way, SIGKILL included, so a stale lock never has to be broken by hand. The holder writes
    who it is into the file, so a second writer is refused with a line naming it. Readers (evaluate, predict,
    report) take no lock: they read the complete files the last checkpoint left.
    Raises CheckpointError when another process holds the folder; OutputError when it cannot be written.
    """

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.fd: int | None = None

    def __enter__(self) -> RunLock:
        path = self.folder / LOCK
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise OutputError(f"{self.folder}: cannot write in this folder ({err.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise CheckpointError(
                f"{self.folder}: another training is writing this run ({holder}); "
                "wait for it to end or use another --out"
            ) from None
        try:
            replaced = os.fstat(fd).st_ino != os.stat(path).st_ino
        except FileNotFoundError:
            replaced = True
        if replaced:  # the training that held it failed and removed the folder it had made: ours is gone
            os.close(fd)
            raise CheckpointError(f"{self.folder}: was removed by the training that made it; try again")
        started = time.strftime("%Y-%m-%d %H:%M:%S")
        command = " ".join(["convscope", *sys.argv[1:]]) if sys.argv[0].endswith(("convscope", "__main__.py")) else ""
        holder = f"pid {os.getpid()} on {socket.gethostname()} since {started}" + (f": {command}" if command else "")
        os.ftruncate(fd, 0)
        os.pwrite(fd, holder[:900].encode(), 0)
        self.fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self.fd, 0)  # nobody holds it now
            os.close(self.fd)  # closing the descriptor releases the flock
            self.fd = None


def training_alive(folder: str | Path) -> bool:
    """Whether a training holds `folder` now: its lock names a live process (read, never locked: taking even a
    shared lock could make a training that starts at that instant refuse the folder). A training killed without
    unlocking (SIGKILL) leaves its line behind, but its process is gone. A line from another machine (a shared
    folder) cannot be checked and is trusted."""
    try:
        holder = (Path(folder) / LOCK).read_text(errors="replace")
    except OSError:
        return False
    found = re.match(r"pid (\d+) on (\S+) ", holder)  # as RunLock writes it
    if not found or found.group(2) != socket.gethostname():
        return bool(holder.strip())
    try:
        os.kill(int(found.group(1)), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_holder(fd: int) -> str:
    """Who holds the lock. The holder writes its line just after taking the lock, so an empty file is retried
    for up to a second before the line falls back to "another process"."""
    for _ in range(50):
        holder = os.pread(fd, 1000, 0).decode("utf-8", "replace").strip()
        if holder:
            return holder
        time.sleep(0.02)
    return "another process"
