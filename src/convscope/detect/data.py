"""Detection datasets: YOLO folders and COCO JSON read into letterboxed uint8 images with xyxy pixel boxes.

Every image is decoded with `open_image` (format allowlist, EXIF orientation, bombs refused), made RGB and letterboxed
to S×S: the aspect ratio is kept, the longer side becomes S, and the rest is padded with YOLO's gray 114. Boxes are
float32 x1, y1, x2, y2 in pixels of that letterboxed image, where pixel i covers [i, i+1).

Labels are linted while they load. A bad row (or COCO annotation) is dropped and reported as a `LabelProblem`, the rest
of its file is kept; an unreadable image is left out; an image with no label file is kept with no objects (YOLO's
convention). Loading fails only when nothing usable is left to train on.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import yaml
from PIL import Image

from convscope.data.folder import image_files
from convscope.data.images import open_image, to_array
from convscope.errors import DataError

log = logging.getLogger(__name__)

PAD_VALUE = 114  # the gray YOLO pads letterboxed images with
DUPLICATE_IOU = 0.95  # a box of the same class overlapping an earlier one more than this is a duplicate
EDGE_SLACK = 1e-6  # normalised coordinates may overshoot [0, 1] by this much (printing rounds), then are clipped
SPLIT_NAMES = ("train", "val", "test")
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
    "crowd": ("crowd box skipped", "crowd boxes skipped"),
    "entry": ("malformed entry", "malformed entries"),
    "image-size": ("image whose size disagrees with the JSON", "images whose size disagrees with the JSON"),
}


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
    targets: tuple[Boxes, ...]  # one per image
    names: tuple[str, ...]  # one file name per image, for messages and COCO ids
    problems: tuple[LabelProblem, ...] = ()  # what the lint found while this split was read

    def __post_init__(self) -> None:
        shape = self.images.shape
        if self.images.dtype != np.uint8 or self.images.ndim != 4 or shape[3] != 3 or shape[1] != shape[2]:
            raise DataError(f"detection images must be uint8 N×S×S×3. Received {self.images.dtype} {shape}")
        if not len(self.targets) == len(self.names) == shape[0]:
            raise DataError(f"{shape[0]} images but {len(self.targets)} targets and {len(self.names)} names")

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


def lint_summary(problems: Iterable[LabelProblem]) -> str:
    """Counts per kind, most frequent first: '3 boxes outside the image, 1 duplicate box'."""
    counts = Counter(problem.kind for problem in problems)
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


def _shown(path: Path, base: Path) -> str:
    """`path` relative to the dataset folder when it is inside it (shorter messages), else as it is."""
    try:
        return path.relative_to(base).as_posix()
    except ValueError:
        return str(path)


def _workers() -> int:
    return min(8, os.cpu_count() or 1)  # Pillow releases the GIL while decoding and resizing


# ── YOLO ──────────────────────────────────────────────────────────────────────────────────────────────────────────
@dataclass(frozen=True)
class _YoloLayout:
    yaml_path: Path
    base: Path  # split paths are relative to this
    classes: tuple[str, ...]
    splits: dict[str, list[Path]]  # split name → image folders; only the splits data.yaml names


@dataclass
class _ImageResult:  # what reading one image and its labels gave (the pixels go straight into the split's array)
    boxes: Boxes | None  # None: the image is left out
    problems: list[LabelProblem]


def _compact(out: np.ndarray, results: list[_ImageResult]) -> tuple[np.ndarray, list[int]]:
    """Move the kept images to the front of `out` (N×S×S×3, in place: no second copy) → (their array, indices)."""
    kept = [i for i, result in enumerate(results) if result.boxes is not None]
    for dst, src in enumerate(kept):
        if dst != src:
            out[dst] = out[src]
    return out[: len(kept)], kept


def label_path(image: Path) -> Path:
    """YOLO's rule: the last folder named `images` becomes `labels` and the suffix `.txt`; with no `images` folder the
    label file sits next to the image."""
    parts = image.parts
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "images":
            return Path(*parts[:i], "labels", *parts[i + 1 :]).with_suffix(".txt")
    return image.with_suffix(".txt")


def _labels_folder(folder: Path) -> Path | None:
    """Where the labels of an image folder live, or None when they sit among the images (then no orphan scan)."""
    parts = folder.parts
    for i in range(len(parts) - 1, -1, -1):
        if parts[i] == "images":
            return Path(*parts[:i], "labels", *parts[i + 1 :])
    return None


def _yaml_file(root: Path) -> Path:
    if root.is_file():
        return root
    if root.is_dir():
        path = root / "data.yaml"
        if not path.is_file():
            raise DataError(f"{root}: expected a YOLO dataset folder with a data.yaml, found no data.yaml")
        return path
    raise DataError(f"{root}: no such file or folder (expected a YOLO dataset folder or its data.yaml)")


def _read_yaml(path: Path) -> dict:
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.MarkedYAMLError as err:
        line = f", line {err.problem_mark.line + 1}" if err.problem_mark else ""
        raise DataError(f"{path}{line}: not valid YAML ({err.problem})") from None
    except yaml.YAMLError as err:
        raise DataError(f"{path}: not valid YAML ({err})") from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: expected UTF-8 text, found binary data") from None
    except OSError as err:
        raise DataError(f"{path}: cannot read ({err.strerror or err})") from None
    if not isinstance(doc, dict):
        raise DataError(f"{path}: expected a mapping with names and train/val/test, found {type(doc).__name__}")
    return doc


def _class_names(doc: dict, path: Path) -> tuple[str, ...]:
    """`names` as a list, or a dict id → name with ids exactly 0..K-1; checked against `nc` when that is given."""
    names = doc.get("names")
    if isinstance(names, dict):
        ids = sorted(names, key=lambda k: (not isinstance(k, int), k if isinstance(k, int) else 0))
        if ids != list(range(len(names))):
            raise DataError(f"{path}: names: expected class ids 0..{len(names) - 1}, found {list(names)}")
        names = [names[i] for i in ids]
    if not isinstance(names, list) or not names:
        raise DataError(
            f"{path}: names: expected a non-empty list of class names (or a dict id → name), found {names!r}"
        )
    bad = [n for n in names if not isinstance(n, str | int | float) or isinstance(n, bool)]
    if bad:
        raise DataError(f"{path}: names: expected strings, found {bad[0]!r}")
    nc = doc.get("nc")
    if nc is not None and nc != len(names):
        raise DataError(f"{path}: nc is {nc!r} but names lists {len(names)} classes")
    return tuple(str(n) for n in names)


def _split_folders(doc: dict, name: str, base: Path, path: Path) -> list[Path] | None:
    """The image folders of split `name` (a path or a list of paths, relative to `base`), or None when absent."""
    value = doc.get(name)
    if value is None:
        return None
    values = value if isinstance(value, list) else [value]
    folders = []
    for item in values:
        if not isinstance(item, str) or not item:
            raise DataError(f"{path}: {name}: expected a folder path (or a list of them), found {item!r}")
        folder = base / item
        if not folder.exists() and item.startswith("../") and (base / item[3:]).exists():
            # Roboflow exports say `train: ../train/images` next to a train/ folder; Ultralytics retries without ../
            folder = base / item[3:]
        if folder.is_file():
            raise DataError(f"{path}: {name}: {item} is a file; lists of image files are not read, name a folder")
        if not folder.is_dir():
            raise DataError(f"{path}: {name}: expected a folder of images at {folder}, found nothing")
        folders.append(folder)
    return folders


def _layout(root: str | Path) -> _YoloLayout:
    yaml_path = _yaml_file(Path(root))
    doc = _read_yaml(yaml_path)
    base = yaml_path.parent
    if doc.get("path") is not None:
        if not isinstance(doc["path"], str):
            raise DataError(f"{yaml_path}: path: expected a folder path, found {doc['path']!r}")
        base = base / doc["path"]  # an absolute path replaces the yaml's folder
    if doc.get("train") is None:
        raise DataError(f"{yaml_path}: expected a train: entry (the folder of training images), found none")
    classes = _class_names(doc, yaml_path)
    splits = {}
    for name in SPLIT_NAMES:
        folders = _split_folders(doc, name, base, yaml_path)
        if folders is not None:
            splits[name] = folders
    return _YoloLayout(yaml_path, base, classes, splits)


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _check_row(fields: list[str], n_classes: int, width_px: float, height_px: float, resized: int | None):
    """(kind, message) of the first thing wrong with one label row, or (class, normalised xyxy) when it is valid.

    width_px×height_px: the image size the box ends up at (after letterboxing when `resized`), for the 1-pixel check.
    """
    if len(fields) != 5:
        return "columns", f"expected 5 columns (class cx cy w h), found {len(fields)}"
    values = []
    for text in fields:
        value = _number(text)
        if value is None:
            return "number", f"expected a number, found {text!r}"
        values.append(value)
    cls, cx, cy, w, h = values
    if cls != int(cls):
        return "class", f"class {fields[0]} is not an integer"
    if not 0 <= cls < n_classes:
        return "class", f"class {int(cls)} out of range (0–{n_classes - 1})"
    if w <= 0 or h <= 0:
        return "size", f"zero-size box (w {fields[3]}, h {fields[4]})"
    x1, y1, x2, y2 = cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2
    if min(x1, y1) < -EDGE_SLACK or max(x2, y2) > 1 + EDGE_SLACK:
        return "outside", f"coordinates outside [0, 1]: x {x1:.4g} to {x2:.4g}, y {y1:.4g} to {y2:.4g}"
    if w * width_px < 1 or h * height_px < 1:
        after = f" after resizing to {resized} px" if resized else ""
        return "size", f"box under 1 pixel{after} ({w * width_px:.2f}×{h * height_px:.2f} px)"
    xyxy = np.clip(np.array([x1, y1, x2, y2]), 0.0, 1.0)
    return int(cls), xyxy


def _parse_labels(
    text: str, shown: str, n_classes: int, width_px: float, height_px: float, resized: int | None
) -> tuple[list[tuple[np.ndarray, int]], list[LabelProblem]]:
    """Valid rows of one YOLO label file as (normalised xyxy, class), and a problem for every dropped row."""
    rows: list[tuple[np.ndarray, int]] = []
    kept: list[tuple[np.ndarray, int, object]] = []  # (xyxy, class, line) for the duplicate check
    problems = []
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        first, second = _check_row(fields, n_classes, width_px, height_px, resized)
        if isinstance(first, str):
            problems.append(LabelProblem(shown, number, second, first))
            continue
        # IoU is unchanged by scaling x and y separately, so normalised coordinates give the pixel IoU.
        earlier, iou = _first_duplicate(second, first, kept)
        if earlier is not None:
            problems.append(LabelProblem(shown, number, f"duplicate of line {earlier} (IoU {iou:.2f})", "duplicate"))
            continue
        kept.append((second, first, number))
        rows.append((second, first))
    return rows, problems


def _read_yolo_image(
    image_path: Path, base: Path, n_classes: int, image_size: int | None, out: np.ndarray | None, index: int
) -> _ImageResult:
    """Decode one image and read its label file; with image_size, the letterboxed pixels go to out[index]."""
    shown_image = _shown(image_path, base)
    try:
        array = _decode(image_path)
    except DataError as err:
        return _ImageResult(None, [LabelProblem(shown_image, None, f"unreadable image, skipped: {err}", "unreadable")])
    height, width = array.shape[:2]
    scale, pad = 1.0, (0, 0)
    if image_size is not None:
        array, scale, pad = letterbox(array, image_size)
        if out is not None:
            out[index] = array
    labels = label_path(image_path)
    shown_labels = _shown(labels, base)
    if not labels.is_file():
        why = f"no label file ({shown_labels}): treated as an image with no objects"
        return _ImageResult(Boxes.empty(), [LabelProblem(shown_image, None, why, "no-label")])
    try:
        text = labels.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        why = "expected UTF-8 text" if isinstance(err, UnicodeDecodeError) else (err.strerror or str(err))
        problem = LabelProblem(
            shown_labels, None, f"cannot read the label file ({why}); its image is skipped", "label-file"
        )
        return _ImageResult(None, [problem])
    rows, problems = _parse_labels(text, shown_labels, n_classes, width * scale, height * scale, image_size)
    size = float(image_size if image_size is not None else max(width, height))
    boxes = _to_boxes(rows, (width * scale, height * scale), pad, size)
    return _ImageResult(boxes, problems)


def _orphans(folders: list[Path], images: list[Path], base: Path) -> list[LabelProblem]:
    """Label files under the split's labels folders that belong to no image."""
    used = {label_path(path) for path in images}
    problems = []
    for folder in folders:
        labels = _labels_folder(folder)
        if labels is None or not labels.is_dir():
            continue
        for path in sorted(labels.rglob("*.txt")):
            hidden = any(part.startswith(".") for part in path.relative_to(labels).parts)
            # classes.txt is the class list some labelling tools (LabelImg) write next to the labels.
            if hidden or path.name == "classes.txt" or path in used or not path.is_file():
                continue
            problems.append(LabelProblem(_shown(path, base), None, "label file with no image", "orphan"))
    return problems


