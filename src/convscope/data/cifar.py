"""CIFAR-10 and CIFAR-100 from their BINARY version (`cifar-10-binary.tar.gz`, `cifar-100-binary.tar.gz`).

The python version of CIFAR is a set of pickles, and unpickling runs whatever code the file names, so it is never
read: a folder that holds it gets an error saying where the binary version is.

A binary file is a run of fixed-size records: the label byte(s), then 3072 pixel bytes, channel-major (the 32×32
red plane, then green, then blue). CIFAR-10 records have 1 label byte; CIFAR-100 records have 2 (coarse, fine), and
the fine label (0..99) is the one used.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from convscope import userfiles
from convscope.data.dataset import Dataset, Split
from convscope.data.home import dataset_folder
from convscope.errors import DataError
from convscope.files import check_regular_file

PIXELS = 3 * 32 * 32  # bytes of one image: 3 channel planes of 32×32
MAX_NAMES_BYTES = 2**20  # a class names file (batches.meta.txt, fine_label_names.txt) is under 1 KB


@dataclass(frozen=True)
class _Layout:
    name: str  # Dataset.name
    subfolder: str  # the folder the .tar.gz extracts to
    archive: str  # what to download
    train: tuple[str, ...]
    test: str
    names_file: str  # class names, one per line
    label_bytes: int  # bytes before the pixels of each record
    label_ranges: tuple[int, ...]  # number of classes of each label byte; the last one is the label used
    python_markers: tuple[str, ...]  # files of the python (pickle) version

    @property
    def record(self) -> int:
        return self.label_bytes + PIXELS


LAYOUTS = {
    10: _Layout(
        name="cifar10",
        subfolder="cifar-10-batches-bin",
        archive="https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",
        train=tuple(f"data_batch_{i}.bin" for i in range(1, 6)),
        test="test_batch.bin",
        names_file="batches.meta.txt",
        label_bytes=1,
        label_ranges=(10,),
        python_markers=("data_batch_1", "test_batch", "batches.meta"),
    ),
    100: _Layout(
        name="cifar100",
        subfolder="cifar-100-binary",
        archive="https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz",
        train=("train.bin",),
        test="test.bin",
        names_file="fine_label_names.txt",
        label_bytes=2,
        label_ranges=(20, 100),  # coarse (20 superclasses), fine (100 classes)
        python_markers=("train", "test", "meta"),
    ),
}
_PYTHON_SUBFOLDERS = {10: "cifar-10-batches-py", 100: "cifar-100-python"}


def load_cifar(folder: str | Path | None = None, which: int = 10) -> Dataset:
    """CIFAR-10 (`which=10`) or CIFAR-100 (`which=100`) from the extracted binary archive.

    `folder` is the extracted folder itself or the folder holding it (`cifar-10-batches-bin/`, `cifar-100-binary/`);
    None: the default folder, where `convscope data get cifar10` (or cifar100) puts them (data.home).
    Images come back N×32×32×3 uint8 (50000 train, 10000 test for the real data), labels int64 (the fine label
    for CIFAR-100). `val` stays None: the trainer holds out part of train.
    """
    if which not in LAYOUTS:
        raise DataError(f"CIFAR version: expected 10 or 100, received {which!r}")
    layout = LAYOUTS[which]
    folder = _resolve_folder(dataset_folder(layout.name) if folder is None else Path(folder), layout, which)
    classes = _read_names(folder / layout.names_file, layout.label_ranges[-1])
    train = [_read_batch(folder / file, layout) for file in layout.train]
    test = _read_batch(folder / layout.test, layout)
    if len(train) > 1:
        train_split = Split(np.concatenate([s.images for s in train]), np.concatenate([s.labels for s in train]))
    else:
        train_split = train[0]
    return Dataset(name=layout.name, classes=classes, train=train_split, test=test, source=str(folder))


def _how_to_get(folder: Path, layout: _Layout) -> str:
    """The command that puts the files into `folder`."""
    where = "" if folder == dataset_folder(layout.name) else f" --to {folder}"
    return f"download it with `convscope data get {layout.name}{where}` (or get {layout.archive} and extract it)"


def _resolve_folder(folder: Path, layout: _Layout, which: int) -> Path:
    """The folder that holds the binary files: `folder` itself or its usual subfolder."""
    if not folder.is_dir():
        raise DataError(
            f"{folder}: no such folder (expected the extracted {Path(layout.archive).name}); "
            f"{_how_to_get(folder, layout)}"
        )
    candidates = (folder, folder / layout.subfolder)
    for candidate in candidates:
        if (candidate / layout.test).is_file():
            return candidate
    for candidate in (*candidates, folder / _PYTHON_SUBFOLDERS[which]):
        python = _python_version_files(candidate, layout)
        if python:
            raise DataError(
                f"{candidate}: found {', '.join(python)}, the python (pickle) version of CIFAR-{which}, which is never "
                f"read (unpickling can run code); only the binary version is read: get {layout.archive} and extract it "
                f"(`convscope data get {layout.name}` does both)"
            )
    raise DataError(
        f"{folder}: missing {layout.test} (looked in {folder} and {folder / layout.subfolder}); "
        f"{_how_to_get(folder, layout)}"
    )


def _python_version_files(folder: Path, layout: _Layout) -> list[str]:
    if not folder.is_dir():
        return []
    found = [name for name in layout.python_markers if (folder / name).is_file()]
    found += sorted(p.name for p in folder.iterdir() if p.suffix in (".pkl", ".pickle", ".p") and p.is_file())
    return found


def _read_names(path: Path, count: int) -> tuple[str, ...]:
    """Class names, one per line (blank lines, like the trailing ones of batches.meta.txt, are skipped)."""
    if not path.exists():
        raise DataError(f"{path}: missing (expected {count} class names, one per line)")
    check_regular_file(path, "text file of class names")  # a named pipe would block the read
    # 1 MiB: CIFAR-100's 100 names are under 1 KB. Past it, or unreadable, or not text: one line naming the file.
    text = userfiles.read_text(path, max_bytes=MAX_NAMES_BYTES, what="text file of class names")
    names = tuple(line.strip() for line in text.splitlines() if line.strip())
    if len(names) != count:
        raise DataError(f"{path}: expected {count} class names, one per line, found {len(names)}")
    return names


def _read_batch(path: Path, layout: _Layout) -> Split:
    """One binary batch file → Split of n×32×32×3 images; the whole file is reshaped at once (no per-record loop)."""
    if not path.exists():
        raise DataError(f"{path}: missing (part of {Path(layout.archive).name})")
    check_regular_file(path, "CIFAR binary file")  # a named pipe would block the read
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise DataError(f"{path}: missing (part of {Path(layout.archive).name})") from None
    record = layout.record
    what = f"{layout.label_bytes} label byte{'s' if layout.label_bytes > 1 else ''} + 3×32×32 pixels"
    if size == 0 or size % record:
        raise DataError(f"{path}: expected a multiple of {record} bytes ({what} per record), found {size} bytes")
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as error:
        raise DataError(f"{path}: cannot read ({error.strerror or error})") from None
    if data.size != size:  # the file changed between stat and read
        raise DataError(f"{path}: expected {size} bytes (its size a moment ago), read {data.size}")
    records = data.reshape(-1, record)
    for column, limit in enumerate(layout.label_ranges):
        bad = np.flatnonzero(records[:, column] >= limit)
        if bad.size:
            index = bad[0]
            raise DataError(
                f"{path}: expected labels 0..{limit - 1} in byte {column} of each record, "
                f"found {records[index, column]} in record {index} ({bad.size} out of range)"
            )
    labels = records[:, layout.label_bytes - 1].astype(np.int64)
    # n×3×32×32 (channel planes) → n×32×32×3, copied so the result is contiguous and does not pin `records`.
    images = np.ascontiguousarray(records[:, layout.label_bytes :].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    return Split(images, labels)
