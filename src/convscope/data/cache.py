"""Decoded image folders kept on disk, so a second run on the same unchanged folder starts in seconds, not minutes.

Where: $CONVSCOPE_CACHE_DIR, else $XDG_CACHE_HOME/convscope/decoded, else ~/.cache/convscope/decoded — never inside
the user's folder, which is only read. Everything there can be deleted at any time; it is decoded again when needed.
Set CONVSCOPE_CACHE_DIR=off to neither read nor write it; any other value must be an absolute path that is not a
file (else a ConfigError, as for CONVSCOPE_DATA_HOME). A hit and a write are each one INFO line (train.log, `-v`).

Key: SHA-256 of the format version, the image size and channels, and for every file (in order) its absolute path,
label, size in bytes, modification time, inode number and status-change time (ctime, in nanoseconds). Only `stat`,
never the file's bytes: hashing every file's content made the key of CIFAR-10 as 60,000 JPEGs take 4.6-5.9 s with
their pages dropped from the page cache, against 0.6-0.8 s by stat (bench/cache_key.py; more on a slower disk). The
inode and ctime are what tell the usual silent changes apart: two class folders swapped with `mv` (names, sizes and
modification times unchanged) put other inodes at every path; an archive unpacked again (which sets the mtimes it
holds) makes new files, with new ctimes; a file rewritten in place with its old size and mtime put back (`touch -d`,
`os.utime`) gets a new ctime, and no program can set a ctime back. What stat cannot see: a change within the same
tick of the file system's clock (a few ms) as the file's previous change, or one made with the clock set backwards.

Entry: one `NAME.npys` file (data/cache_entry.py: four .npy arrays, meta first, read with allow_pickle=False) holding
the images (uint8 N×H×W×C), their labels (int64 N), the files that could not be decoded and why, and meta: the
format version, the full key and the SHA-256 of the arrays. Reading checks every header before any data, then the
key, shapes, dtype, count, checksum, and that the labels are exactly those of the listed files; anything else is a
miss: one warning naming the entry, the entry deleted, the images decoded again.

Writes are atomic (a temporary file in the same folder, fsync, os.replace, the folder fsynced): a killed process
leaves no entry, only maybe its `.NAME.npys.XXXXXXXX.tmp`, removed by a later clean-up once an hour old. A cache that
cannot be written (disk full, read-only) is one warning; training goes on without it.

Bounded: after each write, the least recently used entries are removed until the cache holds at most
$CONVSCOPE_CACHE_MAX_GB (default 4; a number from 0 to 1,000,000, else a ConfigError) GiB; an entry larger than the
bound on its own is not written. The clean-up removes only the cache's own file names (entries, and earlier
versions' `NAME.npz`), in that folder only, never what else a user keeps there.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import stat
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from convscope.data import cache_entry
from convscope.errors import ConfigError
from convscope.files import fsync_dir

log = logging.getLogger(__name__)

FORMAT = "convscope.decoded-folder/2"  # change when decoding or the entry's layout changes: old entries stop matching
DEFAULT_MAX_GB = 4.0
MAX_GB_LIMIT = 1_000_000
STALE_TEMP_S = 3600  # a temporary file this old was left by a killed write (a live one is seconds old)
_ENTRY = re.compile(r"[0-9a-f]{32}\.(npys|npz)")  # .npz: entries of format 1
_TEMP = re.compile(r"\.[0-9a-f]{32}\.(npys|npz)\.[a-z0-9_]{8}\.tmp")
# What reading a damaged file may raise besides Refused (numpy's and json's own errors); each means "not this entry".
_DAMAGED = (cache_entry.Refused, OSError, ValueError, EOFError, TypeError, KeyError, OverflowError, SyntaxError)


def cache_dir() -> Path | None:
    """The cache folder (see the module's docstring), or None when caching is off. Raises ConfigError (one line) for
    a relative $CONVSCOPE_CACHE_DIR or one that is a file."""
    chosen = os.environ.get("CONVSCOPE_CACHE_DIR")
    if chosen:
        if chosen.lower() in ("off", "0", "none"):
            return None
        if not os.path.isabs(chosen):  # it would move with the working directory
            raise ConfigError(f"CONVSCOPE_CACHE_DIR={chosen!r}: expected an absolute folder path, or off")
        if os.path.exists(chosen) and not os.path.isdir(chosen):
            raise ConfigError(f"CONVSCOPE_CACHE_DIR={chosen!r}: is a file, expected a folder (or off)")
        return Path(chosen)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "convscope" / "decoded"


def max_bytes() -> int:
    """The cache's bound in bytes, from $CONVSCOPE_CACHE_MAX_GB (GiB, default 4). Raises ConfigError (one line naming
    the variable and its value) unless it is a number from 0 to 1,000,000: `inf`, `nan`, `-1`, `abc` are refused;
    empty means the default."""
    text = os.environ.get("CONVSCOPE_CACHE_MAX_GB")
    if not (text or "").strip():  # unset or empty (`CONVSCOPE_CACHE_MAX_GB= convscope train`), as for the folder
        return int(DEFAULT_MAX_GB * 2**30)
    try:
        gib = float(text)
    except ValueError:
        gib = float("nan")
    if not 0 <= gib <= MAX_GB_LIMIT:  # nan compares false
        raise ConfigError(
            f"CONVSCOPE_CACHE_MAX_GB={text[:40]!r}: expected a number of GiB from 0 to {MAX_GB_LIMIT:,} "
            f"(the bound of the decoded-image cache; {DEFAULT_MAX_GB:g} when unset)"
        )
    return int(gib * 2**30)


@dataclass(frozen=True)
class Key:
    """What an entry holds: `digest` the full SHA-256 (64 hex digits; kept in the entry), `shape` (H, W, C) and
    `files` the (path as given, label) pairs in order; the entry's file is `filename`."""

    digest: str
    shape: tuple[int, int, int]
    files: tuple[tuple[str, int], ...]

    @property
    def filename(self) -> str:
        return f"{self.digest[:32]}{cache_entry.SUFFIX}"


