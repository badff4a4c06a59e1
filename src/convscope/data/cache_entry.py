"""The file format of one decoded-folder cache entry (data/cache.py), and the checks an entry passes before any of it
is used: every byte of the file is accounted for, so a damaged or edited entry is refused, never read as if right.

An entry, `NAME.npys`, is four NumPy .npy arrays one after the other (format 1.0 headers, C order), then nothing:

    meta     uint8 (M,)        canonical JSON (sorted keys, no spaces, ASCII): {"format", "key", "files", "shape",
                               "skipped_bytes", "sha256"}
    skipped  uint8 (S,)        UTF-8 JSON [[path, reason], …]: the listed files that could not be decoded, in order
    labels   int64 LE (N,)     the label of every decoded file, in order
    images   uint8 (N,H,W,C)

Reading checks, in this order, and refuses (`Refused`, with a one-line reason) at the first that fails: each header
is byte for byte the one `write` makes for the expected dtype and shape (so an object array, a pickle or a Fortran
array is refused from its header, before any data is read, and nothing is ever unpickled); the meta is canonical and
names this format, the expected key (full SHA-256), file count and N×H×W×C; the file ends where the four arrays end;
the SHA-256 of skipped + labels + images is the one in meta; `skipped` names listed files, in order; and the labels
are exactly those of the listed files that were decoded.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
from typing import BinaryIO

import numpy as np
from numpy.lib import format as npy

SUFFIX = ".npys"  # a sequence of .npy arrays
NAMES = ("skipped", "labels", "images")  # the arrays after meta, in the file's order
_META_LIMIT = 1 << 20  # bytes of meta JSON (a few hundred in practice)
_META_HEADER = re.compile(rb"\{'descr': '\|u1', 'fortran_order': False, 'shape': \(([1-9][0-9]{0,6}),\), \} *\n")
_LABELS = np.dtype("<i8")
_PIXELS = np.dtype(np.uint8)


class Refused(Exception):
    """An entry that is not exactly what `write` made for this key; the message says why, in one line."""


def _header(dtype: np.dtype, shape: tuple[int, ...]) -> bytes:
    """The .npy 1.0 header `write` puts before an array of this dtype and shape (C order)."""
    out = io.BytesIO()
    npy.write_array_header_1_0(out, {"descr": npy.dtype_to_descr(dtype), "fortran_order": False, "shape": shape})
    return out.getvalue()


def _bytes(array: np.ndarray) -> memoryview | bytes:
    """The array's data as bytes, without a copy when it is C-contiguous already."""
    array = np.ascontiguousarray(array)
    return memoryview(array).cast("B") if array.size else b""


def _write_array(f: BinaryIO, array: np.ndarray) -> None:
    f.write(_header(array.dtype, array.shape))
    f.write(_bytes(array))