def _read_yolo_split(
    layout: _YoloLayout, name: str, image_size: int | None, keep_images: bool
) -> tuple[DetectionSplit | None, list[LabelProblem], int]:
    """(split, problems, images with at least one box); the split is None when nothing was kept or in lint mode."""
    folders = layout.splits[name]
    paths = sorted({path for folder in folders for path in image_files(folder, recursive=True)})
    keep = keep_images and image_size is not None
    out = np.empty((len(paths), image_size, image_size, 3), dtype=np.uint8) if keep else None  # filled in place

    def read(index: int) -> _ImageResult:
        return _read_yolo_image(paths[index], layout.base, len(layout.classes), image_size, out, index)

    with ThreadPoolExecutor(max_workers=_workers()) as pool:
        results = list(pool.map(read, range(len(paths))))
    problems = [problem for result in results for problem in result.problems]
    problems += _orphans(folders, paths, layout.base)
    with_boxes = sum(1 for r in results if r.boxes is not None and len(r.boxes))
    if out is None or all(r.boxes is None for r in results):
        return None, problems, with_boxes
    images, kept = _compact(out, results)
    names = tuple(_shown(paths[i], layout.base) for i in kept)
    split = DetectionSplit(images, tuple(results[i].boxes for i in kept), names, tuple(problems))
    return split, problems, with_boxes


