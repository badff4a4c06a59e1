"""Ground floor for files: checks made before anything opens a user's file, the warnings third-party readers
(Pillow, torch) print about them, and atomic writes. Imports nothing of convscope but its errors, so every layer can
use it.

Why check first: `open()` on a named pipe (FIFO) waits until something writes to it, forever if nothing does, and a
device such as /dev/zero never ends. So an input path is looked at with `os.stat` (which never opens it) and only a
regular file goes on; a symbolic link is followed, so a link to a regular file is fine.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import stat
import tempfile
import threading
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

from convscope.errors import ConvscopeError, DataError, OutputError

log = logging.getLogger(__name__)
MARK = "convscope"  # what PNG/JPEG/SVG/PDF/HTML files convscope writes carry to say so (written_by_convscope)
TEMP_SUFFIX = ".tmp"  # atomic writes' temporary files: `.NAME.RANDOM.tmp` beside their target
_TEMP_NAME = re.compile(r"\..+\.[a-z0-9_]{8}\.tmp")

_KINDS = (  # (test on st_mode, what it is called in a message)
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def check_regular_file(path: str | os.PathLike, what: str = "file", error: type[ConvscopeError] = DataError) -> Path:
    """`path` as a Path when it is a regular file (or a link to one); otherwise raise `error` naming the path.

    `what` names the expected file in messages, without an article ("image file", "spec file", "IDX file"). The path
    is only stat-ed, never opened. Raises `error` (default DataError) when the path is missing, is a folder, is a
    named pipe, a device or a socket, or cannot be looked at (e.g. no permission on a folder above it).
    """
    path = Path(path)
    article = "an" if what[:1].lower() in "aeiou" else "a"
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        raise error(f"{path}: no such {what}") from None
    except OSError as err:  # PermissionError, ELOOP (a link loop), ENAMETOOLONG, ...
        raise error(f"{path}: cannot look at the {what} ({err.strerror or err})") from None
    except ValueError as err:  # an embedded NUL byte
        raise error(f"{path!r}: not a usable file name ({err})") from None
    if stat.S_ISREG(mode):
        return path
    if stat.S_ISDIR(mode):
        raise error(f"{path}: is a folder, expected {article} {what}")
    kind = next((name for test, name in _KINDS if test(mode)), "of an unknown kind")
    raise error(f"{path}: is {kind}, not a regular file; expected {article} {what} (it was not opened)")


# Warning filters are process-wide and `warnings.catch_warnings` is not thread-safe: two threads inside it at once
# restore each other's filters in the wrong order. Every use in convscope goes through this one lock, so convscope's
# threads (image folders decode in threads) take turns; callers keep the guarded step short (a header, not a decode).
_WARNINGS_LOCK = threading.Lock()


@contextmanager
def reader_warnings(path: str | os.PathLike, reader: ModuleType, errors: tuple[type[Warning], ...] = ()) -> Iterator:
    """Run the body with the warnings of `reader` (a package: PIL, torch) about `path` kept off the terminal.

    A warning of a category in `errors` is raised as an exception instead (e.g. Pillow's DecompressionBombWarning,
    which the caller turns into its refusal); any other warning from inside the `reader` package becomes an INFO log
    line naming `path`. A warning from elsewhere (another thread's, caught by chance) is shown as it would have been.
    """
    home = Path(reader.__file__ or "").parent
    caught: list[warnings.WarningMessage] = []
    try:
        with _WARNINGS_LOCK, warnings.catch_warnings(record=True) as caught:
            for category in errors:
                warnings.simplefilter("error", category)
            yield
    finally:  # after the filters are restored, so a warning shown here is not recorded again
        for w in caught:
            if Path(w.filename).is_relative_to(home):
                log.info("%s: %s says: %s", path, reader.__name__, w.message)
            else:
                warnings.showwarning(w.message, w.category, w.filename, w.lineno)


# ── atomic writes ─────────────────────────────────────────────────────────────────────────────────────────────────
def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Replace `path` by `data` so readers see the old file or the new one, never a mix; makes missing folders.

    Raises OutputError (one line: the path and what the system said) when the folder cannot be made or written to —
    read-only file system, disk full, permission denied — and the old file, if any, is left as it was.
    """
    path = Path(path)
    check_replaceable(path)
    tmp_name = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Same folder as the target: os.replace is only atomic within one file system.
        tmp = tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX, delete=False)
        tmp_name = tmp.name
        with tmp:
            tmp.write(data)
            tmp.flush()
            os.fsync(tmp.fileno())  # the bytes must be on disk before the name points at them
        # NamedTemporaryFile creates 0600; keep the old file's mode, or the usual 0644 for a new one.
        os.chmod(tmp_name, path.stat().st_mode & 0o777 if path.exists() else 0o644)
        os.replace(tmp_name, path)
    except OSError as err:
        _remove_quietly(tmp_name)
        raise OutputError(f"{path}: cannot write ({err.strerror or err}); nothing was changed") from None
    except BaseException:
        _remove_quietly(tmp_name)
        raise
    fsync_dir(path.parent)


