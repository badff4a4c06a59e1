"""Detection data types (Boxes, DetectionSplit, DetectionDataset, LabelProblem, RawImage), letterboxing, and what the
YOLO, COCO and Pascal VOC readers (convscope.data.detection.yolo, .coco, .voc) share.

Every image is decoded with `open_image` (format allowlist, EXIF orientation, bombs refused), made RGB and letterboxed
to S×S: the aspect ratio is kept, the longer side becomes S, and the rest is padded with YOLO's gray 114. Boxes are
float32 x1, y1, x2, y2 in pixels of that letterboxed image, where pixel i covers [i, i+1).

Labels are linted while they load. A bad row (or COCO annotation) is dropped and reported as a `LabelProblem`, the rest
of its file is kept; an unreadable image is left out; an image with no label file is kept with no objects (YOLO's
convention). Loading fails only when nothing usable is left to train on. A few `LabelProblem`s are notes rather than
problems (their kind is in NOTE_KINDS): something read differently from the usual, nothing dropped.

Each reader also has a raw mode (`RawImage`): the same parsing and lint, the boxes left in the original image's pixels
instead of letterboxed, for `convscope detect convert`.

Text files (label files, data.yaml, COCO JSON) are read as editors save them: `read_text` drops a UTF-8 byte-order
mark and decodes UTF-16 with a BOM (Windows Notepad's "Unicode"); CRLF and CR line ends are lines too.
"""

from __future__ import annotations

import codecs
import errno
import logging
import math
import os
import re
import stat
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from convscope.data.images import open_image, to_array
from convscope.errors import DataError

log = logging.getLogger(__name__)
SPLIT_NAMES = ("train", "val", "test")  # a detection dataset's splits, in the order they are read and reported
PAD_VALUE = 114  # the gray YOLO pads letterboxed images with
DUPLICATE_IOU = 0.95  # a box of the same class overlapping an earlier one more than this is a duplicate
EDGE_SLACK = 1e-6  # normalised coordinates may overshoot [0, 1] by this much (printing rounds), then are clipped
_SHOWN = 5  # problems quoted in an error message

# kind → (singular, plural) noun phrases for `lint_summary`, in the order the summary lists equal counts.
PROBLEM_KINDS = {
    "columns": ("row with the wrong number of columns", "rows with the wrong number of columns"),
    "number": ("value that is not a number", "values that are not numbers"),
    "class": ("bad class id", "bad class ids"),
    "size": ("zero-size box", "zero-size boxes"),
    "outside": ("box outside the image", "boxes outside the image"),
    "duplicate": ("duplicate box", "duplicate boxes"),
    "orphan": ("label file with no image", "label files with no image"),
    "no-label": ("image with no label file", "images with no label file"),
    "unreadable": ("unreadable image", "unreadable images"),
    "label-file": ("unreadable label file", "unreadable label files"),
    "missing": ("missing image file", "missing image files"),
    "unknown-image": ("annotation of an unknown image", "annotations of unknown images"),
    "entry": ("malformed entry", "malformed entries"),
    "image-size": (
        "image whose size disagrees with its annotation",
        "images whose size disagrees with their annotation",
    ),
    "xml": ("malformed or refused XML file", "malformed or refused XML files"),
    "set-entry": ("image set entry with no XML file", "image set entries with no XML file"),
    "no-box": ("training split with no box", "training splits with no box"),
}
# Kinds that are notes, not problems: nothing was dropped (`convscope detect lint` still exits 0 on them alone).
# "clipped": VOC boxes running past the image edge, clipped to it as the other tools do (convscope.data.detection.voc).
NOTE_KINDS = frozenset({"polygon", "clipped"})


# ── data types ────────────────────────────────────────────────────────────────────────────────────────────────────
@dataclass(frozen=True)
class LabelProblem:
    path: str  # as shown to people: relative to the dataset folder when inside it
    line: int | None  # 1-based line of a label file; None for a whole file, an image or a JSON entry
    message: str
    kind: str = "other"  # a key of PROBLEM_KINDS, for `lint_summary`

    def __str__(self) -> str:
        where = self.path if self.line is None else f"{self.path}, line {self.line}"
        return f"{where}: {self.message}"

    @property
    def is_note(self) -> bool:
        """True for a note (e.g. polygon rows read as boxes): nothing was dropped."""
        return self.kind in NOTE_KINDS


