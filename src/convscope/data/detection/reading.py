"""The reading kit: what the YOLO, COCO and Pascal VOC readers (convscope.data.detection.yolo, .coco, .voc) share.

Text files (label files, data.yaml, COCO JSON, class lists) are read as editors save them: `read_text` drops a UTF-8
byte-order mark and decodes UTF-16 with a BOM (Windows Notepad's "Unicode"), within convscope.userfiles' bounds.
Images are decoded by `decode_image` (format allowlist, EXIF orientation, bombs refused: convscope.data.images) on
`reader_threads()` threads by `each_image`, which Ctrl-C and SIGTERM stop within a second. An image with more than
MAX_BOXES boxes is skipped (`too_many_boxes`), and duplicates are found in n log n (`duplicate_problems`). What reading
one image and its labels gave is an `ImageResult`; a split's results become its letterboxed array (`compact`) or, for
`convscope detect convert`, its `RawImage`s (`raw_images`). `CaseFinder` finds a labelled file whose name differs
from the one on disk only in case. The lint's conventions are those of
convscope.data.detection.boxes (LabelProblem, lint_summary).
"""

from __future__ import annotations

import logging
import math
import os
import threading
from collections.abc import Callable
from concurrent.futures import CancelledError, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TypeVar

import numpy as np

from convscope import userfiles
from convscope.data.detection.boxes import (
    MAX_BOXES,
    Boxes,
    DetectionDataset,
    DetectionSplit,
    LabelProblem,
    RawImage,
    lint_summary,
)
from convscope.data.detection.duplicates import find_duplicates
from convscope.data.images import open_image, to_array
from convscope.errors import DataError

log = logging.getLogger(__name__)
SHOWN_PROBLEMS = 5  # problems quoted in an error message
WAIT_S = 0.1  # seconds the main thread blocks at a time while images are read, so that signals are seen
T = TypeVar("T")


# ── files and names ───────────────────────────────────────────────────────────────────────────────────────────────
def read_text(path: Path) -> str:
    """A text file as people save it: UTF-8 (a byte-order mark dropped) or UTF-16 with its BOM, within the bounds of
    convscope.userfiles (16 MiB, lines of 100,000 characters). Line ends stay as they are (str.splitlines, YAML and
    JSON all take CRLF). A DataError naming the path when it cannot be read, is not such text, or is past a bound."""
    return userfiles.read_text(path)


def too_many_boxes(shown: str, count: int, what: str) -> LabelProblem | None:
    """The problem (kind "boxes") that skips an image with more than MAX_BOXES boxes, else None.

    shown: the file as shown to people; what: what is counted ("label rows", "annotations", "objects")."""
    if count <= MAX_BOXES:
        return None
    why = f"{count:,} {what}, more than the {MAX_BOXES:,} an image may have; its image is skipped"
    return LabelProblem(shown, None, why, "boxes")


def child_folder(root: Path, *names: str) -> Path | None:
    """The first of `root`'s folders named one of `names`, case ignored (Annotations, annotations, …), or None."""
    wanted = [name.lower() for name in names]
    try:
        found = {p.name.lower(): p for p in sorted(Path(root).iterdir()) if p.is_dir()}
    except OSError:
        return None
    return next((found[name] for name in wanted if name in found), None)


