"""The cheap checks every classification training runs on its data: one line of what they found.

`quick_check(dataset)` counts, without decoding anything again:
- unreadable files the loader left out (Dataset.skipped);
- exact leaks: val and test images identical to a training image, and repeats within train. Images in memory are
  compared by a hash of their decoded pixels (as the network sees them: two files that decode to the same pixels are
  the same image to it); a split streamed from disk (data.stream.FileSplit) by a hash of its files' bytes, as decoding
  it would cost an epoch. A re-encoded or resized copy is a near-duplicate: `convscope doctor` finds those;
- balance: the smallest and largest training class, and classes with no image in val or test.

CIFAR-10 as 60,000 JPEGs took 0.25 s decoded in memory, 1.1 s streamed (reading the files), on 2 cores.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from convscope.data.dataset import Dataset, Split

# A training class with fewer than this share of the largest one's images: said as serious (the network then
# learns little of it, and accuracy hides it).
IMBALANCE = 10


@dataclass(frozen=True)
class DataCheck:
    """What quick_check found. Counts are of images; `leaks` and `missing` are keyed by split ('val', 'test')."""

    name: str  # the data as the user named it (for the doctor's command line), or the dataset's name
    sizes: dict[str, int]  # images per split: train, and val / test where the dataset has them
    unreadable: int  # files the loader left out
    leaks: dict[str, int]  # split → its images identical to a training image
    repeats: int  # training images identical to an earlier training image
    class_counts: dict[str, int]  # training images per class, in the dataset's class order
    missing: dict[str, tuple[str, ...]]  # split → classes with no image in it
    by_bytes: bool = False  # compared by the files' bytes (streamed), not the decoded pixels
    seconds: float = 0.0  # what the check cost

    @property
    def imbalanced(self) -> bool:
        counts = list(self.class_counts.values())
        return bool(counts) and max(counts) >= IMBALANCE * max(1, min(counts))

    @property
    def serious(self) -> bool:
        """A leak inflates the test score; a class missing from val/test or with a tenth of the others' images makes
        the score say little about it. Unreadable files (already warned of while loading) and repeats are not."""
        return any(self.leaks.values()) or any(self.missing.values()) or self.imbalanced

    def findings(self) -> list[str]:
        """What was found, in words; empty for clean data."""
        same = "file" if self.by_bytes else "image"
        found = [
            f"{n:,} {split} {same}{'s' * (n != 1)} identical to training {same}s (a leak)"
            for split, n in self.leaks.items()
            if n
        ]
        if self.repeats:
            found.append(f"{self.repeats:,} repeated training image{'s' * (self.repeats != 1)}")
        for split, classes in self.missing.items():
            if classes:
                found.append(f"no {split} image of {_names(classes)}")
        if self.imbalanced:
            smallest = min(self.class_counts, key=self.class_counts.__getitem__)
            found.append(f"class {smallest!r} has {self.class_counts[smallest]:,} training images")
        if self.unreadable:
            found.append(f"{self.unreadable:,} unreadable file{'s' * (self.unreadable != 1)} left out")
        return found

    def line(self) -> str:
        """One line: the totals, then what was found (or that nothing was), and where to look deeper."""
        totals = " / ".join(f"{n:,} {split}" for split, n in self.sizes.items())
        counts = list(self.class_counts.values())
        low, high = (min(counts), max(counts)) if counts else (0, 0)
        each = f"{low:,}" if low == high else f"{low:,}–{high:,}"
        head = f"data check: {totals} images, {len(counts)} classes, {each} training images per class"
        found = self.findings()
        if not found:
            return f"{head}; no leaks, repeats or unreadable files found"
        if self.name.endswith(".npz"):  # arrays given to convscope.train: the doctor reads folders and data names
            return f"{head}; {', '.join(found)}"
        return f"{head}; {', '.join(found)} — `convscope doctor {shlex.quote(self.name)}` looks deeper"


def quick_check(dataset: Dataset, name: str | None = None) -> DataCheck:
    """The cheap checks of `dataset` (see the module's docstring). `name`: the data as the user gave it (a folder,
    'cifar10'), shown in the line's `convscope doctor NAME`; default the dataset's source or name."""
    started = time.perf_counter()
    splits = {"train": dataset.train, "val": dataset.val, "test": dataset.test}
    if dataset.val is dataset.test:  # arrays with validation_data and no test_data: one split, said once
        splits.pop("val")
    splits = {split: part for split, part in splits.items() if part is not None}
    by_bytes = not isinstance(dataset.train, Split)
    # Streamed splits: the files' sizes first, as only files of a size another file shares can be twins.
    sizes = {split: _file_sizes(part.paths) for split, part in splits.items() if not isinstance(part, Split)}
    shared = Counter(size for each in sizes.values() for size in each)
    keys = {split: _keys(part, sizes.get(split, []), shared) for split, part in splits.items()}
    seen = set(keys["train"])
    leaks = {split: sum(key in seen for key in keys[split]) for split in splits if split != "train"}
    classes = dataset.classes
    train_counts = np.bincount(dataset.train.labels, minlength=len(classes))
    missing = {}
    for split in leaks:
        present = np.bincount(splits[split].labels, minlength=len(classes))
        missing[split] = tuple(c for c, n in zip(classes, present, strict=False) if n == 0)
    return DataCheck(
        name=name or dataset.source or dataset.name,
        sizes={split: len(part) for split, part in splits.items()},
        unreadable=len(dataset.skipped),
        leaks=leaks,
        repeats=len(keys["train"]) - len(seen),
        class_counts={c: int(n) for c, n in zip(classes, train_counts, strict=False)},
        missing=missing,
        by_bytes=by_bytes,
        seconds=time.perf_counter() - started,
    )


def _keys(split, sizes: list[int], shared: Counter) -> list[bytes]:
    """A 16-byte digest per image: of its decoded pixels (a Split) or of its file's bytes (a FileSplit, its files'
    `sizes`; only files of a size that another file shares (`shared`: files per size) are read: the others have no
    twin and get a key of their own)."""
    if isinstance(split, Split):
        images = np.ascontiguousarray(split.images)  # one H×W×C for all: equal bytes are equal images
        return [hashlib.blake2b(image.data, digest_size=16).digest() for image in images]
    # Read one after another: CIFAR-10's 60,000 small JPEGs took 0.8 s so, 1.6–2.7 s with 2–8 threads (2 cores).
    return [
        _file_digest(path) if shared[size] > 1 else f"{size}:{path}".encode()
        for path, size in zip(split.paths, sizes, strict=True)
    ]


def _file_sizes(paths: Iterable[str]) -> list[int]:
    """Bytes of each file; -1 for a file gone since it was listed (its batch will say so, naming it)."""
    sizes = []
    for path in paths:
        try:
            sizes.append(os.stat(path).st_size)
        except OSError:
            sizes.append(-1)
    return sizes


def _file_digest(path: str) -> bytes:
    """The digest of the file's bytes; a file unreadable since it was listed gets a key of its own (the batch that
    reads it says what is wrong, naming it): the check never stops a training."""
    try:
        with open(path, "rb") as file:
            return hashlib.blake2b(file.read(), digest_size=16).digest()
    except OSError:
        return f"unreadable:{path}".encode()


def _names(classes: Iterable[str], most: int = 3) -> str:
    """'class 'cat'', or 'classes 'cat', 'dog' and 2 more'."""
    classes = list(classes)
    shown = ", ".join(repr(c) for c in classes[:most])
    more = f" and {len(classes) - most} more" if len(classes) > most else ""
    return f"class {shown}" if len(classes) == 1 else f"classes {shown}{more}"
