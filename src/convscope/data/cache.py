"""Decoded image folders kept on disk, so a second run on the same unchanged folder starts in seconds, not minutes.

Where: $CONVSCOPE_CACHE_DIR, else $XDG_CACHE_HOME/convscope/decoded, else ~/.cache/convscope/decoded — never inside
the user's folder, which is only read. Everything there can be deleted at any time; it is decoded again when needed.
Set CONVSCOPE_CACHE_DIR=off to neither read nor write it.

Key: SHA-256 of the format version, the image size and channels, and for every file (in order) its absolute path,
label, size in bytes and modification time in nanoseconds. Editing, adding, removing or renaming a file, or asking
for another size, gives another key; the old entry is left to age out.

Entry: one .npz file (NumPy's own format, read with allow_pickle=False: nothing is ever unpickled) holding `images`
(uint8 N×H×W×C), `labels` (int64 N) and `skipped` (the files that could not be decoded and why, as UTF-8 JSON bytes).
A damaged or unreadable entry is removed and the folder decoded again.

Bounded: after each write, the least recently used entries are removed until the cache holds at most
$CONVSCOPE_CACHE_MAX_GB (default 4) GiB; an entry larger than the bound on its own is not written.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

FORMAT = "convscope.decoded-folder/1"  # change when decoding changes, so old entries stop matching
DEFAULT_MAX_GB = 4.0


def cache_dir() -> Path | None:
    """The cache folder (see the module's docstring), or None when caching is off."""
    chosen = os.environ.get("CONVSCOPE_CACHE_DIR")
    if chosen:
        return None if chosen.lower() in ("off", "0", "none") else Path(chosen)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "convscope" / "decoded"


def max_bytes() -> int:
    try:
        gib = float(os.environ.get("CONVSCOPE_CACHE_MAX_GB", DEFAULT_MAX_GB))
    except ValueError:
        gib = DEFAULT_MAX_GB
    return int(max(gib, 0) * 2**30)


def key(files: list[tuple[Path, int]], image_size: tuple[int, int], channels: int) -> str:
    """The entry's name for decoding `files` ((path, label) pairs, in order) to image_size × channels."""
    h = hashlib.sha256(f"{FORMAT}\n{image_size[0]}x{image_size[1]}x{channels}\n".encode())
    for path, label in files:
        try:
            st = os.stat(path)  # stat, never open: a named pipe stays unopened
            size, mtime = st.st_size, st.st_mtime_ns
        except OSError:
            size = mtime = -1  # missing or a dangling link: decoding reports it
        h.update(f"{Path(path).absolute()}\0{label}\0{size}\0{mtime}\n".encode())
    return h.hexdigest()[:32]


def load(name: str) -> tuple[np.ndarray, np.ndarray, list[tuple[str, str]]] | None:
    """(images, labels, skipped) of entry `name`, or None when there is none (or it is damaged: then it is removed)."""
    folder = cache_dir()
    if folder is None:
        return None
    path = folder / f"{name}.npz"
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as entry:
            images, labels = entry["images"], entry["labels"]
            skipped = [tuple(item) for item in json.loads(entry["skipped"].tobytes().decode("utf-8"))]
        if images.dtype != np.uint8 or images.ndim != 4 or labels.shape != (len(images),):
            raise ValueError("unexpected arrays")
        os.utime(path)  # most recently used
        return images, labels, skipped
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, UnicodeDecodeError, TypeError) as err:
        log.info("%s: damaged cache entry removed (%s); decoding the folder again", path, err)
        with contextlib.suppress(OSError):
            path.unlink()
        return None


def store(name: str, images: np.ndarray, labels: np.ndarray, skipped: list[tuple[str, str]]) -> Path | None:
    """Write entry `name` (atomically: a temporary file renamed into place), then trim the cache to its bound.
    Returns its path, or None when caching is off, the entry alone exceeds the bound, or the disk refuses (a cache
    that cannot be written is not an error: the next run decodes again)."""
    folder, limit = cache_dir(), max_bytes()
    if folder is None or images.nbytes + labels.nbytes > limit:
        return None
    path = folder / f"{name}.npz"
    tmp = None
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=f".{name}.", suffix=".tmp", delete=False) as f:
            tmp = f.name
            text = np.frombuffer(json.dumps(skipped).encode("utf-8"), dtype=np.uint8)
            np.savez(f, images=images, labels=labels, skipped=text)
        os.replace(tmp, path)
    except OSError as err:
        log.info("%s: the decoded images could not be cached (%s)", folder, err.strerror or err)
        if tmp:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        return None
    trim(folder, limit)
    return path


def trim(folder: Path, limit: int) -> list[Path]:
    """Remove the least recently used entries until `folder` holds at most `limit` bytes; return what was removed."""
    entries = []
    for p in folder.glob("*.npz"):
        with contextlib.suppress(OSError):
            st = p.stat()
            entries.append((st.st_mtime, st.st_size, p))
    entries.sort()
    total, removed = sum(size for _, size, _ in entries), []
    for _, size, p in entries:
        if total <= limit:
            break
        with contextlib.suppress(OSError):
            p.unlink()
            total -= size
            removed.append(p)
    return removed