def key(files: Sequence[tuple[Path, int]], image_size: tuple[int, int], channels: int) -> Key:
    """The key of decoding `files` ((path, label) pairs, in order) to image_size × channels (see the module's
    docstring). Only stats the files (never opens them: a named pipe stays unopened). Raises ConfigError for a wrong
    $CONVSCOPE_CACHE_MAX_GB or $CONVSCOPE_CACHE_DIR here, before any decoding, rather than minutes later when the
    entry is written."""
    max_bytes(), cache_dir()
    shape = (int(image_size[0]), int(image_size[1]), int(channels))
    h = hashlib.sha256(f"{FORMAT}\n{shape[0]}x{shape[1]}x{shape[2]}\n".encode())
    listed = []
    for path, label in files:
        try:
            st = os.stat(path)
            stamp = f"{st.st_size}\0{st.st_mtime_ns}\0{st.st_ino}\0{st.st_ctime_ns}"
        except OSError:
            stamp = "missing"  # or a dangling link: decoding reports it
        h.update(os.fsencode(Path(path).absolute()) + f"\0{int(label)}\0{stamp}\n".encode())
        listed.append((str(path), int(label)))
    return Key(h.hexdigest(), shape, tuple(listed))


def load(k: Key) -> tuple[np.ndarray, np.ndarray, list[tuple[str, str]]] | None:
    """(images, labels, skipped) of the entry of `k`, or None: caching off, no entry, or an entry refused by the
    checks of data/cache_entry.py (then one warning naming it, and it is deleted)."""
    folder = cache_dir()
    if folder is None:
        return None
    path = folder / k.filename
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        return None
    except OSError as err:  # a link, or no permission
        _refuse(path, err)
        return None
    try:
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise cache_entry.Refused("not a regular file")
            images, labels, skipped = cache_entry.read(f, FORMAT, k.digest, k.shape, list(k.files))
    except _DAMAGED as err:
        _refuse(path, err)
        return None
    with contextlib.suppress(OSError):
        os.utime(path)  # most recently used
    log.info("%d images read from the decoded cache (%s)", len(labels), path)
    return images, labels, skipped


def _refuse(path: Path, err: BaseException) -> None:
    """One warning line naming the entry and why; the entry removed (a regular file or a link, nothing else)."""
    why = " ".join(str(err).split())[:300] or type(err).__name__
    removed = False
    with contextlib.suppress(OSError):
        if stat.S_ISREG(os.lstat(path).st_mode) or stat.S_ISLNK(os.lstat(path).st_mode):
            path.unlink()
            removed = True
    done = "deleted" if removed else "left as it is"
    log.warning("%s: cache entry refused (%s); %s, the images are decoded again", path, why, done)


def store(k: Key, images: np.ndarray, labels: np.ndarray, skipped: list[tuple[str, str]]) -> Path | None:
    """Write the entry of `k` (images uint8 N×H×W×C, labels N, skipped (path, reason) pairs) atomically, then trim
    the cache to its bound. Returns its path, or None when caching is off, the entry alone exceeds the bound, or the
    disk refuses (one warning: a cache that cannot be written is not an error, training goes on without it). Any
    other exception (an interrupt) is raised after the temporary file is removed: never a partial entry."""
    folder, limit = cache_dir(), max_bytes()
    if folder is None or images.nbytes + labels.nbytes > limit:
        return None
    path = folder / k.filename
    tmp = None
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=f".{path.name}.", suffix=".tmp", delete=False) as f:
            tmp = f.name
            cache_entry.write(f, FORMAT, k.digest, len(k.files), images, labels, skipped)
            f.flush()
            os.fsync(f.fileno())  # the bytes on disk before the name points at them
        os.replace(tmp, path)
        tmp = None
    except OSError as err:
        log.warning("%s: the decoded images could not be cached (%s); going on without the cache", folder, _why(err))
        return None
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    fsync_dir(folder)
    log.info("%d decoded images cached in %s", len(labels), path)
    trim(folder, limit)
    return path


def _why(err: OSError) -> str:
    return " ".join(str(err.strerror or err).split())


def trim(folder: Path, limit: int) -> list[Path]:
    """Remove the least recently used entries until `folder` holds at most `limit` bytes of them, and temporary files
    of killed writes older than STALE_TEMP_S; return what was removed. Only the cache's own file names (the module's
    docstring), only regular files, only in `folder` itself."""
    entries, removed, now = [], [], time.time()
    with contextlib.suppress(OSError), os.scandir(folder) as found:
        for item in found:
            with contextlib.suppress(OSError):
                if not item.is_file(follow_symlinks=False):
                    continue
                st = item.stat(follow_symlinks=False)
                if _ENTRY.fullmatch(item.name):
                    entries.append((st.st_mtime, st.st_size, Path(item.path)))
                elif _TEMP.fullmatch(item.name) and now - st.st_mtime > STALE_TEMP_S:
                    os.unlink(item.path)
                    removed.append(Path(item.path))
    entries.sort()
    total = sum(size for _, size, _ in entries)
    for _, size, p in entries:
        if total <= limit:
            break
        with contextlib.suppress(OSError):
            p.unlink()
            total -= size
            removed.append(p)
    return removed
