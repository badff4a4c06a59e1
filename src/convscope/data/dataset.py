"""In-memory datasets: every loader (IDX, CIFAR binary, image folders) returns a Dataset of uint8 arrays.

Images are N×H×W×C uint8 (the order people write image shapes in); the trainer moves them to torch once and
augments whole batches there, so no per-image Python work happens while training.
"""

from __future__ import annotations

from dataclasses import dataclass, field

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


@dataclass(frozen=True)
class Skipped:
    path: str
    reason: str


@dataclass(frozen=True)
class Dataset:
    name: str  # 'fashion-mnist', 'cifar10', or the folder's name
    classes: tuple[str, ...]
    train: Split
    test: Split
    val: Split | None = None  # None: the trainer holds out part of train
    source: str = ""  # where it was read from
    skipped: tuple[Skipped, ...] = field(default_factory=tuple)  # unreadable files left out (image folders)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """H×W×C of every image."""
        return tuple(self.train.images.shape[1:])  # type: ignore[return-value]


def seeded_split(split: Split, fraction: float, seed: int) -> tuple[Split, Split]:
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


def per_class_subset(split: Split, per_class: int, seed: int) -> Split:
    """A seeded random `per_class` images of each class (all of a class that has fewer), in their original order."""
    rng = np.random.default_rng([seed, per_class])  # its own stream: independent of the validation hold-out
    kept = []
    for label in np.unique(split.labels):
        index = np.flatnonzero(split.labels == label)
        kept.append(rng.permutation(index)[:per_class])
    return split.take(np.sort(np.concatenate(kept)))
