"""Detection data types (Boxes, DetectionSplit, DetectionDataset, LabelProblem, RawImage, RawDataset), the lint's
problem kinds and summary, letterboxing, and held-out splits.

Every image is decoded with `open_image` (format allowlist, EXIF orientation, bombs refused), made RGB and letterboxed
to S×S: the aspect ratio is kept, the longer side becomes S, and the rest is padded with YOLO's gray 114. Boxes are
float32 x1, y1, x2, y2 in pixels of that letterboxed image, where pixel i covers [i, i+1).

Labels are linted while they load. A bad row (or COCO annotation) is dropped and reported as a `LabelProblem`, the rest
of its file is kept; an unreadable image is left out; an image with no label file is kept with no objects (YOLO's
convention). Loading fails only when nothing usable is left to train on. A few `LabelProblem`s are notes rather than
problems (their kind is in NOTE_KINDS): something read differently from the usual, nothing dropped.

Each reader also has a raw mode (`RawImage`): the same parsing and lint, the boxes left in the original image's pixels
instead of letterboxed, for `convscope detect convert`. What the readers share is the reading kit
(convscope.data.detection.reading); which reader a path is for, the format table (convscope.data.detection.formats).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from convscope.errors import DataError

SPLIT_NAMES = ("train", "val", "test")  # a detection dataset's splits, in the order they are read and reported
PAD_VALUE = 114  # the gray YOLO pads letterboxed images with
DUPLICATE_IOU = 0.95  # a box of the same class overlapping an earlier one more than this is a duplicate
MAX_BOXES = 10_000  # boxes (rows, annotations, objects) one image may have; an image with more is skipped
EDGE_SLACK = 1e-6  # normalised coordinates may overshoot [0, 1] by this much (printing rounds), then are clipped
ECHO_CHARS = 20  # a problem quotes this much of a value it shows (a 5,000-digit coordinate, a megabyte of name)

# kind → (singular, plural) noun phrases for `lint_summary`, in the order the summary lists equal counts.
PROBLEM_KINDS = {
    "columns": ("row with the wrong number of columns", "rows with the wrong number of columns"),
    "number": ("value that is not a number", "values that are not numbers"),
    "class": ("bad class id", "bad class ids"),
    "unknown-class": ("unknown class name", "unknown class names"),  # VOC, TF CSV: a name not in the class list
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
    "boxes": ("image with too many boxes", "images with too many boxes"),
    "leak": ("image in two splits", "images in two splits"),  # the same file or bytes (data.detection.summary)
    "filename": ("XML file naming another image", "XML files naming other images"),  # VOC: its own image read
    "claimed": ("image two XML files label", "images two XML files label"),  # VOC: the second XML skipped
    "empty-split": ("empty split folder", "empty split folders"),  # a note: read as no such split
    "nested": ("nested folder of XML files not read", "nested folders of XML files not read"),  # VOC split folders
    "split-name": ("CSV named for another split", "CSVs named for other splits"),  # a note: read as train
}
# Kinds that are notes, not problems: nothing was dropped (`convscope detect lint` still exits 0 on them alone).
# "clipped": VOC boxes running past the image edge, clipped to it as the other tools do (convscope.data.detection.voc).
NOTE_KINDS = frozenset({"polygon", "clipped", "empty-split", "split-name"})


def echo(value: object, limit: int = ECHO_CHARS) -> str:
    """How a problem quotes a value from a label file: repr(value), or its first `limit` characters, '…' and how
    long it is: "'99999999999999999999…' (5,000 characters)". Safe for ints past Python's 4,300-digit str() limit."""
    try:
        text = value if isinstance(value, str) else repr(value)
    except ValueError:  # an int (or a list holding one) past the int-to-str limit
        return "a value holding a number of over 4,300 digits"
    if len(text) <= limit:
        return repr(value) if isinstance(value, str) else text
    cut = text[:limit] + "…"
    return f"{cut!r} ({len(text):,} characters)" if isinstance(value, str) else f"{cut} ({len(text):,} characters)"


def cut(text: str, limit: int = ECHO_CHARS) -> str:
    """Text from a label file as a problem shows it unquoted: as it is, or its first `limit` characters, '…' and how
    long it is ('99999999999999999999… (5,000 characters)')."""
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text):,} characters)"


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
    # what loading said about the splits (drawn from the files, held out, no test split: the score is on val), one
    # line each: shown with the data's summary at training (train.log and the terminal), as the lint shows it
    notes: tuple[str, ...] = ()


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


# ── held-out splits ───────────────────────────────────────────────────────────────────────────────────────────────
def hold_out(split: DetectionSplit, fraction: float, seed: int) -> tuple[DetectionSplit, DetectionSplit]:
    """(the rest, a seeded draw of `fraction` of the images, at least one), each in the split's order."""
    order = np.random.default_rng(seed).permutation(len(split))
    n = max(1, round(len(split) * fraction))
    return take(split, np.sort(order[n:])), take(split, np.sort(order[:n]))


def take(split: DetectionSplit, index: np.ndarray) -> DetectionSplit:
    """The images at `index` (int n) with their boxes, names and crowd regions; the split's problems are not kept."""
    crowds = tuple(split.crowds[i] for i in index) if split.crowds else ()
    targets, names = tuple(split.targets[i] for i in index), tuple(split.names[i] for i in index)
    return DetectionSplit(split.images[index], targets, names, crowds=crowds)
