"""YOLO detection datasets: a data.yaml with the class names and train/val/test image folders, a label file per image.

`load_yolo` reads one into a `DetectionDataset` letterboxed to S×S; `lint_yolo` only lists its label problems;
`read_yolo_raw` gives every image's boxes in its own pixels (for `convscope detect convert`). A label
file holds `class cx cy w h` rows (or polygons, read as their boxes: yolo_labels.py) in coordinates
normalised to the image and is found with `label_path`. Decoding, reading text files and the lint's conventions are
the reading kit's (convscope.data.detection.reading); letterboxing is convscope.data.detection.boxes'.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from convscope.data.detection.boxes import (
    SPLIT_NAMES,
    Boxes,
    DetectionDataset,
    DetectionSplit,
    LabelProblem,
    RawDataset,
    RawImage,
    echo,
    letterbox,
)
from convscope.data.detection.reading import (
    ImageResult,
    check_image_size,
    compact,
    decode_image,
    each_image,
    loaded_dataset,
    no_training_data,
    raw_images,
    read_text,
    shown_path,
    to_boxes,
    too_many_boxes,
)
from convscope.data.detection.yolo_labels import parse_labels, polygon_note
from convscope.data.folder import image_files
from convscope.errors import DataError
from convscope.yamlfile import safe_load, yaml_error

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _YoloLayout:
    yaml_path: Path
    base: Path  # split paths are relative to this
    classes: tuple[str, ...]
    splits: dict[str, list[Path]]  # split name → image folders; only the splits data.yaml names


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


def _parse_yaml(text: str):
    """YAML forbids tabs where people type them (`names:<TAB>[a, b]`, a tab-indented `names:` mapping); when only
    a tab stopped the parser, the text is read again with tabs expanded to 8 columns."""
    try:
        return safe_load(text)  # bounded nesting and aliases: see convscope.yamlfile
    except yaml.YAMLError as err:
        if "\t" not in text or "'\\t'" not in str(err):
            raise
        try:
            return safe_load(text.expandtabs(8))
        except yaml.YAMLError:
            raise err from None


def _read_yaml(path: Path) -> dict:
    try:
        doc = _parse_yaml(read_text(path))  # a UTF-8 BOM dropped, UTF-16 with a BOM decoded; bounded, or a DataError
    except yaml.YAMLError as err:  # not valid, or past a bound (refused): one line with the line number
        raise yaml_error(err, str(path), DataError) from None
    if not isinstance(doc, dict):
        raise DataError(f"{path}: expected a mapping with names and train/val/test, found {type(doc).__name__}")
    return doc


def _class_names(doc: dict, path: Path) -> tuple[str, ...]:
    """`names` as a list, or a dict id → name with ids exactly 0..K-1; checked against `nc` when that is given."""
    names = doc.get("names")
    if isinstance(names, dict):
        ids = sorted(names, key=lambda k: (not isinstance(k, int), k if isinstance(k, int) else 0))
        if ids != list(range(len(names))):
            raise DataError(f"{path}: names: expected class ids 0..{len(names) - 1}, found {echo(list(names), 60)}")
        names = [names[i] for i in ids]
    if not isinstance(names, list) or not names:
        raise DataError(
            f"{path}: names: expected a non-empty list of class names (or a dict id → name), found {echo(names, 60)}"
        )
    bad = [n for n in names if not isinstance(n, str | int | float) or isinstance(n, bool)]
    if bad:
        raise DataError(f"{path}: names: expected strings, found {echo(bad[0], 60)}")
    nc = doc.get("nc")
    if nc is not None and nc != len(names):
        raise DataError(f"{path}: nc is {echo(nc, 40)} but names lists {len(names)} classes")
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
            raise DataError(f"{path}: {name}: expected a folder path (or a list of them), found {echo(item, 60)}")
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
            raise DataError(f"{yaml_path}: path: expected a folder path, found {echo(doc['path'], 60)}")
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


def _read_yolo_image(
    image_path: Path, base: Path, n_classes: int, image_size: int | None, out: np.ndarray | None, index: int
) -> ImageResult:
    """Decode one image and read its label file; with image_size, the letterboxed pixels go to out[index]."""
    shown_image = shown_path(image_path, base)
    try:
        array = decode_image(image_path)
    except DataError as err:
        return ImageResult(None, [LabelProblem(shown_image, None, f"unreadable image, skipped: {err}", "unreadable")])
    height, width = array.shape[:2]
    scale, pad = 1.0, (0, 0)
    if image_size is not None:
        array, scale, pad = letterbox(array, image_size)
        if out is not None:
            out[index] = array
    labels = label_path(image_path)
    shown_labels = shown_path(labels, base)
    if not labels.is_file():
        why = f"no label file ({shown_labels}): treated as an image with no objects"
        return ImageResult(Boxes.empty(), [LabelProblem(shown_image, None, why, "no-label")], size=(width, height))
    try:
        text = read_text(labels)
    except DataError as err:  # unreadable, not text, or past a bound (convscope.userfiles)
        why = str(err).removeprefix(f"{labels}").removeprefix(": ").removeprefix(", ")
        problem = LabelProblem(
            shown_labels, None, f"cannot read the label file ({why}); its image is skipped", "label-file"
        )
        return ImageResult(None, [problem])
    rows_written = sum(1 for line in text.splitlines() if line.strip())
    if (problem := too_many_boxes(shown_labels, rows_written, "label rows")) is not None:
        return ImageResult(None, [problem])
    rows, problems, polygons = parse_labels(text, shown_labels, n_classes, width * scale, height * scale, image_size)
    size = float(image_size if image_size is not None else max(width, height))
    boxes = to_boxes(rows, (width * scale, height * scale), pad, size)
    return ImageResult(boxes, problems, polygons, size=(width, height))


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
            problems.append(LabelProblem(shown_path(path, base), None, "label file with no image", "orphan"))
    return problems


@dataclass
class _SplitRead:
    split: DetectionSplit | None  # None when no image was kept, or in lint mode
    problems: list[LabelProblem]
    with_boxes: int  # images with at least one box
    polygons: list[tuple[str, int]]  # (label file, line) of the polygon rows read as boxes
    raw: tuple[RawImage, ...] = ()  # with image_size None: the kept images, boxes in their own pixels


def _read_yolo_split(layout: _YoloLayout, name: str, image_size: int | None, keep_images: bool) -> _SplitRead:
    folders = layout.splits[name]
    paths = sorted({path for folder in folders for path in image_files(folder, recursive=True)})
    keep = keep_images and image_size is not None
    out = np.empty((len(paths), image_size, image_size, 3), dtype=np.uint8) if keep else None  # filled in place

    def read(index: int) -> ImageResult:
        return _read_yolo_image(paths[index], layout.base, len(layout.classes), image_size, out, index)

    results = each_image(read, len(paths))
    problems = [problem for result in results for problem in result.problems]
    problems += _orphans(folders, paths, layout.base)
    with_boxes = sum(1 for r in results if r.boxes is not None and len(r.boxes))
    polygons = [where for result in results for where in result.polygons]
    if image_size is None:
        raw = raw_images(paths, [shown_path(path, layout.base) for path in paths], results)
        return _SplitRead(None, problems, with_boxes, polygons, raw)
    if out is None or all(r.boxes is None for r in results):
        return _SplitRead(None, problems, with_boxes, polygons)
    images, kept = compact(out, results)
    names = tuple(shown_path(paths[i], layout.base) for i in kept)
    split = DetectionSplit(images, tuple(results[i].boxes for i in kept), names, tuple(problems))
    return _SplitRead(split, problems, with_boxes, polygons)


def _with_note(layout: _YoloLayout, problems: list[LabelProblem], reads: list[_SplitRead]) -> list[LabelProblem]:
    """`problems` and, last, the one note for every split's polygon rows (when there were any)."""
    note = polygon_note(shown_path(layout.yaml_path, layout.base), [where for read in reads for where in read.polygons])
    return problems if note is None else [*problems, note]


