"""IDX files (MNIST, Fashion-MNIST), gzip-compressed or raw.

An IDX file is a 4-byte magic number (two zero bytes, a type code, the number of dimensions), one big-endian
uint32 per dimension, then the items in C order. Only type 0x08 (unsigned byte) is read: that is what the image and
label files of MNIST and Fashion-MNIST hold. Files are only read, never modified; every problem is a DataError
naming the file and what was wrong.
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np

from convscope.data.dataset import Dataset, Split
from convscope.errors import DataError
from convscope.files import check_regular_file

FASHION_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
MNIST_CLASSES = tuple(str(digit) for digit in range(10))
CLASSES = {"fashion-mnist": FASHION_CLASSES, "mnist": MNIST_CLASSES}

# Where Debian's `dataset-fashion-mnist` package puts the four official files. MNIST has no system package.
DEFAULT_FOLDERS = {"fashion-mnist": Path("/usr/share/datasets/fashion-mnist")}

# (images, labels) file names without the optional .gz, as published.
SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

_TYPE_NAMES = {
    0x08: "unsigned byte",
    0x09: "signed byte",
    0x0B: "int16",
    0x0C: "int32",
    0x0D: "float32",
    0x0E: "float64",
}
_GZIP_MAGIC = b"\x1f\x8b"
# Deflate never expands data more than ~1032:1, so a header promising more than this cannot be honest; checking it
# first keeps a hostile header from making us allocate terabytes.
_MAX_DEFLATE_RATIO = 1032


def read_idx(path: str | Path) -> np.ndarray:
    """The uint8 array stored in the IDX file `path` (`.gz` or raw), shaped by the file's own dimension sizes.

    E.g. `train-images-idx3-ubyte.gz` → 60000×28×28, `train-labels-idx1-ubyte.gz` → 60000. The length of the
    (decompressed) file must be exactly header + prod(dims) bytes: truncated and too long files are errors. A path
    that is not a regular file (a named pipe, a device) is refused without being opened.
    """
    path = check_regular_file(path, "IDX file")
    try:
        with path.open("rb") as raw:
            compressed = raw.read(2) == _GZIP_MAGIC  # by content, not by name: a mislabelled file still reads
            raw.seek(0)
            on_disk = path.stat().st_size
            if not compressed:
                return _read_stream(raw, path, on_disk, found_total=on_disk)
            with gzip.GzipFile(fileobj=raw, mode="rb") as stream:
                return _read_stream(stream, path, on_disk * _MAX_DEFLATE_RATIO, found_total=None)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise DataError(f"{path}: expected an IDX file, found a folder") from None
    except (gzip.BadGzipFile, EOFError, zlib.error) as error:
        raise DataError(f"{path}: corrupt gzip stream ({error or type(error).__name__})") from None
    except OSError as error:  # after BadGzipFile, which is an OSError too
        raise DataError(f"{path}: cannot read ({error.strerror or error})") from None


def _read_stream(stream: BinaryIO, path: Path, max_total: int, found_total: int | None) -> np.ndarray:
    """Parse and check the header, then read the items straight into a numpy array (no per-item Python)."""
    magic = stream.read(4)
    if len(magic) < 4:
        raise DataError(f"{path}: expected an IDX header of at least 4 bytes, found {len(magic)}")
    if magic[:2] != b"\0\0":
        raise DataError(
            f"{path}: not an IDX file: expected the magic number to start with two zero bytes, "
            f"found {magic[:2].hex(' ')}"
        )
    type_code, ndim = magic[2], magic[3]
    if type_code != 0x08:
        kind = _TYPE_NAMES.get(type_code, "unknown type")
        raise DataError(
            f"{path}: expected type code 0x08 (unsigned byte), found 0x{type_code:02X} ({kind}); "
            "only uint8 IDX files are read"
        )
    if ndim == 0:
        raise DataError(f"{path}: expected at least 1 dimension in the IDX header, found 0")
    header = 4 + 4 * ndim
    sizes = stream.read(4 * ndim)
    if len(sizes) < 4 * ndim:
        raise DataError(
            f"{path}: expected a {header}-byte header ({ndim} dimension sizes), found {4 + len(sizes)} bytes"
        )
    dims = struct.unpack(f">{ndim}I", sizes)
    count = math.prod(dims)
    total = header + count
    expected = f"expected {total} bytes (header {header} + {'×'.join(map(str, dims))})"
    if found_total is not None and found_total != total:
        raise DataError(f"{path}: {expected}, found {found_total}")
    if total > max_total:
        raise DataError(
            f"{path}: {expected}, but a gzip file of {max_total // _MAX_DEFLATE_RATIO} bytes cannot hold that many"
        )
    data = np.empty(count, dtype=np.uint8)
    got = _read_into(stream, memoryview(data))
    if got < count:
        raise DataError(f"{path}: {expected}, found {header + got}")
    if stream.read(1):
        raise DataError(f"{path}: {expected}, found more (the file is too long)")
    return data.reshape(dims)


def _read_into(stream: BinaryIO, view: memoryview) -> int:
    """Fill `view` from `stream` (reads may come back short); the number of bytes read.

    At most 4 MB per call: GzipFile.readinto reads into a temporary bytes object of the requested size, and bounded
    calls keep that from doubling the memory of a 47 MB image file.
    """
    done = 0
    while done < len(view):
        n = stream.readinto(view[done : done + (4 << 20)])
        if not n:
            break
        done += n
    return done


def find_idx_file(folder: Path, stem: str) -> Path | None:
    """`folder/stem.gz` or `folder/stem` (the published names), whichever exists; None if neither."""
    for candidate in (folder / f"{stem}.gz", folder / stem):
        if candidate.is_file():
            return candidate
    return None


def load_idx_dataset(folder: str | Path | None = None, name: str = "fashion-mnist") -> Dataset:
    """Fashion-MNIST or MNIST from the four standard IDX files in `folder` (each `.gz` or raw).

    Images come back N×28×28×1 uint8 (60000 train, 10000 test for the real data), labels int64 in 0..9. `val` stays
    None: the trainer holds out part of train. With no folder, Fashion-MNIST is read from Debian's system copy.
    """
    if name not in CLASSES:
        raise DataError(f"unknown IDX dataset {name!r}: expected one of {', '.join(CLASSES)}")
    how_to_get = _how_to_get(name)
    if folder is None:
        if name not in DEFAULT_FOLDERS:
            raise DataError(f"{name} has no system copy, so a folder is needed; {how_to_get}")
        folder = DEFAULT_FOLDERS[name]
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder (expected the four {name} IDX files there); {how_to_get}")
    splits = {split: _load_split(folder, images, labels, how_to_get) for split, (images, labels) in SPLIT_FILES.items()}
    return Dataset(name=name, classes=CLASSES[name], train=splits["train"], test=splits["test"], source=str(folder))


def _how_to_get(name: str) -> str:
    command = f"convscope data get {name} --to DIR"
    if name == "fashion-mnist":
        return f"install it with `sudo apt-get install dataset-fashion-mnist` or download it with `{command}`"
    return f"download it with `{command}`"


def _load_split(folder: Path, images_stem: str, labels_stem: str, how_to_get: str) -> Split:
    paths = []
    for stem in (images_stem, labels_stem):
        path = find_idx_file(folder, stem)
        if path is None:
            raise DataError(f"{folder}: missing {stem}.gz (or {stem}); {how_to_get}")
        paths.append(path)
    images_path, labels_path = paths
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3:
        raise DataError(
            f"{images_path}: expected images N×H×W (3 dimensions), found shape {'×'.join(map(str, images.shape))}"
        )
    if labels.ndim != 1:
        raise DataError(
            f"{labels_path}: expected labels N (1 dimension), found shape {'×'.join(map(str, labels.shape))}"
        )
    if len(images) != len(labels):
        raise DataError(
            f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} labels; "
            "expected equal counts"
        )
    bad = np.flatnonzero(labels >= 10)
    if bad.size:
        raise DataError(
            f"{labels_path}: expected labels 0..9, found {labels[bad[0]]} at item {bad[0]} ({bad.size} out of range)"
        )
    return Split(images[..., np.newaxis], labels.astype(np.int64))
