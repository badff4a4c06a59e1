"""Images that two splits of a detection dataset share ("leak": the same file, or the same bytes under another name,
in train and test inflates the test score), and images repeated within one split: found by a digest per image
(SHA-256 of the file's bytes for the lint, of the decoded pixels at training), each image digested once, on the
readers' threads. convscope.data.detection.summary counts and words them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from convscope.data.detection.boxes import LabelProblem
from convscope.data.detection.reading import each_image

SCORES = {"train": "training", "val": "validation", "test": "test"}  # the score an image in that split counts in


@dataclass(frozen=True)
class Entry:
    split: str
    name: str  # as shown to people
    key: str  # the same key: the same file (its real path), or at training the same name
    digest: bytes | None  # SHA-256 of the file's bytes (or of its decoded pixels); None: could not be read


def shared(entries: Iterable[Entry], what: str) -> tuple[list[LabelProblem], dict[str, int]]:
    """(a "leak" problem for each image whose digest an earlier split already holds, named with the first such
    image; the images per split repeating one of the same split). `what`: "bytes" or "pixels"."""
    first: dict[bytes, Entry] = {}
    problems, repeated = [], {}
    for entry in entries:
        if entry.digest is None:
            continue
        earlier = first.setdefault(entry.digest, entry)
        if earlier is entry:
            continue
        if earlier.split == entry.split:
            repeated[entry.split] = repeated.get(entry.split, 0) + 1
            continue
        harm = f"an image in two splits inflates the {SCORES.get(entry.split, entry.split)} score"
        if earlier.key == entry.key:
            why = f"the same image is in {earlier.split} and {entry.split}: {harm}"
        else:
            why = f"in {entry.split}, same {what} as {earlier.name} in {earlier.split}: {harm}"
        problems.append(LabelProblem(entry.name, None, why, "leak"))
    return problems, repeated


def file_digest(path: Path) -> bytes | None:
    """SHA-256 of a file's bytes, read in chunks; None when it cannot be read (its reader already said why)."""
    try:
        with open(path, "rb") as file:
            return hashlib.file_digest(file, "sha256").digest()
    except OSError:
        return None


def digests(count: int, digest: Callable[[int], bytes | None]) -> list[bytes | None]:
    """digest(0) … digest(count − 1) on the readers' threads (hashlib lets go of the GIL on large buffers)."""
    return each_image(digest, count)
