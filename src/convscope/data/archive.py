"""Extract the few expected files of a dataset archive (`.tar.gz`), refusing anything that could write elsewhere.

The archive is checked as it is read, in one pass: every member must be a regular file or a folder, with a relative
path and no `..` (a link, a device, `/etc/x` or `../x` anywhere refuses the whole archive). Only the expected members
are written, each streamed into a temp file beside its final name; the gzip CRC and length are checked at the end of
the stream; only then, once every expected member was found, is each temp file fsynced and renamed over its final name
(`os.replace`). An archive that fails any check leaves the destination as it was.
"""

from __future__ import annotations

import gzip
import logging
import os
import shutil
import tarfile
import tempfile
import zlib
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from convscope.errors import DataError
from convscope.files import TEMP_SUFFIX

log = logging.getLogger(__name__)

CHUNK = 1 << 20  # bytes per read
MAX_MEMBER = 1 << 30  # bytes; the largest member expected (CIFAR-100 train.bin) is 153,700,000


def extract_members(archive: Path, into: Path, members: tuple[str, ...]) -> list[Path]:
    """Write `members` (paths inside the `.tar.gz` file `archive`, e.g. "cifar-10-batches-bin/test_batch.bin") under
    folder `into`, at the same relative paths; returns their paths. Other regular files and folders in the archive are
    skipped. Raises DataError naming `archive` when it is damaged, unsafe or lacks a member; nothing is written then.
    """
    wanted = set(members)
    temps: dict[str, Path] = {}
    made: list[Path] = []  # folders created here, removed again (when empty) if the archive is refused
    try:
        with archive.open("rb") as raw, gzip.GzipFile(fileobj=raw, mode="rb") as unzipped:
            with tarfile.open(fileobj=unzipped, mode="r|") as tar:
                for member in tar:
                    _check_member(member, archive)
                    if member.name not in wanted:
                        log.debug("%s: skipping %s (not needed)", archive, member.name)
                        continue
                    if member.name in temps:
                        raise DataError(f"{archive}: {member.name} appears twice; nothing was extracted")
                    if not member.isreg():
                        raise DataError(f"{archive}: {member.name} is a folder, expected a file; nothing was extracted")
                    if member.size > MAX_MEMBER:
                        raise DataError(
                            f"{archive}: {member.name} claims {member.size} bytes, more than the {MAX_MEMBER} "
                            "expected of any member; nothing was extracted"
                        )
                    stream = tar.extractfile(member)  # a regular file (checked above) always has one
                    temps[member.name] = _write_temp(stream, into / member.name, member.size, made)
            while unzipped.read(CHUNK):  # the gzip trailer (CRC-32, length) is checked only once it is read
                pass
        missing = [name for name in members if name not in temps]
        if missing:
            raise DataError(
                f"{archive}: missing {', '.join(missing)} (expected {len(members)} files); nothing was extracted"
            )
        for name, temp in temps.items():
            os.replace(temp, into / name)
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as error:
        _remove(temps.values(), made)
        raise DataError(
            f"{archive}: damaged archive ({error or type(error).__name__}); nothing was extracted"
        ) from None
    except OSError as error:  # the archive cannot be read, or the destination written (disk full, ...)
        _remove(temps.values(), made)
        where = error.filename or archive
        raise DataError(f"{where}: cannot extract {archive.name} ({error.strerror or error})") from None
    except BaseException:
        _remove(temps.values(), made)
        raise
    for folder in {(into / name).parent for name in members}:
        fsync_folder(folder)
    log.info("%s: extracted %d files into %s", archive, len(members), into)
    return [into / name for name in members]


def _check_member(member: tarfile.TarInfo, archive: Path) -> None:
    """Refuse a member that is not a plain file or folder, or whose path could leave the destination."""
    path = PurePosixPath(member.name)
    if path.is_absolute() or ".." in path.parts:
        raise DataError(
            f"{archive}: member {member.name!r} has an unsafe path (absolute or with '..'); nothing was extracted"
        )
    if member.isreg() or member.isdir():
        return
    if member.issym() or member.islnk():
        kind = f"a {'symbolic' if member.issym() else 'hard'} link to {member.linkname!r}"
    elif member.isdev():
        kind = "a device or named pipe"
    else:
        kind = f"of tar type {member.type!r}"
    raise DataError(
        f"{archive}: member {member.name!r} is {kind}; only regular files and folders are expected, "
        "nothing was extracted"
    )


def _write_temp(stream: BinaryIO, dest: Path, size: int, made: list[Path]) -> Path:
    """Copy `size` bytes of `stream` into a new temp file beside `dest`, fsynced; returns the temp file's path.
    Folders it creates for it are appended to `made` (outermost first)."""
    missing = [folder for folder in (dest.parent, *dest.parent.parents) if not folder.exists()]
    dest.parent.mkdir(parents=True, exist_ok=True)
    made.extend(reversed(missing))
    fd, name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=TEMP_SUFFIX)
    temp = Path(name)
    try:
        with os.fdopen(fd, "wb") as out:
            shutil.copyfileobj(stream, out, CHUNK)
            written = out.tell()
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    if written != size:  # tarfile raises on a short read; this is the belt to its braces
        temp.unlink(missing_ok=True)
        raise tarfile.ReadError(f"{dest.name}: expected {size} bytes, read {written}")
    return temp


def _remove(temps, made: list[Path]) -> None:
    """Delete the temp files, then the folders made for them (innermost first) where nothing else was put."""
    for path in temps:
        path.unlink(missing_ok=True)
    for folder in reversed(made):
        try:
            folder.rmdir()
        except OSError:
            pass


def fsync_folder(folder: Path) -> None:
    """Make the renames durable (POSIX); some systems cannot open folders, which is harmless there."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
