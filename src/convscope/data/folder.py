"""Image-folder datasets: one subfolder per class, like Keras `image_dataset_from_directory` or torchvision ImageFolder.

Two layouts are read:

    root/train/<class>/*.png  root/val/<class>/…  root/test/<class>/…   (val/ is optional, also valid/ or validation/;
                                                                         test/ is optional)
    root/<class>/*.png                                                  (train/val/test: a seeded stratified split)

Inside a class folder, images in subfolders count too (as in Keras and torchvision); hidden files and folders do not.

Every file is decoded with `open_image` (format allowlist, EXIF orientation, bombs and truncation refused), converted to
gray or RGB and resized to one H×W. A file that cannot be read is left out, untouched, and listed in `Dataset.skipped`
(a named pipe or device with an image suffix too: refused without being opened). Training images that all have the
same value are a DataError naming the folder.

Given a memory budget that the decoded images would exceed, nothing is decoded: the splits are FileSplits, streamed
batch by batch while training (data/stream.py).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from convscope.data import cache
from convscope.data.dataset import AnySplit, Dataset, Skipped, Split, check_not_blank, pixel_stats, seeded_split
from convscope.data.stream import FileSplit, check_headers, default_workers, file_split
from convscope.data.stream import decode_into as _decode_into  # by this name: tests count the decodes through it
from convscope.errors import DataError
from convscope.summary import human_bytes

log = logging.getLogger(__name__)
Progress = Callable[[int, int], None]  # (images read so far, images in all), called from the loading thread

# Suffixes worth trying to decode; anything else (README.txt, labels.csv, …) is ignored without a word.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
VAL_NAMES = ("val", "valid", "validation")
_REASONS_SHOWN = 3  # skip reasons quoted in an error message
_BLANK_SAMPLE = 64  # streamed training images decoded to check they are not all blank (~0.3 s at 224×224)


def _hidden(path: Path) -> bool:
    return path.name.startswith(".")


def image_files(folder: str | Path, recursive: bool = False, others: list[Path] | None = None) -> list[Path]:
    """Sorted image files in `folder` (by suffix; hidden files and folders left out). Nothing is decoded or opened here.

    Entries with an image suffix that are not folders are listed even when they are not regular files (a named pipe
    called x.png, a dangling link), so that reading them reports them (open_image refuses them without opening)
    instead of leaving them out without a word. `others`, when given, receives what is left out and not hidden: files
    without an image suffix (README.txt, IMG_1.HEIC) and links to folders (never followed)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: expected a folder of images, found {'a file' if folder.exists() else 'nothing'}")
    found = []
    for path in folder.rglob("*") if recursive else folder.iterdir():
        relative = path.relative_to(folder)
        if any(part.startswith(".") for part in relative.parts):
            continue
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            if others is not None and (path.is_symlink() or not path.is_dir()):
                others.append(path)
            continue
        if not path.is_dir():
            found.append(path)
    return sorted(found)


def class_folders(folder: Path) -> dict[str, Path]:
    """The subfolders of `folder` by name, sorted (hidden ones left out): its classes, or its splits."""
    return {p.name: p for p in sorted(folder.iterdir()) if p.is_dir() and not _hidden(p)}


def _read(
    files: list[tuple[Path, int]],
    image_size: tuple[int, int],
    channels: int,
    skipped: list[Skipped],
    progress: Progress | None = None,
) -> tuple[Split, list[tuple[Path, str]]]:
    """Decode (path, label) pairs in order, from the decoded-folder cache when it has them (data/cache.py), otherwise
    with threads; report progress(done, total) as it goes, and every file left out (log and `skipped`)."""
    name = cache.key(files, image_size, channels)
    hit = cache.load(name)
    if hit is not None:
        images, labels, reasons = hit
        split, failed = Split(images, labels), [(Path(path), reason) for path, reason in reasons]
        if progress:
            progress(len(files), len(files))
    else:
        split, failed = _decode_all(files, image_size, channels, progress)
        cache.store(name, split.images, split.labels, [(str(path), reason) for path, reason in failed])
    for path, reason in failed:
        log.warning("skipped %s: %s", path, reason)
        skipped.append(Skipped(str(path), reason))
    return split, failed