class CaseFinder:
    """Files under `root` by a relative name (POSIX or Windows separators): the exact path when it is a file, else
    the one file of that folder whose name equals the last part with case ignored (labels written on one system,
    files copied from another: a.jpg in the labels, a.JPG on disk). Never a path outside `root`: an absolute name or
    one with .. finds nothing. Each folder is listed once, on the first miss in it (thread-safe: each_image)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._folders: dict[Path, dict[str, list[Path]]] = {}  # folder → lower-case name → its files, sorted
        self._lock = threading.Lock()

    def find(self, name: str) -> tuple[Path | None, tuple[Path, ...]]:
        """(the file, ()) when found; (None, the files differing only in case) when two or more differ from `name`
        only in case and none is exact; (None, ()) when there is none."""
        relative = PurePosixPath(name.replace("\\", "/"))
        if not relative.parts or relative.is_absolute() or ".." in relative.parts:
            return None, ()
        exact = self.root / relative
        if exact.is_file():
            return exact, ()
        same = self._listing(exact.parent).get(exact.name.lower(), [])
        return (same[0], ()) if len(same) == 1 else (None, tuple(same))

    def _listing(self, folder: Path) -> dict[str, list[Path]]:
        with self._lock:
            if folder not in self._folders:
                names: dict[str, list[Path]] = {}
                try:
                    for path in sorted(folder.iterdir()):
                        if path.is_file():
                            names.setdefault(path.name.lower(), []).append(path)
                except OSError:  # no such folder (a name with a folder that is not there), or unreadable
                    pass
                self._folders[folder] = names
            return self._folders[folder]


def shown_path(path: Path, base: Path) -> str:
    """`path` relative to the dataset folder when it is inside it (shorter messages), else as it is."""
    try:
        return path.relative_to(base).as_posix()
    except ValueError:
        return str(path)


def finite_number(text: str) -> float | None:
    """The number a label file or XML tag writes, or None when it is not a finite number."""
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def check_image_size(image_size: int) -> None:
    """A DataError unless `image_size` (the letterboxed side S, pixels) is a positive integer."""
    if not isinstance(image_size, int | np.integer) or isinstance(image_size, bool) or image_size < 1:
        raise DataError(f"image_size must be a positive number of pixels. Received: {image_size!r}")


# ── boxes ─────────────────────────────────────────────────────────────────────────────────────────────────────────
def duplicate_problems(
    candidates: list[tuple[np.ndarray, int, object]], message
) -> tuple[list[int], list[tuple[int, LabelProblem]]]:
    """The duplicate check of one image (convscope.data.detection.duplicates) over `candidates`, (xyxy, class, where)
    in file order: (the indices of the kept ones, (index, problem) of each duplicate). `message(duplicate, earlier,
    iou)` makes a duplicate's LabelProblem from the two `where`s."""
    if not candidates:
        return [], []
    earlier, ious = find_duplicates(np.stack([c[0] for c in candidates]), [c[1] for c in candidates])
    kept, problems = [], []
    for i, (first, iou) in enumerate(zip(earlier.tolist(), ious.tolist(), strict=True)):
        if first < 0:
            kept.append(i)
        else:
            problems.append((i, message(candidates[i][2], candidates[first][2], iou)))
    return kept, problems


def to_boxes(rows: list[tuple[np.ndarray, int]], scale_xy: tuple[float, float], pad: tuple[int, int], size: float):
    """Boxes from (xyxy, class) rows: x' = x·scale_x + pad_x, clipped to [0, size]."""
    if not rows:
        return Boxes.empty()
    xyxy = np.stack([b for b, _ in rows]).astype(np.float64)
    xyxy = xyxy * np.array([*scale_xy, *scale_xy]) + np.array([*pad, *pad])
    return Boxes(np.clip(xyxy, 0, size).astype(np.float32), np.array([c for _, c in rows], dtype=np.int64))


# ── images ────────────────────────────────────────────────────────────────────────────────────────────────────────
def decode_image(path: Path) -> np.ndarray:
    """uint8 H×W×3; a DataError without the path prefix when the file cannot be read."""
    try:
        return to_array(open_image(path), 3)
    except DataError as err:
        raise DataError(str(err).removeprefix(f"{path}: ")) from None
    except (OSError, ValueError) as err:  # a mode Pillow cannot convert
        raise DataError(f"cannot convert to RGB ({err})") from None


def reader_threads() -> int:
    return min(8, os.cpu_count() or 1)  # Pillow releases the GIL while decoding and resizing


