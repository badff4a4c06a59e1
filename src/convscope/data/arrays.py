"""NumPy arrays as a dataset: what `keras.datasets.X.load_data()` returns, given to `convscope.train(data=(x, y))`.

Images: N×H×W×C (C = 1 or 3) or N×H×W (gray), uint8 in 0–255 or float in 0–1 (the tutorials divide by 255) or
0–255. Labels: N integers, N×1 (as keras.datasets' CIFAR-10 gives them) or N×K one-hot. Every problem is one
DataError line naming the argument, its shape and dtype — never the values.

The arrays are kept as one NumPy .npz file (no pickle: read back with allow_pickle=False) named by the SHA-256 of its
contents, in the data home's `arrays` folder (data.home: $CONVSCOPE_DATA_HOME/arrays, else
~/.local/share/convscope/datasets/arrays): kept like a downloaded dataset, never evicted like a cache. The run's
config.yaml names that file as its data, so evaluate, report and resume read the very same images; the same
arrays given again reuse the file. An .npz file of the same keys (x_train, y_train, x_test, y_test, optionally
x_val, y_val and classes) is also a dataset of its own: `convscope train --data my-data.npz`.
"""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import numpy as np

from convscope.data.dataset import Dataset, Split, seeded_split
from convscope.data.home import dataset_folder
from convscope.errors import DataError
from convscope.files import atomic_write_bytes, check_regular_file

SPLITS = ("train", "val", "test")
MAX_CLASSES = 100_000


def images_uint8(x, what: str) -> np.ndarray:
    """uint8 N×H×W×C images from an array as the tutorials hold them (see the module's docstring).

    Raises DataError naming `what` (e.g. 'data x') for a wrong rank, channel count, dtype, NaN/inf or range."""
    x = np.asarray(x)
    where = f"{what}: shape {x.shape}, dtype {x.dtype}"
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[0] == 0 or x.shape[-1] not in (1, 3) or min(x.shape[1:3]) < 1:
        raise DataError(f"{where}: expected N×H×W×C images with C = 1 or 3 (or N×H×W gray images)")
    if x.dtype == np.uint8:
        return np.ascontiguousarray(x)
    if x.dtype == bool or not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)):
        raise DataError(f"{where}: expected uint8 (0–255) or float (0–1 or 0–255) pixel values")
    if np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all():
        raise DataError(f"{where}: holds NaN or infinite values")
    low, high = float(x.min()), float(x.max())
    if low < 0 or high > 255:
        raise DataError(
            f"{where}: values span {low:g} to {high:g}; expected 0–1 or 0–255 (pixels, not standardised values: "
            "convscope standardises them itself)"
        )
    scale = 255.0 if np.issubdtype(x.dtype, np.floating) and high <= 1.0 else 1.0
    return np.rint(x.astype(np.float64) * scale).astype(np.uint8)


def labels_int(y, n: int, what: str) -> np.ndarray:
    """int64 N class indices from N integers, N×1, or N×K one-hot rows. Raises DataError naming `what`."""
    y = np.asarray(y)
    where = f"{what}: shape {y.shape}, dtype {y.dtype}"
    if y.ndim == 2 and y.shape[1] > 1:  # one-hot, as for Keras' categorical cross-entropy
        if not (np.isin(y, (0, 1)).all() and (y.sum(1) == 1).all()):
            raise DataError(f"{where}: a 2-D label array must be one-hot rows (a single 1 in each)")
        y = y.argmax(1)
    elif y.ndim == 2:
        y = y[:, 0]
    if y.ndim != 1 or y.dtype == bool or not np.issubdtype(y.dtype, np.integer):
        if y.ndim == 1 and np.issubdtype(y.dtype, np.floating) and np.isfinite(y).all() and (y == np.rint(y)).all():
            y = y.astype(np.int64)  # whole numbers stored as floats
        else:
            raise DataError(f"{where}: expected N integer class indices (or N×1, or N×K one-hot)")
    if len(y) != n:
        raise DataError(f"{where}: {len(y)} labels for {n} images; the lengths must be equal")
    if len(y) and (y.min() < 0 or y.max() >= MAX_CLASSES):
        raise DataError(f"{where}: class indices must be 0 to {MAX_CLASSES - 1}; found {y.min()} to {y.max()}")
    return y.astype(np.int64)


