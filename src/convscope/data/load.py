"""One entry point from a data name to a Dataset (in memory, or streamed for a large image folder)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from convscope.errors import DataError

if TYPE_CHECKING:  # the annotation only: TrainConfig reads BUILT_IN while the CLI builds its flags, without NumPy
    from convscope.data.dataset import Dataset

BUILT_IN = ("fashion-mnist", "mnist", "cifar10", "cifar100")


def load_dataset(
    name: str,
    data_dir: str | None,
    image_shape: tuple[int, int, int],
    seed: int,
    val_fraction: float = 0.1,
    progress=None,
    memory_budget: int | None = None,
) -> Dataset:
    """`name` is a built-in dataset (read from `data_dir` or its default place), an .npz file of NumPy arrays
    (data/arrays.py) or an image folder.

    image_shape (H, W, C) is what the model takes; image folders are decoded straight to it, built-in datasets
    keep their own shape (the caller adapts the model to them). val_fraction: the share of an image folder without a
    val/ split held out for validation (its test split does not depend on it). progress(done, total): called as an
    image folder's files are read. memory_budget: bytes (data.stream.memory_budget) that an image folder's decoded
    images may take; past it its splits are FileSplits streamed from disk. Built-in datasets always stay in memory.
    """
    if name in ("fashion-mnist", "mnist"):
        from convscope.data.idx import load_idx_dataset

        return load_idx_dataset(data_dir, name)
    if name in ("cifar10", "cifar100"):
        from convscope.data.cifar import load_cifar

        return load_cifar(data_dir, which=int(name[5:]))  # no data_dir: where `convscope data get NAME` puts it
    if name.endswith(".npz"):  # arrays (convscope.train(data=(x, y)) keeps them in such a file)
        from convscope.data.arrays import load_arrays

        return load_arrays(name, seed, val_fraction)
    folder = Path(name)
    if not folder.is_dir():
        raise DataError(
            f"{name}: not a built-in dataset ({', '.join(BUILT_IN)}), an .npz file of arrays nor an image folder"
        )
    from convscope.data.folder import load_folder

    h, w, c = image_shape
    return load_folder(
        folder, (h, w), c, val_fraction=val_fraction, seed=seed, progress=progress, memory_budget=memory_budget
    )
