"""Where a command's --out may write, checked before any work: a file or an existing folder, never what is not
convscope's to replace.

Every command with --out takes a file path or a folder (out_file: the command's default name inside an existing
folder, or inside a name without a suffix, a folder made when missing), or a folder (out_folder: a run folder, a
folder of pictures). An empty --out is refused, never read as "the default place". Each is refused in one line
(OutputError, exit status 2 from the CLI) when it is a device, a named pipe or a socket; when a folder above it is a
regular file; when the folder it would go in cannot be written (read-only, no permission); when it lies inside a run
folder where the command does not write by design (only the command's own run, `own_run`, takes its outputs; links
are resolved first, so a link to another run's folder is refused as that folder is); and, for a file, when it exists
and convscope did not write it (unless `overwrite`). convscope's pictures and pages carry a mark
(files.written_by_convscope), so running a command again replaces its own output silently while a user's file of the
same name needs --overwrite.

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
# Suffixes of files: a folder command refuses a new --out ending in one (`featuremaps --out fm.png`).
FILE_SUFFIXES = frozenset(
    ".png .jpg .jpeg .svg .pdf .gif .bmp .tif .tiff .webp .html .json .yaml .yml .csv .txt .onnx .pt".split()
)


def out_file(
    path: str | os.PathLike,
    default_name: str,
    overwrite: bool = False,
    run_names: Iterable[str] = (),
    own_run: str | os.PathLike | None = None,
    flag: str = "--out",
) -> Path:
    """The file a command writes for `--out path`: `path` itself, or `path/default_name` when `path` is an existing
    folder or a name without a suffix (a folder, made when the file is written). Checked by check_file_in_folder
    (see there; `run_names` count only inside `own_run`); returns the file's path. Raises OutputError."""
    path = given_path(path, flag)
    mode = _mode(path)
    if (mode is not None and stat.S_ISDIR(mode)) or (mode is None and not path.suffix):
        path = path / default_name
    check_file_in_folder(path, overwrite, run_names, own_run)
    return path


def out_folder(
    path: str | os.PathLike,
    run_names: Iterable[str] = (),
    flag: str = "--out",
    own_run: str | os.PathLike | None = None,
    writes: str | None = None,
) -> Path:
    """A folder a command writes in (it may not exist yet: it is made later): refused when it is empty (''), when it
    exists and is not a folder (a file, a device, a pipe, a socket), when a folder above it is a file, when the folder
    it is (or would be made in) cannot be written, and when it lies inside a run folder other than at `run_names`
    (globs relative to the run folder, e.g. 'detections', counted only inside `own_run`, the command's own run; a run
    folder itself is the caller's to judge). `writes` (e.g. 'featuremaps writes a folder of pictures'): a missing
    `path` with a file's suffix (.png, .json, ...) is refused with these words. Returns `path` as a Path. Raises
    OutputError naming `flag` and the path."""
    path = given_path(path, flag)
    mode = _mode(path)
    if mode is not None and not stat.S_ISDIR(mode):
        raise OutputError(f"{path}: is {_kind(mode)}; {flag} takes a folder; nothing was changed")
    if writes and mode is None and path.suffix.lower() in FILE_SUFFIXES:
        raise OutputError(f"{writes}; {flag} {path} looks like a file; give it a folder; nothing was changed")
    _check_writable(path if mode is not None else _existing_above(path, path))
    run = run_folder_above(path)
    if run is not None and not _allowed(path, run, run_names, own_run):
        raise OutputError(
            f"{path}: is inside the run folder {run}, which holds only what convscope writes there; give {flag} a "
            "folder outside it; nothing was changed"
        )
    return path


def given_path(path: str | os.PathLike, flag: str = "--out") -> Path:
    """`path` as a Path; OutputError for an empty one ('' would be read as the current folder)."""
    if not os.fspath(path):
        raise OutputError(f"{flag}: expected a file or folder path, received an empty one")
    return Path(path)


def check_file_in_folder(
    path: str | os.PathLike,
    overwrite: bool = False,
    run_names: Iterable[str] = (),
    own_run: str | os.PathLike | None = None,
) -> None:
    """Refuse, with an OutputError naming `path`, a file a command would write that is not a regular file (a folder,
    device, pipe, socket), sits under a regular file or in a folder that cannot be written, lies inside a run folder
    (links resolved) other than `own_run` (the command's own run) or inside it at a name other than `run_names`
    (globs relative to the run folder, such as 'filters-*.png': what the command writes there by design, replaced
    silently), or exists without convscope's mark (unless `overwrite`)."""
    path = Path(path)
    check_replaceable(path)
    _check_writable(_existing_above(path.parent, path))
    run = run_folder_above(path)
    if run is not None:
        if not _allowed(path, run, run_names, own_run):
            raise OutputError(
                f"{path}: is inside the run folder {run}, which holds only what convscope writes there; write "
                "outside it (or leave --out out for the default place); nothing was changed"
            )
        return
    if _mode(path) is not None and not overwrite and not written_by_convscope(path):
        raise OutputError(f"{path}: exists and was not written by convscope; --overwrite replaces it")


def run_folder_above(path: str | os.PathLike) -> Path | None:
    """The nearest folder above `path` (not `path` itself; links resolved) that is a run folder (it holds config.yaml
    and spec.yaml), or None."""
    for folder in Path(os.path.realpath(path)).parents:
        if all(_is_file(folder / name) for name in RUN_MARKERS):
            return folder
    return None


# ── helpers ───────────────────────────────────────────────────────────────────────────────────────────────────────
def _allowed(path: Path, run: Path, run_names: Iterable[str], own_run: str | os.PathLike | None) -> bool:
    """Whether `path`, inside the run folder `run`, is at one of `run_names` (globs relative to `run`) and `run` is
    the command's own run `own_run` (links resolved): one run's outputs never go into another run's folder."""
    if own_run is None or Path(os.path.realpath(own_run)) != run:
        return False
    inside = Path(os.path.realpath(path)).relative_to(run).as_posix()
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
                f"{target}: cannot be written, {candidate} is {_kind(mode)}, not a folder; nothing was changed"
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
    raise OutputError(f"{folder}: cannot write in this folder ({reason}); nothing was changed")