@dataclass(frozen=True)
class Boxes:
    xyxy: np.ndarray  # float32 n×4: x1, y1, x2, y2 in pixels of the (letterboxed) image
    classes: np.ndarray  # int64 n: indices into the dataset's class names

    def __post_init__(self) -> None:
        if self.xyxy.dtype != np.float32 or self.xyxy.ndim != 2 or self.xyxy.shape[1] != 4:
            raise DataError(f"boxes must be float32 n×4 (x1, y1, x2, y2). Received {self.xyxy.dtype} {self.xyxy.shape}")
        if self.classes.dtype != np.int64 or self.classes.shape != (self.xyxy.shape[0],):
            raise DataError(
                f"box classes must be int64 with one per box ({self.xyxy.shape[0]}). "
                f"Received {self.classes.dtype} {self.classes.shape}"
            )

    def __len__(self) -> int:
        return int(self.classes.shape[0])

    @staticmethod
    def empty() -> Boxes:
        return Boxes(np.zeros((0, 4), np.float32), np.zeros(0, np.int64))


@dataclass(frozen=True)
class DetectionSplit:
    images: np.ndarray  # uint8 N×S×S×3
    targets: tuple[Boxes, ...]  # one per image: the boxes to find (training targets and scored ground truth)
    names: tuple[str, ...]  # one file name per image, for messages and COCO ids
    problems: tuple[LabelProblem, ...] = ()  # what the lint found while this split was read
    # () or one per image: COCO iscrowd regions, same pixels as `targets`. Not training targets; in scoring they are
    # ignore regions (a detection inside one is neither a true nor a false positive), as in pycocotools.
    crowds: tuple[Boxes, ...] = ()

    def __post_init__(self) -> None:
        shape = self.images.shape
        if self.images.dtype != np.uint8 or self.images.ndim != 4 or shape[3] != 3 or shape[1] != shape[2]:
            raise DataError(f"detection images must be uint8 N×S×S×3. Received {self.images.dtype} {shape}")
        if not len(self.targets) == len(self.names) == shape[0]:
            raise DataError(f"{shape[0]} images but {len(self.targets)} targets and {len(self.names)} names")
        if self.crowds and len(self.crowds) != shape[0]:
            raise DataError(f"{shape[0]} images but {len(self.crowds)} entries of crowd regions")

    def __len__(self) -> int:
        return int(self.images.shape[0])


@dataclass(frozen=True)
class DetectionDataset:
    name: str
    classes: tuple[str, ...]
    train: DetectionSplit
    val: DetectionSplit | None  # None: not in data.yaml, or none of its images could be read
    test: DetectionSplit | None
    source: str  # the data.yaml it was read from
    problems: tuple[LabelProblem, ...] = ()  # every split's problems, train first


@dataclass(frozen=True)
class RawImage:
    """One image's annotations as read, in its own pixels (not letterboxed): what `convscope detect convert` writes."""

    path: Path  # the image file (copied, never changed)
    name: str  # as shown to people: relative to the dataset folder when inside it
    width: int  # pixels of the decoded image (EXIF orientation applied), which the boxes are in
    height: int
    boxes: Boxes  # the objects: x1, y1, x2, y2 in this image's pixels, pixel i covering [i, i+1), clipped to it
    ignore: Boxes  # COCO iscrowd / VOC difficult regions: not training targets, ignore regions in scoring


@dataclass(frozen=True)
class RawDataset:
    """A dataset in its original pixels, split by split ("train", "val", "test": those it has, in that order)."""

    format: str  # "yolo", "coco" or "voc": what it was read from
    classes: tuple[str, ...]
    splits: dict[str, tuple[RawImage, ...]]
    source: str  # the path it was read from
    problems: tuple[LabelProblem, ...] = ()  # what the lint dropped (and its notes), every split's


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


def lint_summary(problems: Iterable[LabelProblem]) -> str:
    """Counts per kind, most frequent first: '3 boxes outside the image, 1 duplicate box'. Notes are not counted."""
    counts = Counter(problem.kind for problem in problems if not problem.is_note)
    order = list(PROBLEM_KINDS)
    ranked = sorted(counts.items(), key=lambda kc: (-kc[1], order.index(kc[0]) if kc[0] in order else len(order)))
    parts = []
    for kind, count in ranked:
        one, many = PROBLEM_KINDS.get(kind, ("other problem", "other problems"))
        parts.append(f"{count} {one if count == 1 else many}")
    return ", ".join(parts) or "no problems"


def read_text(path: Path) -> str:
    """A text file as people save it: UTF-8 (a byte-order mark dropped) or UTF-16 with its BOM.

    Line ends stay as they are (str.splitlines, YAML and JSON all take CRLF). OSError when the file cannot be read,
    UnicodeDecodeError when it is not such text.
    """
    if not stat.S_ISREG(os.stat(path).st_mode):  # a named pipe would block the read forever
        raise OSError(
            errno.EINVAL, "not a regular file (a folder, named pipe, device or socket); it was not opened", str(path)
        )
    raw = Path(path).read_bytes()
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return raw.decode("utf-16")  # the BOM says the byte order and is dropped
    return raw.decode("utf-8-sig")