def _no_training_data(where: Path, problems: list[LabelProblem], found: str) -> DataError:
    """The error for a training split with nothing usable, quoting the lint summary and the first problems."""
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


def lint_yolo(root: str | Path, image_size: int | None = None) -> list[LabelProblem]:
    """Every label problem of the YOLO dataset at `root` (its folder or its data.yaml), split by split.

    Images are decoded (a truncated file is only found that way) but not kept. With `image_size`, the 1-pixel check
    uses the letterboxed size; without, the original one. A missing or malformed data.yaml is a DataError.
    """
    if image_size is not None:
        _check_size(image_size)
    layout = _layout(root)
    problems = []
    for name in layout.splits:
        problems += _read_yolo_split(layout, name, image_size, keep_images=False)[1]
    return problems


def load_yolo(root: str | Path, image_size: int) -> DetectionDataset:
    """The YOLO dataset at `root` (its folder or its data.yaml), images letterboxed to image_size×image_size.

    Problems are logged and returned in `problems`; a DataError only when train has no image with a valid box.
    """
    _check_size(image_size)
    layout = _layout(root)
    splits: dict[str, DetectionSplit | None] = {}
    problems: list[LabelProblem] = []
    for name in layout.splits:
        split, found, with_boxes = _read_yolo_split(layout, name, image_size, keep_images=True)
        problems += found
        splits[name] = split
        if name == "train" and with_boxes == 0:
            where = ", ".join(_shown(folder, layout.base) for folder in layout.splits["train"])
            what = f"{len(split) if split else 0} usable image(s), none with a box, in {where}"
            raise _no_training_data(layout.yaml_path, found, what)
    if problems:
        log.warning("%s: %d label problem(s): %s", layout.yaml_path, len(problems), lint_summary(problems))
    return DetectionDataset(
        name=layout.yaml_path.parent.resolve().name,
        classes=layout.classes,
        train=splits["train"],
        val=splits.get("val"),
        test=splits.get("test"),
        source=str(layout.yaml_path),
        problems=tuple(problems),
    )