def each_image(read: Callable[[int], T], count: int) -> list[T]:
    """[read(0), …, read(count − 1)] computed on reader_threads() threads, in order.

    Ctrl-C and SIGTERM (a KeyboardInterrupt in the main thread, convscope.signals) are seen within WAIT_S: the main
    thread waits on each result with that timeout instead of blocking. On an interrupt, or an error of one image, the
    images not started are cancelled and those being read finish (each is bounded: MAX_BOXES boxes, an n log n
    duplicate check), so the command stops within a second instead of reading the rest of the dataset first.
    """
    stop = threading.Event()

    def guarded(index: int) -> T:
        if stop.is_set():  # a task that slipped past the cancel
            raise CancelledError
        return read(index)

    pool = ThreadPoolExecutor(max_workers=reader_threads())
    try:
        futures = [pool.submit(guarded, index) for index in range(count)]
        results = []
        for future in futures:
            while True:
                try:
                    results.append(future.result(timeout=WAIT_S))
                    break
                except TimeoutError:
                    continue
        return results
    except BaseException:
        stop.set()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    finally:
        pool.shutdown(wait=True)  # after a cancel: only the images already being read


@dataclass
class ImageResult:
    """What reading one image and its labels gave (the pixels go straight into the split's array)."""

    boxes: Boxes | None  # None: the image is left out
    problems: list[LabelProblem]
    polygons: list[tuple[str, int]] = field(default_factory=list)  # YOLO: (label file, line) of polygon rows
    crowds: Boxes | None = None  # COCO iscrowd / VOC difficult regions (ignore regions for scoring)
    size: tuple[int, int] = (0, 0)  # width, height of the decoded image, before letterboxing
    clipped: list[tuple[str, int | None]] = field(default_factory=list)  # VOC: (XML file, line) of clipped boxes


def raw_images(paths: list[Path], names: list[str], results: list[ImageResult]) -> tuple[RawImage, ...]:
    """The kept images of a split read with image_size None (boxes in original pixels) as RawImages."""
    return tuple(
        RawImage(path, name, *result.size, result.boxes, result.crowds or Boxes.empty())
        for path, name, result in zip(paths, names, results, strict=True)
        if result.boxes is not None
    )


def compact(out: np.ndarray, results: list[ImageResult]) -> tuple[np.ndarray, list[int]]:
    """Move the kept images to the front of `out` (N×S×S×3, in place: no second copy) → (their array, indices)."""
    kept = [i for i, result in enumerate(results) if result.boxes is not None]
    for dst, src in enumerate(kept):
        if dst != src:
            out[dst] = out[src]
    return out[: len(kept)], kept


# ── how a reader ends ─────────────────────────────────────────────────────────────────────────────────────────────
def no_training_data(where: Path, problems: list[LabelProblem], found: str) -> DataError:
    """The error for a training split with nothing usable, quoting the lint summary and the first problems."""
    problems = [problem for problem in problems if not problem.is_note]
    if not problems:
        return DataError(f"{where}: expected training images with at least one box, found {found}")
    first = "; ".join(map(str, problems[:SHOWN_PROBLEMS])) + ("; …" if len(problems) > SHOWN_PROBLEMS else "")
    return DataError(
        f"{where}: expected training images with at least one box, found {found}; "
        f"{len(problems)} label problem(s): {lint_summary(problems)} (first: {first})"
    )


def loaded_dataset(
    source: Path, name: str, classes: tuple[str, ...], splits: dict[str, DetectionSplit], problems
) -> DetectionDataset:
    """The dataset a reader loaded, after one warning with the label problems it dropped (counted by kind) and one
    per note: how every detection reader (YOLO, VOC) ends."""
    problems = tuple(problems)
    if dropped := [problem for problem in problems if not problem.is_note]:
        log.warning("%s: %d label problem(s): %s", source, len(dropped), lint_summary(dropped))
    for note in (problem for problem in problems if problem.is_note):
        log.warning("%s: %s", source, note.message)
    return DetectionDataset(
        name=name,
        classes=classes,
        train=splits["train"],
        val=splits.get("val"),
        test=splits.get("test"),
        source=str(source),
        problems=problems,
    )