def _canonical(meta: dict) -> bytes:
    return json.dumps(meta, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def write(
    f: BinaryIO,
    fmt: str,
    key: str,
    files: int,
    images: np.ndarray,
    labels: np.ndarray,
    skipped: list[tuple[str, str]],
) -> None:
    """Write an entry to the open binary file `f`: images uint8 N×H×W×C, labels int N, skipped (path, reason) pairs;
    fmt the format's name, key the entry's full key (64 hex digits), files how many files were listed."""
    text = json.dumps([[str(p), str(r)] for p, r in skipped]).encode("ascii")  # ASCII: also undecodable names
    parts = (np.frombuffer(text, dtype=_PIXELS), np.asarray(labels, dtype=_LABELS), np.asarray(images, _PIXELS))
    digest = hashlib.sha256()
    for part in parts:
        digest.update(_bytes(part))
    meta = {
        "format": fmt,
        "key": key,
        "files": files,
        "shape": list(images.shape),
        "skipped_bytes": len(text),
        "sha256": digest.hexdigest(),
    }
    _write_array(f, np.frombuffer(_canonical(meta), dtype=_PIXELS))
    for part in parts:
        _write_array(f, part)


def _read_header(f: BinaryIO, dtype: np.dtype, shape: tuple[int, ...], what: str) -> None:
    expected = _header(dtype, shape)
    found = f.read(len(expected))
    if found != expected:
        raise Refused(f"the {what} header is not that of {dtype} {shape}")


def _read_array(f: BinaryIO, dtype: np.dtype, shape: tuple[int, ...], what: str) -> np.ndarray:
    """The array at f's position, after its header was checked byte for byte (nothing is read before that)."""
    start = f.tell()
    _read_header(f, dtype, shape, what)
    f.seek(start)
    array = np.load(f, allow_pickle=False)
    if array.dtype != dtype or array.shape != shape:
        raise Refused(f"the {what} array is {array.dtype} {array.shape}, expected {dtype} {shape}")
    return array


def _read_meta(f: BinaryIO) -> dict:
    start = f.read(10)
    header = f.read(int.from_bytes(start[8:10], "little")) if start[:8] == b"\x93NUMPY\x01\x00" else b""
    found = _META_HEADER.fullmatch(header)  # matched here, not parsed by NumPy: any damage is a Refused
    if found is None or not 0 < int(found[1]) <= _META_LIMIT:
        raise Refused("not an entry of this cache (its first header is not that of a short uint8 text)")
    shape = (int(found[1]),)
    f.seek(0)
    meta_bytes = _read_array(f, _PIXELS, shape, "meta").tobytes()
    try:
        meta = json.loads(meta_bytes.decode("ascii"))
    except ValueError as err:
        raise Refused(f"the meta is not JSON ({err})") from None
    if not isinstance(meta, dict) or _canonical(meta) != meta_bytes:
        raise Refused("the meta is not the JSON this cache writes")
    return meta


def read(
    f: BinaryIO, fmt: str, key: str, shape: tuple[int, int, int], files: list[tuple[str, int]]
) -> tuple[np.ndarray, np.ndarray, list[tuple[str, str]]]:
    """(images, labels, skipped) of the entry open as `f` (binary, seekable), checked as the module's docstring says
    against fmt, key (64 hex digits), shape (H, W, C) and files ((path as text, label) pairs in order). Raises Refused
    for any difference; NumPy's or JSON's own errors (ValueError, EOFError, OSError) may also come from a damaged
    file, and mean the same."""
    meta = _read_meta(f)
    if meta.get("format") != fmt:
        raise Refused(f"format {str(meta.get('format'))[:40]!r}, expected {fmt!r}")
    if meta.get("key") != key or meta.get("files") != len(files):
        raise Refused("made for other files (its key differs)")
    n, s = meta.get("shape"), meta.get("skipped_bytes")
    if not (isinstance(n, list) and len(n) == 4 and n[1:] == list(shape) and type(n[0]) is int and n[0] >= 0):
        raise Refused(f"images of shape {str(n)[:60]}, expected N×{shape[0]}×{shape[1]}×{shape[2]}")
    if n[0] > len(files) or type(s) is not int or not 0 <= s <= _META_LIMIT * 64:
        raise Refused(f"{n[0]} images or {s} bytes of skipped files, for {len(files)} files")
    count, start = n[0], f.tell()
    parts = ((_PIXELS, (s,)), (_LABELS, (count,)), (_PIXELS, (count, *shape)))
    end = start + sum(len(_header(d, sh)) + d.itemsize * int(np.prod(sh)) for d, sh in parts)
    if os.fstat(f.fileno()).st_size != end:
        raise Refused(f"{os.fstat(f.fileno()).st_size} bytes, expected {end} (truncated or extended)")
    for (dtype, sh), what in zip(parts, NAMES, strict=True):  # headers before any data
        _read_header(f, dtype, sh, what)
        f.seek(dtype.itemsize * int(np.prod(sh)), os.SEEK_CUR)
    f.seek(start)
    text, labels, images = (_read_array(f, d, sh, what) for (d, sh), what in zip(parts, NAMES, strict=True))
    digest = hashlib.sha256()
    for part in (text, labels, images):
        digest.update(_bytes(part))
    if digest.hexdigest() != meta.get("sha256"):
        raise Refused("its arrays' SHA-256 is not the one it was written with (the data changed)")
    skipped = _skipped(text.tobytes())
    _check_labels(labels, skipped, files)
    return images, labels, skipped


def _skipped(text: bytes) -> list[tuple[str, str]]:
    try:
        items = json.loads(text.decode("utf-8"))
    except ValueError as err:
        raise Refused(f"the skipped files are not JSON ({err})") from None
    if not isinstance(items, list) or not all(
        isinstance(item, list) and len(item) == 2 and all(isinstance(x, str) for x in item) for item in items
    ):
        raise Refused("the skipped files are not a list of [path, reason]")
    return [(path, reason) for path, reason in items]


def _check_labels(labels: np.ndarray, skipped: list[tuple[str, str]], files: list[tuple[str, int]]) -> None:
    """Refused unless `skipped` names listed files in their order and `labels` are those of the other files."""
    expected, at = [], 0
    for path, label in files:
        if at < len(skipped) and skipped[at][0] == path:
            at += 1
        else:
            expected.append(label)
    if at != len(skipped):
        raise Refused(f"it lists {skipped[at][0][:200]!r} as skipped, which is not one of the files (in order)")
    if len(expected) != len(labels) or not np.array_equal(labels, np.asarray(expected, dtype=_LABELS)):
        bad = int(np.min(labels)) if len(labels) else 0
        detail = f" (one is {bad})" if bad < 0 else ""
        raise Refused(f"its labels are not those of the files{detail}")