def check_replaceable(path: Path) -> None:
    """Refuse, with an OutputError, to replace what is not a regular file: a folder, a device (/dev/null), a named
    pipe or a socket (a link is followed to what it names). A missing path passes."""
    try:
        mode = path.stat().st_mode
    except (OSError, ValueError):  # missing, or not a usable name: the write itself says why
        return
    if stat.S_ISDIR(mode):
        raise OutputError(f"{path}: is a folder, not a file convscope may replace; nothing was changed")
    if not stat.S_ISREG(mode):
        kind = next((name for test, name in _KINDS if test(mode)), "of an unknown kind")
        raise OutputError(f"{path}: is {kind}, not a file convscope may replace; nothing was changed")


def _remove_quietly(name: str | None) -> None:
    if name is not None:
        with contextlib.suppress(OSError):
            Path(name).unlink(missing_ok=True)


def is_temp_file_of(name: str, targets: Iterable[str]) -> bool:
    """Whether `name` is the temporary file an atomic write of one of `targets` makes (`.TARGET.XXXXXXXX.tmp`)."""
    return _TEMP_NAME.fullmatch(name) is not None and any(name.startswith(f".{target}.") for target in targets)


def remove_temp_files(folder: str | os.PathLike, targets: Iterable[str]) -> list[Path]:
    """Delete the temporary files that atomic writes of `targets` (file names in `folder`) left when the process was
    killed mid-write (`.TARGET.XXXXXXXX.tmp`, as tempfile names them); return them. Only `folder` itself is looked
    in, never its subfolders, and only those names: other files, hidden or temporary, are never touched. Only call
    this while holding the folder (nobody else can be writing there)."""
    targets = tuple(targets)
    found = [p for p in Path(folder).glob(f".*{TEMP_SUFFIX}") if is_temp_file_of(p.name, targets) and p.is_file()]
    for p in found:
        _remove_quietly(str(p))
    return found


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """`atomic_write_bytes` for UTF-8 text."""
    atomic_write_bytes(path, text.encode("utf-8"))


def fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` durable (after os.replace). Best effort: some systems (Windows, some network mounts)
    cannot open a folder."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# ── files convscope wrote ─────────────────────────────────────────────────────────────────────────────────────────
_MARKS = (  # how a file of each kind says convscope wrote it: (its first bytes, the mark near its start or end)
    (b"\x89PNG", re.compile(rb"\x00\x00\x00\x12tEXtSoftware\x00" + MARK.encode())),  # a text chunk of 18 bytes
    (b"\xff\xd8", re.compile(rb"\xff\xfe\x00\x0b" + MARK.encode())),  # a comment segment of 2 + 9 bytes
    (b"%PDF", re.compile(rb"/Creator \(" + MARK.encode() + rb"\)")),
    (b"", re.compile(rb"<meta name=\"?generator\"? content=\"?" + MARK.encode() + rb"[\" >]", re.I)),  # HTML
    (b"", re.compile(rb"<dc:creator>\s*<cc:Agent>\s*<dc:title>" + MARK.encode() + rb"</dc:title>")),  # SVG
)
_LOOK_AT = 65536  # bytes read at each end of a file for its mark


def written_by_convscope(path: str | os.PathLike) -> bool:
    """Whether `path` is a regular file that carries convscope's mark: a PNG's text chunk "Software: convscope", a
    JPEG's comment "convscope", a PDF's or SVG's creator, an HTML page's `<meta name=generator content=convscope>`.

    Only a regular file is opened (a pipe or device never is); a missing or unreadable file is False, never an error.
    Reads at most 64 KiB from each end of the file.
    """
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return False
        with open(path, "rb") as f:
            head = f.read(_LOOK_AT)
            size = f.seek(0, os.SEEK_END)
            f.seek(max(size - _LOOK_AT, len(head)))
            tail = f.read(_LOOK_AT)
    except (OSError, ValueError):
        return False
    return any(head.startswith(start) and (mark.search(head) or mark.search(tail)) for start, mark in _MARKS)


def dataset_name(source: str) -> str:
    """A dataset's name from the path it was read from: a data.yaml's folder, a COCO JSON's (or a CSV's) stem, a
    folder's name."""
    path = Path(source)
    if path.suffix.lower() in (".yaml", ".yml"):
        return path.resolve().parent.name
    return path.stem if path.suffix.lower() in (".json", ".csv") else path.resolve().name
