"""Where a command's --out may write, checked before any work: a file or an existing folder, never what is not
convscope's to replace.

Every command with --out takes a file path or an existing folder (out_file: the command's default name inside it),
or a folder (out_folder: a run folder, a folder of pictures). Each is refused in one line (OutputError, exit status 2
from the CLI) when it is a device, a named pipe or a socket; when a folder above it is a regular file; when the
folder it would go in cannot be written (read-only, no permission); when it lies inside a run folder where the
command does not write by design; and, for a file, when it exists and convscope did not write it (unless
`overwrite`). convscope's pictures and pages carry a mark (files.written_by_convscope), so running a command again
replaces its own output silently while a user's file of the same name needs --overwrite.

Ground floor: only paths and `os.stat`; nothing is opened but a regular file's first bytes (for the mark).
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterable
from fnmatch import fnmatchcase
from pathlib import Path

from convscope.errors import OutputError
from convscope.files import check_replaceable, written_by_convscope

RUN_MARKERS = ("config.yaml", "spec.yaml")  # the two files every run folder holds (run.py's CONFIG and SPEC)


def out_file(
    path: str | os.PathLike, default_name: str, overwrite: bool = False, run_names: Iterable[str] = ()
) -> Path:
    """The file a command writes for `--out path`: `path` itself, or `path/default_name` when `path` is an existing
    folder. Checked by check_file_in_folder (see there); returns the file's path. Raises OutputError."""
    path = Path(path)
    if _mode(path) is not None and stat.S_ISDIR(_mode(path)):
        path = path / default_name
    check_file_in_folder(path, overwrite, run_names)
    return path


def out_folder(path: str | os.PathLike, run_names: Iterable[str] = (), flag: str = "--out") -> Path:
    """A folder a command writes in (it may not exist yet: it is made later): refused when it exists and is not a
    folder (a file, a device, a pipe, a socket), when a folder above it is a file, when the folder it is (or would be
    made in) cannot be written, and when it lies inside a run folder other than at `run_names` (globs relative to
    the run folder, e.g. 'detections'; a run folder itself is the caller's to judge). Returns `path` as a Path.
    Raises OutputError naming `flag` and the path."""
    path = Path(path)
    mode = _mode(path)
    if mode is not None and not stat.S_ISDIR(mode):
        raise OutputError(f"{path}: is {_kind(mode)}; {flag} takes a folder. Nothing was changed")
    _check_writable(path if mode is not None else _existing_above(path, path))
    run = run_folder_above(path)
    if run is not None and not _allowed(path, run, run_names):
        raise OutputError(
            f"{path}: is inside the run folder {run}, which holds only what convscope writes there; give {flag} a "
            "folder outside it. Nothing was changed"
        )
    return path


def check_file_in_folder(path: str | os.PathLike, overwrite: bool = False, run_names: Iterable[str] = ()) -> None:
    """Refuse, with an OutputError naming `path`, a file a command would write that is not a regular file (a folder,
    device, pipe, socket), sits under a regular file or in a folder that cannot be written, lies inside a run folder
    at a name other than `run_names` (globs relative to the run folder, such as 'filters-*.png': what the command
    writes there by design, replaced silently), or exists without convscope's mark (unless `overwrite`)."""
    path = Path(path)
    check_replaceable(path)
    _check_writable(_existing_above(path.parent, path))
    run = run_folder_above(path)
    if run is not None:
        if not _allowed(path, run, run_names):
            raise OutputError(
                f"{path}: is inside the run folder {run}, which holds only what convscope writes there; write "
                "outside it (or leave --out out for the default place). Nothing was changed"
            )
        return
    if _mode(path) is not None and not overwrite and not written_by_convscope(path):
        raise OutputError(f"{path}: exists and was not written by convscope; --overwrite replaces it")


def run_folder_above(path: str | os.PathLike) -> Path | None:
    """The nearest folder above `path` (not `path` itself; links resolved) that is a run folder (it holds config.yaml
    and spec.yaml), or None."""
    for folder in Path(path).resolve().parents:
        if all(_is_file(folder / name) for name in RUN_MARKERS):
            return folder
    return None


# ── helpers ───────────────────────────────────────────────────────────────────────────────────────────────────────
def _allowed(path: Path, run: Path, run_names: Iterable[str]) -> bool:
    """Whether `path`, inside the run folder `run`, is at one of `run_names` (globs relative to `run`)."""
    inside = path.resolve().relative_to(run).as_posix()
    return any(fnmatchcase(inside, name) for name in run_names)


def _mode(path: Path) -> int | None:
    """st_mode of what `path` names (links followed), None when nothing is there."""
    try:
        return os.stat(path).st_mode
    except (OSError, ValueError):
        return None


def _is_file(path: Path) -> bool:
    mode = _mode(path)
    return mode is not None and stat.S_ISREG(mode)


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISREG, "a file"),
        (stat.S_ISFIFO, "a named pipe (FIFO)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a folder"


def _existing_above(folder: Path, target: Path) -> Path:
    """The nearest of `folder` and its parents that exists: a folder, where `target`'s missing folders would be made.
    OutputError when it is not a folder (a regular file, a device), since nothing can be made under it."""
    for candidate in (folder, *folder.parents):
        mode = _mode(candidate)
        if mode is None:
            continue
        if not stat.S_ISDIR(mode):
            raise OutputError(
                f"{target}: cannot be written, {candidate} is {_kind(mode)}, not a folder. Nothing was changed"
            )
        return candidate
    return Path.cwd()


def _check_writable(folder: Path) -> None:
    """OutputError when nothing can be made in `folder` (a read-only file system, or no permission)."""
    if os.access(folder, os.W_OK | os.X_OK):
        return
    try:
        read_only = bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):
        read_only = False
    reason = os.strerror(errno.EROFS if read_only else errno.EACCES)
    raise OutputError(f"{folder}: cannot write in this folder ({reason}). Nothing was changed")