# ── COCO ──────────────────────────────────────────────────────────────────────────────────────────────────────────
@dataclass(frozen=True)
class _CocoImage:
    id: object
    file_name: str
    width: float | None  # as the JSON says; None when it does not
    height: float | None


@dataclass(frozen=True)
class _CocoBox:
    id: object  # the annotation id, for messages
    cls: int
    xywh: tuple[float, float, float, float]  # pixels of the original image


def _read_json(path: Path) -> dict:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: no such file (expected COCO annotations JSON)") from None
    except json.JSONDecodeError as err:
        raise DataError(f"{path}, line {err.lineno}: not valid JSON ({err.msg})") from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: expected UTF-8 JSON, found binary data") from None
    except OSError as err:
        raise DataError(f"{path}: cannot read ({err.strerror or err})") from None
    if not isinstance(doc, dict):
        raise DataError(f"{path}: expected a JSON object with images, annotations and categories")
    for key in ("images", "annotations", "categories"):
        if not isinstance(doc.get(key), list):
            raise DataError(f"{path}: expected a list under {key!r}, found {type(doc.get(key)).__name__}")
    return doc


def _is_id(value: object) -> bool:
    return isinstance(value, int | str) and not isinstance(value, bool)


def _coco_categories(doc: dict, path: Path) -> tuple[tuple[str, ...], dict[object, int]]:
    """Class names in sorted category-id order, and category id → index 0..K-1."""
    names: dict[int, str] = {}
    for i, category in enumerate(doc["categories"]):
        cid = category.get("id") if isinstance(category, dict) else None
        if not isinstance(cid, int) or isinstance(cid, bool):
            raise DataError(f"{path}: categories[{i}]: expected an integer id, found {cid!r}")
        if cid in names:
            raise DataError(f"{path}: categories[{i}]: id {cid} appears twice")
        names[cid] = str(category.get("name", cid))
    if not names:
        raise DataError(f"{path}: expected at least one category, found none")
    ids = sorted(names)
    return tuple(names[i] for i in ids), {cid: index for index, cid in enumerate(ids)}