def pair(value, what: str) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 images, int64 labels) from an (x, y) pair given as `what` (e.g. 'validation_data')."""
    if not isinstance(value, tuple | list) or len(value) != 2:
        raise DataError(f"{what}: expected a pair (x, y) of images and labels. Received: {type(value).__name__}")
    x = images_uint8(value[0], f"{what} x")
    return x, labels_int(value[1], len(x), f"{what} y")


def save_arrays(train: tuple, val: tuple | None = None, test: tuple | None = None, classes=None, seed: int = 0) -> Path:
    """Check and keep the arrays (see the module's docstring); returns the .npz file. Raises DataError.

    `val`: the validation images (Keras' validation_data); without it, a tenth of train is held out by the trainer.
    `test`: where test accuracy is measured; without it, the validation images are (as the TensorFlow tutorial
    measures on its validation_data); with neither, a seeded tenth of train is held out and tested on. `classes`:
    names, one per class index; default '0', '1', …
    """
    parts = {"train": pair(train, "data")}
    if val is not None:
        parts["val"] = pair(val, "validation_data")
    if test is not None:
        parts["test"] = pair(test, "test_data")
    shapes = {name: x.shape[1:] for name, (x, _) in parts.items()}
    if len(set(shapes.values())) > 1:
        raise DataError(
            "images of every split must have one shape H×W×C. Received: "
            + ", ".join(f"{name} {'×'.join(map(str, s))}" for name, s in shapes.items())
        )
    top = max(int(y.max()) for _, y in parts.values()) + 1
    if top < 2 and classes is None:
        raise DataError(f"data y: every label is {top - 1}; a classifier needs images of at least 2 classes")
    if classes is None:
        classes = [str(i) for i in range(top)]
    classes = [str(c) for c in classes]
    if len(classes) < top or len(classes) < 2 or len(set(classes)) != len(classes):
        raise DataError(
            f"classes: {max(top, 2)} distinct names are needed for labels 0 to {top - 1} (at least 2). Received "
            f"{len(classes)} names, {len(set(classes))} distinct"
        )
    arrays = {"classes": np.array(classes, dtype=str)}
    for name, (x, y) in parts.items():
        arrays[f"x_{name}"], arrays[f"y_{name}"] = x, y
    digest = hashlib.sha256()
    for key in sorted(arrays):
        digest.update(f"{key}{arrays[key].dtype}{arrays[key].shape}".encode())
        digest.update(np.ascontiguousarray(arrays[key]).data)
    path = dataset_folder("arrays") / f"arrays-{digest.hexdigest()[:16]}.npz"
    if not path.is_file():
        from io import BytesIO

        buffer = BytesIO()
        np.savez(buffer, **arrays)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, buffer.getvalue())
    return path


def load_arrays(path: str | Path, seed: int = 0, val_fraction: float = 0.1) -> Dataset:
    """The Dataset of an .npz file of arrays (see the module's docstring). Raises DataError naming the file."""
    path = check_regular_file(path, "data file", DataError)
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        raise DataError(f"{path}: not a readable NumPy .npz file ({err})") from None
    missing = [k for k in ("x_train", "y_train") if k not in arrays]
    if missing:
        raise DataError(f"{path}: no {missing[0]} array; expected x_train, y_train (x_val, y_val, x_test, y_test)")
    splits = {}
    for name in SPLITS:
        if f"x_{name}" in arrays:
            x = images_uint8(arrays[f"x_{name}"], f"{path.name} x_{name}")
            if f"y_{name}" not in arrays:
                raise DataError(f"{path}: x_{name} without y_{name}")
            splits[name] = Split(x, labels_int(arrays[f"y_{name}"], len(x), f"{path.name} y_{name}"))
    top = max(int(s.labels.max()) for s in splits.values()) + 1
    classes = tuple(str(c) for c in arrays["classes"]) if "classes" in arrays else tuple(map(str, range(top)))
    if len(classes) < top:
        raise DataError(f"{path}: {len(classes)} class names for labels up to {top - 1}")
    train, val, test = splits["train"], splits.get("val"), splits.get("test")
    if test is None and val is None:
        train, test = seeded_split(train, val_fraction, seed)
        if not len(test):
            raise DataError(
                f"{path}: {len(train)} images are too few to hold out a tenth of each class for testing; give "
                "test_data=(x, y) or validation_data=(x, y), or more images"
            )
    return Dataset(path.stem, classes, train, test if test is not None else val, val, source=str(path))