def _decode_all(
    files: list[tuple[Path, int]], image_size: tuple[int, int], channels: int, progress: Progress | None
) -> tuple[Split, list[tuple[Path, str]]]:
    """Decode every file with threads (Pillow releases the GIL while decoding and resizing); the split of those that
    could be read, and (path, reason) for the others."""
    out = np.empty((len(files), *image_size, channels), dtype=np.uint8)  # filled in place: no list of arrays
    reasons = [None] * len(files)
    with ThreadPoolExecutor(max_workers=os.cpu_count()) as pool:
        jobs = pool.map(lambda i: _decode_into(out, i, files[i][0], channels), range(len(files)))
        every = max(1, len(files) // 200)  # about 200 updates, whatever the size
        for i, reason in enumerate(jobs):
            reasons[i] = reason
            if progress and ((i + 1) % every == 0 or i + 1 == len(files)):
                progress(i + 1, len(files))
    kept = [i for i, reason in enumerate(reasons) if reason is None]
    failed = [(files[i][0], reason) for i, reason in enumerate(reasons) if reason is not None]
    for dst, src in enumerate(kept):  # compact in place rather than copying the whole array
        if dst != src:
            out[dst] = out[src]
    labels = np.array([files[i][1] for i in kept], dtype=np.int64)
    return Split(out[: len(kept)], labels), failed


def _files_of(folder: Path, classes: tuple[str, ...]) -> list[tuple[Path, int]]:
    """(path, label) for every image under folder/<class>/, class by class; a class folder train lacks is an error."""
    found = class_folders(folder)
    unknown = sorted(set(found) - set(classes))
    if unknown:
        raise DataError(
            f"{folder}: class folder(s) {', '.join(map(repr, unknown))} not in the training classes "
            f"({', '.join(classes)}); every class needs training images"
        )
    return [(p, label) for label, name in enumerate(classes) if name in found for p in image_files(found[name], True)]


def _load_split(
    folder: Path,
    files: list[tuple[Path, int]],
    image_size: tuple[int, int],
    channels: int,
    skipped: list[Skipped],
    progress: Progress | None = None,
) -> Split:
    split, failed = _read(files, image_size, channels, skipped, progress)
    if len(split) == 0:
        _none_readable(folder, failed)
    return split


def _none_readable(folder: Path, failed: list[tuple[Path, str]]) -> None:
    reasons = "; ".join(f"{path.name}: {reason}" for path, reason in failed[:_REASONS_SHOWN])
    why = f", all {len(failed)} skipped ({reasons}{'; …' if len(failed) > _REASONS_SHOWN else ''})" if failed else ""
    raise DataError(f"{folder}: expected images in {{class}}/ subfolders, found no readable image{why}")


def _stream_splits(
    root: Path,
    folders: dict[str, Path | None],
    files: dict[str, list[tuple[Path, int]]],
    shape: tuple[int, int, int],
    skipped: list[Skipped],
    progress: Progress | None,
) -> dict[str, FileSplit]:
    """Every split as a FileSplit (nothing decoded): files whose header does not read are left out and recorded as
    _read records them; what only a full decode finds fails later, at the batch (data/stream.py)."""
    found = [item for listed in files.values() for item in listed]
    kept, failed = check_headers(found, progress)
    for path, reason in failed:
        log.warning("skipped %s: %s", path, reason)
        skipped.append(Skipped(str(path), reason))
    readable = {path for path, _ in kept}
    splits = {}
    for name, listed in files.items():
        splits[name] = file_split([item for item in listed if item[0] in readable], shape)
        if len(splits[name]) == 0:
            in_split = {path for path, _ in listed}
            _none_readable(folders[name], [(path, reason) for path, reason in failed if path in in_split])
    return splits


def _check_every_class(split: Split | FileSplit, classes: tuple[str, ...], folder: Path) -> None:
    counts = np.bincount(split.labels, minlength=len(classes))
    empty = [name for name, count in zip(classes, counts, strict=True) if count == 0]
    if empty:
        raise DataError(f"{folder}: class folder(s) {', '.join(map(repr, empty))} have no readable training image")


def _hold_out(train: AnySplit, fraction: float, seed: int, name: str, root: Path) -> tuple[AnySplit, AnySplit]:
    rest, held = seeded_split(train, fraction, seed)
    if len(held) == 0:
        raise DataError(
            f"{root}: no {name}/ folder, and holding out {fraction:.3g} of {len(train)} training images rounds to "
            f"none in every class; add a {name}/ folder or more images, or raise {name}_fraction"
        )
    return rest, held


def load_folder(
    root: str | Path,
    image_size: tuple[int, int],
    channels: int,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 0,
    progress: Progress | None = None,
    memory_budget: int | None = None,
) -> Dataset:
    """Read an image-folder dataset; images become uint8 N×H×W×C with (H, W) = image_size and C = channels (1 or 3).

    Splits missing on disk (all three for a flat layout, val/ or test/ otherwise) are seeded stratified fractions of
    the training images: the same seed gives the same split. With train/ and a held-out folder (val/, valid/ or
    validation/) but no test/, the held-out folder is the test split, as in the tutorials that report accuracy on it,
    and the validation images come from train/. progress(done, total) is called as images are decoded (all splits
    together); a second read of the same unchanged folder comes from the decoded cache (data/cache.py).

    memory_budget: bytes the decoded images of all splits together may take (None: no limit). Past it, nothing is
    decoded: every split is a FileSplit (data/stream.py) of the same files, labels and split, read batch by batch
    while training; files whose header does not read are left out as above, and only a sample of the training
    images is checked for being blank. Raises DataError (one line, naming the folder) for a layout it cannot read.
    """
    root = Path(root)
    _check_arguments(root, image_size, channels, val_fraction, test_fraction)
    folders, notes = split_layout(root)
    for note in notes:  # shown (warning level): which images are scored, and which are not read, is worth a line
        log.warning("%s", note)
    classes = _classes(folders["train"])
    # List every split before decoding any: a misnamed class folder in test/ fails at once, not after minutes.
    files = {name: _files_of(folder, classes) for name, folder in folders.items() if folder is not None}
    skipped: list[Skipped] = []
    shape = (int(image_size[0]), int(image_size[1]), channels)
    splits = _decode_or_stream(root, folders, files, shape, memory_budget, skipped, progress)
    _check_training_images(root, splits["train"], classes, folders["train"], skipped)
    train, val, test = _split_off(root, splits, val_fraction, test_fraction, seed)
    return Dataset(
        name=root.resolve().name,
        classes=classes,
        train=train,
        val=val,
        test=test,
        source=str(root),
        skipped=tuple(skipped),
    )


def _check_arguments(
    root: Path, image_size: tuple[int, int], channels: int, val_fraction: float, test_fraction: float
) -> None:
    """DataError unless root is a folder, image_size (height, width) > 0, channels 1 or 3 and the fractions leave
    training images."""
    if not root.is_dir():
        found = "a file" if root.exists() else "nothing"
        raise DataError(f"{root}: expected a folder with one subfolder per class, found {found}")
    if len(image_size) != 2 or not all(isinstance(n, int | np.integer) and n > 0 for n in image_size):
        raise DataError(f"image_size must be (height, width) in pixels, both > 0. Received: {image_size}")
    if channels not in (1, 3):
        raise DataError(f"images can be read with 1 (gray) or 3 (RGB) channels. Received: {channels}")
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise DataError(
            f"val_fraction and test_fraction must be ≥ 0 with a sum < 1. Received: {val_fraction}, {test_fraction}"
        )


def split_layout(root: Path) -> tuple[dict[str, Path | None], list[str]]:
    """The folder of each split, {"train": …, "val": … or None, "test": … or None}: root/train/ and its neighbours, or
    root itself (flat layout: val and test None). A lone val/ (valid/, validation/) is the test split. With them, the
    lines worth telling the user: that a val/ folder is the test split, folders next to train/ that are ignored."""
    top = class_folders(root)
    if "train" not in top and {"test", *VAL_NAMES} & set(top):
        raise DataError(f"{root}: found {', '.join(sorted({'test', *VAL_NAMES} & set(top)))}/ but no train/ folder")
    train_dir = top.get("train", root)
    val_dirs = [top[name] for name in VAL_NAMES if name in top and train_dir != root]
    if len(val_dirs) > 1:
        raise DataError(f"{root}: expected one validation folder, found {', '.join(p.name for p in val_dirs)}")
    val_dir = val_dirs[0] if val_dirs else None
    test_dir = top.get("test") if train_dir != root else None
    notes = []
    if test_dir is None and val_dir is not None:
        notes.append(f"{root}: {val_dir.name}/ is the test split (no test/); validation images come from train/")
        test_dir, val_dir = val_dir, None
    if train_dir != root:
        extra = sorted(set(top) - {"train", "test", *VAL_NAMES})
        if extra:
            notes.append(f"{root}: ignoring folder(s) {', '.join(extra)} next to train/")
    return {"train": train_dir, "val": val_dir, "test": test_dir}, notes


def _classes(train_dir: Path) -> tuple[str, ...]:
    """The class names: the subfolders of the training folder, sorted; at least 2, or a DataError."""
    classes = tuple(class_folders(train_dir))
    if len(classes) < 2:
        raise DataError(
            f"{train_dir}: expected one subfolder per class, at least 2. Received: {len(classes)} "
            f"({', '.join(classes) or 'none'})"
        )
    return classes


def _decode_or_stream(
    root: Path,
    folders: dict[str, Path | None],
    files: dict[str, list[tuple[Path, int]]],
    shape: tuple[int, int, int],
    memory_budget: int | None,
    skipped: list[Skipped],
    progress: Progress | None,
) -> dict[str, AnySplit]:
    """Every split of `files` decoded to H×W×C = shape (Split), or none decoded (FileSplit, streamed) when they would
    take more than memory_budget bytes decoded."""
    total = sum(len(found) for found in files.values())
    decoded = total * shape[0] * shape[1] * shape[2]  # bytes of every split decoded
    started = time.perf_counter()
    if memory_budget is not None and decoded > memory_budget:
        workers = default_workers()
        log.warning(  # shown on the terminal: memory and speed differ from an in-memory run, the user should know
            "%s: %d images (%s decoded) exceed the memory budget of %s: streaming them from disk with %d worker%s",
            root,
            total,
            human_bytes(decoded),
            human_bytes(memory_budget),
            workers,
            "" if workers == 1 else "s",
        )
        splits = _stream_splits(root, folders, files, shape, skipped, progress)
        log.info("%s: %d image headers checked in %.1f s", root, total, time.perf_counter() - started)
    else:
        splits = _decode_splits(folders, files, shape, skipped, progress)
        log.info("%s: %d images read in %.1f s", root, total, time.perf_counter() - started)
    return splits


def _decode_splits(
    folders: dict[str, Path | None],
    files: dict[str, list[tuple[Path, int]]],
    shape: tuple[int, int, int],
    skipped: list[Skipped],
    progress: Progress | None,
) -> dict[str, Split]:
    """Every split decoded in memory, one after the other; progress counts the images of all splits together."""
    offsets, total = {}, 0  # where each split starts in the progress count
    for name, found in files.items():
        offsets[name], total = total, total + len(found)
    return {
        name: _load_split(
            folders[name],
            found,
            shape[:2],
            shape[2],
            skipped,
            progress and (lambda done, _, start=offsets[name]: progress(start + done, total)),
        )
        for name, found in files.items()
    }


def _check_training_images(
    root: Path, train: AnySplit, classes: tuple[str, ...], train_dir: Path, skipped: list[Skipped]
) -> None:
    """DataError when a class has no readable training image or the training images are blank (all one value: on a
    sample when streamed, as decoding every image would cost an epoch); a warning line when files were left out."""
    _check_every_class(train, classes, train_dir)
    if isinstance(train, Split):
        check_not_blank(str(root), *pixel_stats(train.images))  # e.g. float images read as black
    else:
        sample = train.sample(_BLANK_SAMPLE, seed=0)
        check_not_blank(f"{root} (a sample of {len(sample)} training images)", *pixel_stats(sample))
    if skipped:
        log.warning("%s: %d unreadable file(s) left out", root, len(skipped))


def _split_off(
    root: Path, splits: dict[str, AnySplit], val_fraction: float, test_fraction: float, seed: int
) -> tuple[AnySplit, AnySplit | None, AnySplit]:
    """(train, val, test): the splits missing on disk held out of train, seeded and stratified, test first. val is
    None when val_fraction is 0 and there is no validation folder."""
    train, val, test = splits["train"], splits.get("val"), splits.get("test")
    test_held_out = test is None
    if test_held_out:
        train, test = _hold_out(train, test_fraction, seed, "test", root)
    if val is None and val_fraction > 0:
        # val_fraction is of all the labelled images; when test was split off too, take it from what is left.
        fraction = val_fraction / (1 - test_fraction) if test_held_out else val_fraction
        train, val = _hold_out(train, fraction, seed + 1, "val", root)
    return train, val, test