def child_folder(root: Path, *names: str) -> Path | None:
    """The first of `root`'s folders named one of `names`, case ignored (Annotations, annotations, …), or None."""
    wanted = [name.lower() for name in names]
    try:
        found = {p.name.lower(): p for p in sorted(Path(root).iterdir()) if p.is_dir()}
    except OSError:
        return None
    return next((found[name] for name in wanted if name in found), None)


COCO_SPLIT = re.compile(r"(?:instances_)?(train|val|valid|test)(?:\d{4})?\.json", re.IGNORECASE)


def coco_split_files(root: Path) -> dict[str, Path]:
    """split → its JSON, for a folder of COCO split files (there or in its annotations/ folder)."""
    found: dict[str, Path] = {}
    for folder in (root, root / "annotations"):
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            if match := COCO_SPLIT.fullmatch(path.name):
                split = "val" if match[1].lower() == "valid" else match[1].lower()
                found.setdefault(split, path)
    return found


def dataset_format(path: str | Path) -> str:
    """Which reader a dataset path is for: "coco" (a .json file), "yolo" (a .yaml file, or a folder with data.yaml),
    "coco-splits" (a folder of COCO split JSONs: coco_split_files), "voc" (a folder with .xml files in its
    Annotations folder, or beside the images). A DataError naming the three formats otherwise."""
    path = Path(path)
    expected = (
        "expected a YOLO dataset folder (with data.yaml), a Pascal VOC folder (Annotations/*.xml, or XML files "
        "beside their images) or a COCO .json file"
    )
    if path.is_file() and path.suffix.lower() == ".json":
        return "coco"
    if path.is_file() and path.suffix.lower() in (".yaml", ".yml"):
        return "yolo"
    if not path.is_dir():
        raise DataError(f"{path}: {expected}, found {'a file' if path.exists() else 'nothing'}")
    if (path / "data.yaml").is_file():
        return "yolo"
    if coco_split_files(path):
        return "coco-splits"
    folders = [folder for folder in (child_folder(path, "annotations"), path) if folder is not None]
    if any(p.suffix.lower() == ".xml" for folder in folders for p in folder.iterdir()):
        return "voc"
    raise DataError(f"{path}: {expected}, found a folder with none of them")


# ── letterbox ─────────────────────────────────────────────────────────────────────────────────────────────────────
def letterbox(image: np.ndarray, size: int) -> tuple[np.ndarray, float, tuple[int, int]]:
    """uint8 H×W×C → (size×size×C, scale, (pad_x, pad_y)); a box maps as x' = x·scale + pad_x, y' = y·scale + pad_y.

    The longer side becomes `size` (Pillow bilinear, antialiased when shrinking), the shorter one floor(side·scale)
    pixels, centred between bands of gray 114.
    """
    if image.dtype != np.uint8 or image.ndim != 3:
        raise DataError(f"letterbox expects a uint8 H×W×C image. Received {image.dtype} {image.shape}")
    if not isinstance(size, int | np.integer) or size < 1:
        raise DataError(f"letterbox size must be a positive number of pixels. Received: {size!r}")
    height, width, channels = image.shape
    scale = size / max(height, width)
    # Rounding the shorter side would stretch it by up to half a pixel; flooring it and telling Pillow which source
    # region that covers (box=) keeps x' = x·scale exact. The source sliver left out is under one output pixel.
    new_w = min(size, max(1, math.floor(width * scale + 1e-9)))
    new_h = min(size, max(1, math.floor(height * scale + 1e-9)))
    pad_x, pad_y = (size - new_w) // 2, (size - new_h) // 2
    if (new_w, new_h) == (width, height):
        resized = image
    else:
        img = Image.fromarray(image[:, :, 0] if channels == 1 else image)
        box = (0.0, 0.0, min(width, new_w / scale), min(height, new_h / scale))
        # reducing_gap=3 box-reduces big photos first (as convscope.data.folder does); Pillow shifts `box` to match,
        # so the geometry stays exact.
        img = img.resize((new_w, new_h), Image.Resampling.BILINEAR, box=box, reducing_gap=3.0)
        resized = np.asarray(img, dtype=np.uint8).reshape(new_h, new_w, channels)
    out = np.full((size, size, channels), PAD_VALUE, dtype=np.uint8)
    out[pad_y : pad_y + new_h, pad_x : pad_x + new_w] = resized
    return out, scale, (pad_x, pad_y)