def lint_yolo(root: str | Path, image_size: int | None = None) -> list[LabelProblem]:
    """Every label problem of the YOLO dataset at `root` (its folder or its data.yaml), split by split.

    Images are decoded (a truncated file is only found that way) but not kept. With `image_size`, the 1-pixel check
    uses the letterboxed size; without, the original one. A train split with no image with a box (which training
    refuses) is a problem of kind "no-box", last but for the note (`is_note`: polygon rows read as boxes). A missing or
    malformed data.yaml is a DataError.
    """
    if image_size is not None:
        check_image_size(image_size)
    layout = _layout(root)
    reads = [_read_yolo_split(layout, name, image_size, keep_images=False) for name in layout.splits]
    problems = [problem for read in reads for problem in read.problems]
    if reads[0].with_boxes == 0:  # train is always first (SPLIT_NAMES) and always there (_layout)
        where = ", ".join(shown_path(folder, layout.base) for folder in layout.splits["train"])
        why = f"no training image with a valid box in {where}: training would be refused"
        problems.append(LabelProblem(shown_path(layout.yaml_path, layout.base), None, why, "no-box"))
    return _with_note(layout, problems, reads)


def load_yolo(root: str | Path, image_size: int) -> DetectionDataset:
    """The YOLO dataset at `root` (its folder or its data.yaml), images letterboxed to image_size×image_size.

    Problems are logged (a one-line summary) and returned in `problems`, the polygon note last (see lint_yolo); a
    DataError only when train has no image with a valid box.
    """
    check_image_size(image_size)
    layout = _layout(root)
    reads: list[_SplitRead] = []
    for name in layout.splits:
        read = _read_yolo_split(layout, name, image_size, keep_images=True)
        reads.append(read)
        if name == "train" and read.with_boxes == 0:
            where = ", ".join(shown_path(folder, layout.base) for folder in layout.splits["train"])
            what = f"{len(read.split) if read.split else 0} usable image(s), none with a box, in {where}"
            raise no_training_data(layout.yaml_path, read.problems, what)
    splits = {name: read.split for name, read in zip(layout.splits, reads, strict=True)}
    problems = _with_note(layout, [problem for read in reads for problem in read.problems], reads)
    return loaded_dataset(layout.yaml_path, layout.yaml_path.parent.resolve().name, layout.classes, splits, problems)


def read_yolo_raw(root: str | Path) -> RawDataset:
    """Every split of the YOLO dataset at `root` with each image's boxes in its own pixels (x1, y1, x2, y2, float32;
    pixel i covers [i, i+1)), after the same lint as `lint_yolo` (its problems, the polygon note last, are in
    `problems`; the dropped rows are not in the boxes). YOLO has no ignore regions. A DataError as for lint_yolo."""
    layout = _layout(root)
    reads = [_read_yolo_split(layout, name, None, keep_images=False) for name in layout.splits]
    problems = _with_note(layout, [problem for read in reads for problem in read.problems], reads)
    splits = {name: read.raw for name, read in zip(layout.splits, reads, strict=True)}
    return RawDataset("yolo", layout.classes, splits, str(layout.yaml_path), tuple(problems))
