"""One pass over every image: each file read once, its bytes hashed, decoded once, and what the checks need kept.

Per image: why it could not be read (or None), SHA-256 of its bytes (exact duplicates), a 64-bit perceptual hash
(imagehash.phash: near duplicates) of it and of its mirror image, a 16×16 gray thumbnail (to confirm a near pair),
its size after EXIF orientation, its stored mode and format, its EXIF orientation tag, and the mean and standard
deviation of its gray levels.

Reasons a file is not read, each checked before the next and named in one line: a link loop or a folder that cannot
be looked into; not a regular file (a named pipe, a device: never opened); zero bytes; no permission to read; not an
image in an allowed format (whatever its suffix says); more pixels than Image.MAX_IMAGE_PIXELS (a decompression
bomb: refused from the header, before decoding); damaged or truncated (the decoder runs out of data). Nothing is
written or modified.

Large lists are scanned in worker processes, one per core (decoding is fast; the per-image Python work of hashing
would hold one interpreter's lock), in chunks, each returning its columns; small ones in this process.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import stat
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_all_start_methods, get_context
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from convscope.data.images import ALLOWED_FORMATS, to_array

THUMB = 16  # side of the gray thumbnail kept per image (256 bytes: 15 MB for 60,000 images)
HASH_SIDE = 32  # imagehash.phash's own working size: the image is reduced to it before the DCT
EXIF_ORIENTATION = 0x0112
_CHUNK = 400  # images a worker scans per task: large enough that passing results costs little
_PARALLEL_FROM = 1500  # fewer images are scanned in this process (starting workers takes ~1 s)
Progress = Callable[[int, int], None]
_LEVELS = np.arange(256, dtype=np.float64)


@dataclass
class Scan:
    """Columns, one row per image, in the order given."""

    reasons: list[str | None]  # why the file could not be read; None when it was
    sha256: list[bytes]  # of the file's bytes (of the pixels for arrays); b"" when unread
    phash: np.ndarray  # uint64 N: perceptual hash, 0 when unread
    phash_mirror: np.ndarray  # uint64 N: the perceptual hash of the mirrored picture (left and right swapped)
    thumbs: np.ndarray  # uint8 N×16×16 gray
    width: np.ndarray  # int32 N, pixels after EXIF orientation; 0 when unread
    height: np.ndarray
    modes: list[str]  # Pillow's mode as stored ("RGB", "L", "P", "I;16", …); "" when unread
    formats: list[str]  # "JPEG", "PNG", …; "array" for built-in arrays
    orientation: np.ndarray  # int8 N: the EXIF orientation tag (1 = upright, 0 = none)
    mean: np.ndarray  # float32 N: mean gray level, 0–255
    std: np.ndarray  # float32 N: standard deviation of the gray levels

    @property
    def readable(self) -> np.ndarray:
        return np.array([reason is None for reason in self.reasons], dtype=bool)

    def __len__(self) -> int:
        return len(self.reasons)


def scan_files(
    paths: Sequence[Path], progress: Progress | None = None, workers: int | None = None, chunk: int = _CHUNK
) -> Scan:
    """Scan image files (see the module docstring); progress(done, total) as chunks finish. workers: processes
    (default: one per core from _PARALLEL_FROM images on, else this process alone); chunk: images per task."""
    paths = [str(path) for path in paths]
    chunks = [paths[i : i + chunk] for i in range(0, len(paths), chunk)]
    return _columns(_each_chunk(_scan_chunk, chunks, len(paths), progress, workers))


def scan_arrays(
    images: np.ndarray, progress: Progress | None = None, workers: int | None = None, chunk: int = _CHUNK
) -> Scan:
    """Scan a built-in data set's uint8 N×H×W×C images (C = 1 or 3): nothing can be unreadable. Spread over
    processes as scan_files is, each chunk of rows sent to its worker."""
    chunks = [images[i : i + chunk] for i in range(0, len(images), chunk)]
    return _columns(_each_chunk(_scan_array_chunk, chunks, len(images), progress, workers))


def _each_chunk(scan_chunk, chunks: list, total: int, progress: Progress | None, workers: int | None) -> list[tuple]:
    """The rows of every chunk, in order: in worker processes (one per core by default) from _PARALLEL_FROM images
    on, else in this process; progress(done, total) as chunks finish."""
    if workers is None:
        workers = len(os.sched_getaffinity(0)) if total >= _PARALLEL_FROM else 1
    rows: list[tuple] = []
    if workers < 2 or len(chunks) < 2:
        results = map(scan_chunk, chunks)
        pool = None
    else:
        pool = ProcessPoolExecutor(workers, mp_context=_context())
        results = pool.map(scan_chunk, chunks)
    try:
        for chunk_rows in results:
            rows += chunk_rows
            if progress:
                progress(len(rows), total)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    return rows


def _context():
    """fork where there is one: spawn and forkserver run the caller's __main__ again in every worker, which breaks a
    plain script without an `if __name__ == "__main__"` guard. A forked worker only decodes and hashes (PIL, hashlib,
    NumPy, SciPy's DCT), never torch, whose thread pools are what make fork unsafe."""
    methods = get_all_start_methods()
    return get_context("fork" if "fork" in methods else "spawn")


def _scan_chunk(paths: list[str]) -> list[tuple]:
    return [_scan_file(path) for path in paths]


def _scan_array_chunk(images: np.ndarray) -> list[tuple]:
    mode = "L" if images.shape[-1] == 1 else "RGB"
    rows = []
    for pixels in images:
        img = Image.fromarray(pixels[:, :, 0] if mode == "L" else pixels, mode=mode)
        rows.append(_measure(img, hashlib.sha256(pixels.tobytes()).digest(), mode, "array", 0))
    return rows


def _scan_file(path: str) -> tuple:
    """One row of Scan's columns for the file at `path`."""
    reason, data = _read_bytes(path)
    if reason is not None:
        return _unread(reason)
    digest = hashlib.sha256(data).digest()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # damaged metadata (EXIF) is not what the doctor reports …
        warnings.simplefilter("error", Image.DecompressionBombWarning)  # … and a bomb is refused, not warned about
        try:
            img = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
            mode, fmt = img.mode, img.format or "?"
            img.load()  # a truncated file fails here
            orientation = int(img.getexif().get(EXIF_ORIENTATION, 0) or 0)
            if orientation not in (0, 1):
                img = ImageOps.exif_transpose(img)
            return _measure(img, digest, mode, fmt, orientation)
        except UnidentifiedImageError:
            return _unread(f"not an image in an allowed format ({', '.join(ALLOWED_FORMATS)}) despite its suffix")
        except (Image.DecompressionBombWarning, Image.DecompressionBombError):
            return _unread(f"too many pixels for an image (over {Image.MAX_IMAGE_PIXELS:,}): a decompression bomb")
        except (OSError, SyntaxError, ValueError) as err:
            return _unread(f"damaged or truncated image ({err})")


def _read_bytes(path: str) -> tuple[str | None, bytes]:
    """(None, the file's bytes), or (why it cannot be read, b"") without opening what is not a regular file."""
    try:
        mode = os.stat(path).st_mode
    except OSError as err:
        if err.errno == errno.ELOOP:
            return "symbolic link loop", b""
        if isinstance(err, FileNotFoundError):
            return "missing (a dangling link, or removed while scanning)", b""
        return f"cannot be looked at ({err.strerror or err})", b""
    if not stat.S_ISREG(mode):
        return "not a regular file (a named pipe, device or socket): not opened", b""
    try:
        with open(path, "rb") as file:
            data = file.read()
    except PermissionError:
        return "no permission to read it", b""
    except OSError as err:
        return f"cannot be read ({err.strerror or err})", b""
    if not data:
        return "zero bytes", b""
    return None, data


def _measure(img: Image.Image, digest: bytes, mode: str, fmt: str, orientation: int) -> tuple:
    """The row of a decoded (upright) image."""
    import imagehash  # here: its scipy import costs ~0.3 s, paid only when images are scanned

    if img.mode.startswith("I") or img.mode == "F":  # wider than 8 bits: scaled as training reads it
        gray = Image.fromarray(to_array(img, 1)[:, :, 0], mode="L")
    elif img.mode in ("P", "PA"):
        gray = img.convert("RGBA").convert("L")
    else:
        gray = img.convert("L")
    counts = np.asarray(gray.histogram(), dtype=np.float64)  # 256 counts, from C: no pixel array in Python
    mean = float(counts @ _LEVELS) / max(counts.sum(), 1)
    std = float(np.sqrt(max(counts @ _LEVELS**2 / max(counts.sum(), 1) - mean**2, 0.0)))
    small = gray.resize((HASH_SIDE, HASH_SIDE), Image.Resampling.BOX)
    phash, mirrored = (
        int(np.packbits(imagehash.phash(picture, hash_size=8).hash.flatten()).view(">u8")[0])
        for picture in (small, small.transpose(Image.Transpose.FLIP_LEFT_RIGHT))
    )
    thumb = np.asarray(small.resize((THUMB, THUMB), Image.Resampling.BOX), dtype=np.uint8)
    return (None, digest, phash, mirrored, thumb, img.width, img.height, mode, fmt, orientation, mean, std)


def _unread(reason: str) -> tuple:
    return (reason, b"", 0, 0, np.zeros((THUMB, THUMB), np.uint8), 0, 0, "", "", 0, 0.0, 0.0)


def _columns(rows: list[tuple]) -> Scan:
    if not rows:
        rows_t = [[] for _ in range(12)]
    else:
        rows_t = list(zip(*rows, strict=True))
    return Scan(
        reasons=list(rows_t[0]),
        sha256=list(rows_t[1]),
        phash=np.array(rows_t[2], dtype=np.uint64),
        phash_mirror=np.array(rows_t[3], dtype=np.uint64),
        thumbs=np.array(rows_t[4], dtype=np.uint8).reshape(-1, THUMB, THUMB),
        width=np.array(rows_t[5], dtype=np.int32),
        height=np.array(rows_t[6], dtype=np.int32),
        modes=list(rows_t[7]),
        formats=list(rows_t[8]),
        orientation=np.array(rows_t[9], dtype=np.int8),
        mean=np.array(rows_t[10], dtype=np.float32),
        std=np.array(rows_t[11], dtype=np.float32),
    )