# ── shared by the YOLO and COCO readers ───────────────────────────────────────────────────────────────────────────
def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one xyxy box (4) with each of boxes (n×4); any consistent unit."""
    ix = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    iy = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    inter = ix * iy
    union = (box[2] - box[0]) * (box[3] - box[1]) + (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) - inter
    return inter / np.maximum(union, 1e-12)


def _first_duplicate(box: np.ndarray, cls: int, kept: list[tuple[np.ndarray, int, object]]) -> tuple[object, float]:
    """(where, IoU) of the first kept box of class `cls` overlapping `box` more than DUPLICATE_IOU, else (None, 0)."""
    same = [(b, where) for b, c, where in kept if c == cls]
    if not same:
        return None, 0.0
    ious = _iou(box, np.stack([b for b, _ in same]))
    hits = np.flatnonzero(ious > DUPLICATE_IOU)
    return (same[hits[0]][1], float(ious[hits[0]])) if hits.size else (None, 0.0)


def _to_boxes(rows: list[tuple[np.ndarray, int]], scale_xy: tuple[float, float], pad: tuple[int, int], size: float):
    """Boxes from (xyxy, class) rows: x' = x·scale_x + pad_x, clipped to [0, size]."""
    if not rows:
        return Boxes.empty()
    xyxy = np.stack([b for b, _ in rows]).astype(np.float64)
    xyxy = xyxy * np.array([*scale_xy, *scale_xy]) + np.array([*pad, *pad])
    return Boxes(np.clip(xyxy, 0, size).astype(np.float32), np.array([c for _, c in rows], dtype=np.int64))


def _decode(path: Path) -> np.ndarray:
    """uint8 H×W×3; a DataError without the path prefix when the file cannot be read."""
    try:
        return to_array(open_image(path), 3)
    except DataError as err:
        raise DataError(str(err).removeprefix(f"{path}: ")) from None
    except (OSError, ValueError) as err:  # a mode Pillow cannot convert
        raise DataError(f"cannot convert to RGB ({err})") from None


def _workers() -> int:
    return min(8, os.cpu_count() or 1)  # Pillow releases the GIL while decoding and resizing


@dataclass
class _ImageResult:  # what reading one image and its labels gave (the pixels go straight into the split's array)
    boxes: Boxes | None  # None: the image is left out
    problems: list[LabelProblem]
    polygons: list[tuple[str, int]] = field(default_factory=list)  # YOLO: (label file, line) of polygon rows
    crowds: Boxes | None = None  # COCO iscrowd / VOC difficult regions (ignore regions for scoring)
    size: tuple[int, int] = (0, 0)  # width, height of the decoded image, before letterboxing
    clipped: list[tuple[str, int | None]] = field(default_factory=list)  # VOC: (XML file, line) of clipped boxes


def _raw_images(paths: list[Path], names: list[str], results: list[_ImageResult]) -> tuple[RawImage, ...]:
    """The kept images of a split read with image_size None (boxes in original pixels) as RawImages."""
    return tuple(
        RawImage(path, name, *result.size, result.boxes, result.crowds or Boxes.empty())
        for path, name, result in zip(paths, names, results, strict=True)
        if result.boxes is not None
    )


def _compact(out: np.ndarray, results: list[_ImageResult]) -> tuple[np.ndarray, list[int]]:
    """Move the kept images to the front of `out` (N×S×S×3, in place: no second copy) → (their array, indices)."""
    kept = [i for i, result in enumerate(results) if result.boxes is not None]
    for dst, src in enumerate(kept):
        if dst != src:
            out[dst] = out[src]
    return out[: len(kept)], kept


def _no_training_data(where: Path, problems: list[LabelProblem], found: str) -> DataError:
    """The error for a training split with nothing usable, quoting the lint summary and the first problems."""
    problems = [problem for problem in problems if not problem.is_note]
    if not problems:
        return DataError(f"{where}: expected training images with at least one box, found {found}")
    first = "; ".join(map(str, problems[:_SHOWN])) + ("; …" if len(problems) > _SHOWN else "")
    return DataError(
        f"{where}: expected training images with at least one box, found {found}; "
        f"{len(problems)} label problem(s): {lint_summary(problems)} (first: {first})"
    )


def _check_size(image_size: int) -> None:
    if not isinstance(image_size, int | np.integer) or isinstance(image_size, bool) or image_size < 1:
        raise DataError(f"image_size must be a positive number of pixels. Received: {image_size!r}")