def _coco_images(doc: dict, path: Path, problems: list[LabelProblem]) -> list[_CocoImage]:
    shown = str(path)
    images, seen = [], set()
    for i, entry in enumerate(doc["images"]):
        iid = entry.get("id") if isinstance(entry, dict) else None
        name = entry.get("file_name") if isinstance(entry, dict) else None
        if not _is_id(iid) or not isinstance(name, str) or not name:
            problems.append(LabelProblem(shown, None, f"images[{i}]: expected an id and a file_name, skipped", "entry"))
            continue
        if iid in seen:
            problems.append(
                LabelProblem(shown, None, f"image {iid} appears twice; the later entry is ignored", "entry")
            )
            continue
        relative = PurePosixPath(name.replace("\\", "/"))
        if relative.is_absolute() or ".." in relative.parts:
            why = f"image {iid}: file name {name!r} points outside the images folder, skipped"
            problems.append(LabelProblem(shown, None, why, "entry"))
            continue
        seen.add(iid)
        w, h = entry.get("width"), entry.get("height")
        sizes = [v if isinstance(v, int | float) and not isinstance(v, bool) else None for v in (w, h)]
        images.append(_CocoImage(iid, relative.as_posix(), *sizes))
    return images


def _coco_boxes(
    doc: dict, path: Path, image_ids: set, category_index: dict[object, int], problems: list[LabelProblem]
) -> dict[object, list[_CocoBox]]:
    """image id → its annotations (file order); annotations that cannot be used become problems."""
    shown = str(path)
    per_image: dict[object, list[_CocoBox]] = {}
    for i, ann in enumerate(doc["annotations"]):
        if not isinstance(ann, dict):
            problems.append(LabelProblem(shown, None, f"annotations[{i}]: expected an object", "entry"))
            continue
        aid = ann.get("id", f"#{i}")
        where = f"annotation {aid}"
        bbox = ann.get("bbox")
        numbers = bbox if isinstance(bbox, list) and len(bbox) == 4 else None
        if numbers is None or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in numbers):
            problems.append(LabelProblem(shown, None, f"{where}: expected bbox [x, y, w, h], found {bbox!r}", "entry"))
            continue
        if not all(math.isfinite(v) for v in numbers):
            problems.append(LabelProblem(shown, None, f"{where}: bbox {bbox} is not finite", "number"))
            continue
        if not _is_id(ann.get("image_id")) or ann["image_id"] not in image_ids:
            why = f"{where}: image_id {ann.get('image_id')!r} is not among the usable images"
            problems.append(LabelProblem(shown, None, why, "unknown-image"))
            continue
        if not _is_id(ann.get("category_id")) or ann["category_id"] not in category_index:
            why = f"{where}: category_id {ann.get('category_id')!r} is not in categories"
            problems.append(LabelProblem(shown, None, why, "class"))
            continue
        if ann.get("iscrowd"):
            problems.append(LabelProblem(shown, None, f"{where}: iscrowd=1 (a crowd region), skipped", "crowd"))
            continue
        box = _CocoBox(aid, category_index[ann["category_id"]], tuple(float(v) for v in numbers))
        per_image.setdefault(ann["image_id"], []).append(box)
    return per_image


