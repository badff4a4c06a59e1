"""Datasets: every loader (IDX, CIFAR binary, image folders) returns a Dataset of uint8 arrays.

Images are N×H×W×C uint8 (the order people write image shapes in); the trainer moves them to torch once and
augments whole batches there, so no per-image Python work happens while training. An image folder larger than the
memory budget gives FileSplits instead (data/stream.py: file paths and labels, decoded batch by batch); the helpers
here that only use labels and `take` work on both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple, Protocol, Self, TypeVar

import numpy as np

from convscope.errors import DataError


@dataclass(frozen=True)
class Split:
    images: np.ndarray  # uint8, N×H×W×C
    labels: np.ndarray  # int64, N

    def __post_init__(self) -> None:
        if self.images.dtype != np.uint8 or self.images.ndim != 4:
            raise DataError(f"images must be uint8 N×H×W×C. Received {self.images.dtype} {self.images.shape}")
        if self.labels.shape != (self.images.shape[0],):
            raise DataError(f"{self.images.shape[0]} images but labels of shape {self.labels.shape}")

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def take(self, index: np.ndarray) -> Split:
        return Split(self.images[index], self.labels[index])


class LabelledSplit(Protocol):
    """What the helpers here use of a split: Split (images in memory) and data.stream.FileSplit (image files; not
    named here, as data.stream imports this module) both have it."""

    labels: np.ndarray  # int64, N

    def __len__(self) -> int: ...

    def take(self, index: np.ndarray) -> Self: ...


AnySplit = TypeVar("AnySplit", bound=LabelledSplit)  # seeded_split and per_class_subset return the kind they get


class Skipped(NamedTuple):
    """A file left out of a dataset, and why (e.g. 'damaged or truncated image (…)'); unpacks as (path, reason)."""

    path: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"path": self.path, "reason": self.reason}


def skipped_results(skipped: tuple[Skipped, ...]) -> dict:
    """The results.json entries: {"skipped_count": N, "skipped_files": [{"path": …, "reason": …}, …]}."""
    return {"skipped_count": len(skipped), "skipped_files": [item.to_dict() for item in skipped]}


@dataclass(frozen=True)
class Dataset:
    name: str  # 'fashion-mnist', 'cifar10', or the folder's name
    classes: tuple[str, ...]
    # Split, or data.stream.FileSplit for an image folder streamed from disk (past the memory budget)
    train: LabelledSplit
    test: LabelledSplit
    val: LabelledSplit | None = None  # None: the trainer holds out part of train
    source: str = ""  # where it was read from
    skipped: tuple[Skipped, ...] = field(default_factory=tuple)  # unreadable files left out (image folders)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """H×W×C of every image."""
        if isinstance(self.train, Split):
            return tuple(self.train.images.shape[1:])  # type: ignore[return-value]
        return self.train.shape  # a FileSplit


# Below this pixel std (of the 0–1 range; a quarter of one grey level) in every channel, a training set is blank:
# standardising it would divide by ~0 and the network could learn nothing.
MIN_PIXEL_STD = 1e-3


def pixel_stats(images: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 N×H×W×C images scaled to [0, 1] (computed in chunks: no float copy); a std
    is never below 1e-6. Raises DataError when there are no images."""
    c = images.shape[-1]
    total, total_sq, count = np.zeros(c), np.zeros(c), 0
    # Chunks of about 4M values (32 MiB as float64, twice that with the squares): by images, 4096 chunks of
    # 224×224×3 took 4.9 GB each and training a 224×224 folder peaked at 7 GB here.
    step = max(1, 2**22 // max(1, int(np.prod(images.shape[1:]))))
    for start in range(0, len(images), step):
        chunk = images[start : start + step].reshape(-1, c).astype(np.float64) / 255
        total += chunk.sum(0)
        total_sq += (chunk**2).sum(0)
        count += chunk.shape[0]
    if count == 0:
        raise DataError(f"no images to compute the pixel mean and std of (received shape {images.shape})")
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean**2, 1e-12))  # ≥ 1e-6: a constant channel divides by it
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)


def check_not_blank(name: str, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
    """Raise DataError naming the dataset `name` when every channel's pixel std (0–1 range) is below MIN_PIXEL_STD."""
    if max(std) < MIN_PIXEL_STD:
        levels = [f"{m * 255:.4g}" for m in mean]
        level = levels[0] if len(set(levels)) == 1 else "(" + ", ".join(levels) + ")"
        spread = max(std) * 255
        value = f"{level} of 255 in every pixel" if spread < 0.01 else f"{level} of 255, std {spread:.2f}"
        raise DataError(
            f"{name}: all images have the same value ({value}): there is nothing to learn from; check that the "
            "images are not blank and decode as expected"
        )


def seeded_split(split: AnySplit, fraction: float, seed: int) -> tuple[AnySplit, AnySplit]:
    """(rest, held out): a seeded random `fraction` of `split` held out, stratified by label."""
    rng = np.random.default_rng(seed)
    held = []
    for label in np.unique(split.labels):
        index = np.flatnonzero(split.labels == label)
        rng.shuffle(index)
        held.append(index[: int(round(len(index) * fraction))])
    held_out = np.sort(np.concatenate(held))
    rest = np.setdiff1d(np.arange(len(split)), held_out)
    return split.take(rest), split.take(held_out)


def per_class_subset(split: AnySplit, per_class: int, seed: int) -> AnySplit:
    """A seeded random `per_class` images of each class (all of a class that has fewer), in their original order."""
    rng = np.random.default_rng([seed, per_class])  # its own stream: independent of the validation hold-out
    kept = []
    for label in np.unique(split.labels):
        index = np.flatnonzero(split.labels == label)
        kept.append(rng.permutation(index)[:per_class])
    return split.take(np.sort(np.concatenate(kept)))