def _check_coco_box(box: _CocoBox, width: int, height: int, scale: float) -> tuple[str, str] | None:
    """(kind, message) of what is wrong with one annotation on a width×height image, or None."""
    x, y, w, h = box.xywh
    where = f"annotation {box.id}"
    if w <= 0 or h <= 0:
        return "size", f"{where}: zero-size box (w {w:g}, h {h:g})"
    # The same tolerance as YOLO's normalised coordinates: 1e-6 of the image side.
    if (
        x < -EDGE_SLACK * width
        or y < -EDGE_SLACK * height
        or x + w > width * (1 + EDGE_SLACK)
        or (y + h > height * (1 + EDGE_SLACK))
    ):
        return "outside", f"{where}: bbox [{x:g}, {y:g}, {w:g}, {h:g}] outside the {width}×{height} image"
    if w * scale < 1 or h * scale < 1:
        return "size", f"{where}: box under 1 pixel after resizing ({w * scale:.2f}×{h * scale:.2f} px)"
    return None


def _read_coco_image(
    entry: _CocoImage, boxes: list[_CocoBox], images_dir: Path, json_shown: str, out: np.ndarray, index: int
) -> _ImageResult:
    """Decode one image into out[index] (letterboxed to out's S) and check its annotations."""
    image_path = images_dir / entry.file_name
    shown = str(image_path)
    if not image_path.is_file():
        why = f"image {entry.id}: no such file, skipped with its {len(boxes)} annotation(s)"
        return _ImageResult(None, [LabelProblem(shown, None, why, "missing")])
    try:
        array = _decode(image_path)
    except DataError as err:
        return _ImageResult(None, [LabelProblem(shown, None, f"unreadable image, skipped: {err}", "unreadable")])
    height, width = array.shape[:2]
    if entry.width is not None and entry.height is not None and (entry.width, entry.height) != (width, height):
        why = f"image {entry.id} is {width}×{height} but the JSON says {entry.width:g}×{entry.height:g}; skipped"
        return _ImageResult(None, [LabelProblem(shown, None, why, "image-size")])
    image_size = out.shape[1]
    out[index], scale, pad = letterbox(array, image_size)
    problems, rows = [], []
    kept: list[tuple[np.ndarray, int, object]] = []
    for box in boxes:
        wrong = _check_coco_box(box, width, height, scale)
        if wrong is not None:
            problems.append(LabelProblem(json_shown, None, wrong[1], wrong[0]))
            continue
        x, y, w, h = box.xywh
        xyxy = np.clip(np.array([x, y, x + w, y + h]), 0, [width, height, width, height])
        earlier, iou = _first_duplicate(xyxy, box.cls, kept)
        if earlier is not None:
            why = f"annotation {box.id}: duplicate of annotation {earlier} (IoU {iou:.2f})"
            problems.append(LabelProblem(json_shown, None, why, "duplicate"))
            continue
        kept.append((xyxy, box.cls, box.id))
        rows.append((xyxy, box.cls))
    return _ImageResult(_to_boxes(rows, (scale, scale), pad, float(image_size)), problems)


def load_coco(
    annotations: str | Path, images_dir: str | Path, image_size: int
) -> tuple[DetectionSplit, tuple[str, ...]]:
    """A COCO detection JSON and its images as one split letterboxed to image_size, and the class names.

    Category ids (any integers) map to 0..K-1 in sorted id order. Problems (reported with the annotation id) are in
    `split.problems`; a DataError when no image with a usable box is left.
    """
    _check_size(image_size)
    annotations, images_dir = Path(annotations), Path(images_dir)
    if not images_dir.is_dir():
        found = "a file" if images_dir.exists() else "nothing"
        raise DataError(f"{images_dir}: expected the folder of the COCO images, found {found}")
    doc = _read_json(annotations)
    problems: list[LabelProblem] = []
    classes, category_index = _coco_categories(doc, annotations)
    entries = _coco_images(doc, annotations, problems)
    per_image = _coco_boxes(doc, annotations, {e.id for e in entries}, category_index, problems)

    out = np.empty((len(entries), image_size, image_size, 3), dtype=np.uint8)  # filled in place

    def read(index: int) -> _ImageResult:
        entry = entries[index]
        return _read_coco_image(entry, per_image.get(entry.id, []), images_dir, str(annotations), out, index)

    with ThreadPoolExecutor(max_workers=_workers()) as pool:
        results = list(pool.map(read, range(len(entries))))
    problems += [problem for result in results for problem in result.problems]
    images, kept = _compact(out, results)
    if not any(len(results[i].boxes) for i in kept):
        raise _no_training_data(annotations, problems, f"{len(kept)} usable image(s), none with a usable box")
    if problems:
        log.warning("%s: %d annotation problem(s): %s", annotations, len(problems), lint_summary(problems))
    targets = tuple(results[i].boxes for i in kept)
    split = DetectionSplit(images, targets, tuple(entries[i].file_name for i in kept), tuple(problems))
    return split, classes
