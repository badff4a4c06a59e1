"""Pascal VOC detection datasets: one XML file per image, as LabelImg writes them and the TensorFlow Object Detection
API reads them.

Layouts (folder names in any case): `DIR/Annotations/*.xml` with the images in `DIR/JPEGImages/` (the VOC devkit's),
`DIR/annotations/` beside `DIR/images/`, or the XML files beside their images in one folder. An XML file's image is
found by its `<filename>` (case and extension may differ: `a.JPG` finds a.jpg, or a.png when that is the only `a`),
else by the XML file's own stem. Splits come from `ImageSets/Main/{train,val,trainval,test}.txt` (train is train.txt,
or trainval.txt less val.txt when there is no train.txt); without ImageSets a seeded draw holds out `val_fraction` for
val and as much for test. Classes are `classes.txt` or `labels.txt` in the dataset folder (one name a line; objects of
other classes are problems), else the sorted names found. `<difficult>1</difficult>` objects are ignore regions
(`DetectionSplit.crowds`, as COCO's iscrowd): neither targets nor, in scoring, false positives — as the VOC devkit
and mmdetection treat them.

Coordinates (1-based, inclusive: a box covers [xmin − 1, xmax] in convscope's pixels, detectron2's conversion), the
checks of each object, and the safe parsing are in voc_xml.py. A box running past the image is clipped
(one note, kind "clipped", says how many); the decoded image's size is used when `<size>` disagrees (a problem).
Decoding and the lint's other conventions are the reading kit's (convscope.data.detection.reading).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from convscope.data.detection.boxes import (
    SPLIT_NAMES,
    DetectionDataset,
    DetectionSplit,
    LabelProblem,
    RawDataset,
    cut,
    echo,
    letterbox,
)
from convscope.data.detection.reading import (
    ImageResult,
    check_image_size,
    child_folder,
    compact,
    decode_image,
    duplicate_problems,
    each_image,
    loaded_dataset,
    no_training_data,
    raw_images,
    read_text,
    shown_path,
    to_boxes,
)
from convscope.data.detection.voc_xml import VocFile, check_object, parse_xml, size_problem
from convscope.data.folder import image_files
from convscope.errors import DataError

log = logging.getLogger(__name__)

CLASS_FILES = ("classes.txt", "labels.txt")
_LABELME_EXTRAS = ("__ignore__", "_background_")  # labelme2voc's labels.txt starts with these; they are not classes


@dataclass(frozen=True)
class _VocLayout:
    root: Path
    annotations: Path
    images: Path
    classes: tuple[str, ...] | None  # from classes.txt / labels.txt, else None (the names found)
    splits: dict[str, list[Path]]  # split name → its XML files, in order
    problems: list[LabelProblem]  # ImageSets entries without an XML file


class _ImageFinder:
    """Images of one folder by name, case ignored; by stem when the extension differs."""

    def __init__(self, folder: Path) -> None:
        files = image_files(folder)  # sorted: the first of a.jpg, a.png wins a stem
        self.exact = {path.name: path for path in files}
        self.by_name, self.by_stem = {}, {}
        for path in files:
            self.by_name.setdefault(path.name.lower(), path)
            self.by_stem.setdefault(path.stem.lower(), path)

    def find(self, filename: str | None, xml: Path) -> Path | None:
        if filename:
            name = PurePosixPath(filename.replace("\\", "/")).name  # only a name: never a path out of the folder
            found = self.exact.get(name) or self.by_name.get(name.lower())
            found = found or self.by_stem.get(PurePosixPath(name).stem.lower())
            if found:
                return found
        return self.by_stem.get(xml.stem.lower())


def _lines(path: Path, what: str) -> list[str]:
    """The lines of a text file the dataset needs (a class list, an image set); a DataError when it is unreadable."""
    try:
        return read_text(path).splitlines()
    except DataError as err:  # unreadable, not text, or past a bound (convscope.userfiles): name what it is
        raise DataError(f"{err} ({what})") from None


def _class_file(layout_root: Path, annotations: Path) -> tuple[str, ...] | None:
    for folder in dict.fromkeys((layout_root, annotations)):
        for name in CLASS_FILES:
            path = folder / name
            if not path.is_file():
                continue
            lines = _lines(path, "the class list")
            names = [line.strip() for line in lines if line.strip() and line.strip() not in _LABELME_EXTRAS]
            if not names:
                raise DataError(f"{path}: expected class names, one a line, found none")
            if len(set(names)) != len(names):
                twice = next(n for n in names if names.count(n) > 1)
                raise DataError(f"{path}: class {echo(twice, 40)} is listed twice")
            return tuple(names)
    return None


def _image_sets(root: Path, annotations: Path, xmls: dict[str, Path]) -> tuple[dict, list[LabelProblem]] | None:
    """Split → XML files from ImageSets/Main (None when there is none), and its entries without an XML file."""
    sets = child_folder(root, "imagesets")
    main = child_folder(sets, "main") if sets is not None else None
    folder = main or sets
    if folder is None or not any((folder / f"{name}.txt").is_file() for name in ("train", "val", "trainval", "test")):
        return None
    problems, ids = [], {}
    for name in ("train", "val", "trainval", "test"):
        path = folder / f"{name}.txt"
        if not path.is_file():
            continue
        lines = _lines(path, "the image set")
        ids[name] = {}  # XML file → None: a set that keeps the file's order
        for line, text in enumerate(lines, start=1):
            if not text.split():
                continue
            image_id = text.split()[0]  # per-class files add a column (1, -1, 0); split files have one
            xml = xmls.get(image_id.lower())
            if xml is None:
                why = f"{cut(image_id, 40)}: no {shown_path(annotations, root)}/{cut(image_id, 40)}.xml, left out"
                problems.append(LabelProblem(shown_path(path, root), line, why, "set-entry"))
            else:
                ids[name][xml] = None
    if "train" not in ids and "trainval" not in ids:
        raise DataError(f"{folder}: expected train.txt or trainval.txt, found {sorted(ids)}")
    val = ids.get("val", {})
    splits = {"train": list(ids["train"]) if "train" in ids else [x for x in ids["trainval"] if x not in val]}
    splits.update({name: list(ids[name]) for name in ("val", "test") if name in ids})
    return splits, problems


def _drawn_splits(xmls: list[Path], seed: int, val_fraction: float) -> dict[str, list[Path]]:
    """No ImageSets: val_fraction of the files for val, as many for test, the rest for train (seeded)."""
    order = np.random.default_rng(seed).permutation(len(xmls))
    n = round(len(xmls) * val_fraction)
    n = min(n, (len(xmls) - 1) // 2)  # at least one file for training
    parts = {"train": order[2 * n :], "val": order[:n], "test": order[n : 2 * n]}
    return {name: [xmls[i] for i in sorted(index)] for name, index in parts.items() if len(index)}


def _layout(root: str | Path, seed: int, val_fraction: float) -> _VocLayout:
    root = Path(root)
    if not root.is_dir():
        raise DataError(
            f"{root}: expected a Pascal VOC dataset folder, found {'a file' if root.exists() else 'nothing'}"
        )
    annotations = child_folder(root, "annotations") or root
    images = child_folder(root, "jpegimages", "images") or annotations
    xml_files = sorted(p for p in annotations.iterdir() if p.suffix.lower() == ".xml" and not p.name.startswith("."))
    if not xml_files:
        raise DataError(f"{annotations}: expected Pascal VOC .xml annotation files, found none")
    classes = _class_file(root, annotations)
    found = _image_sets(root, annotations, {p.stem.lower(): p for p in xml_files})
    if found is None:
        splits, problems = _drawn_splits(xml_files, seed, val_fraction), []
        counts = "/".join(str(len(splits.get(name, []))) for name in SPLIT_NAMES)
        log.info(
            "%s: no ImageSets/Main, so %s annotation files were drawn for train/val/test (seed %d, %.0f%% held out "
            "for val and as much for test)",
            root,
            counts,
            seed,
            100 * val_fraction,
        )
    else:
        splits, problems = found
        if unlisted := len(set(xml_files) - {xml for files in splits.values() for xml in files}):
            log.info("%s: %d annotation file(s) are in no ImageSets/Main list and were not read", root, unlisted)
    return _VocLayout(root, annotations, images, classes, splits, problems)


def _read_voc_image(
    file: VocFile,
    finder: _ImageFinder,
    layout: _VocLayout,
    classes: dict[str, int],
    image_size: int | None,
    out: np.ndarray | None,
    index: int,
) -> tuple[ImageResult, Path | None]:
    """Find and decode one XML file's image and check its objects; with image_size, the letterboxed pixels go to
    out[index] (when out is given) and the boxes follow them, else the boxes stay in the image's own pixels."""
    path = finder.find(file.filename, file.xml)
    if path is None:
        folder = shown_path(layout.images, layout.root)
        why = f"image {echo(file.filename or file.xml.stem, 60)} not found in {folder}/, skipped"
        return ImageResult(None, [LabelProblem(file.shown, None, why, "missing")]), None
    shown_image = shown_path(path, layout.root)
    try:
        array = decode_image(path)
    except DataError as err:
        problem = LabelProblem(shown_image, None, f"unreadable image, skipped: {err}", "unreadable")
        return ImageResult(None, [problem]), path
    height, width = array.shape[:2]
    problems = [p for p in [size_problem(file, shown_image, width, height)] if p is not None]
    scale, pad = 1.0, (0, 0)
    if image_size is not None:
        array, scale, pad = letterbox(array, image_size)
        if out is not None:
            out[index] = array
    slots: list[LabelProblem | None] = []  # one per object: its problem, in file order
    ignore, clipped, candidates = [], [], []  # candidates: (xyxy, class, (object, slot)) of the targets
    for obj in file.objects:
        first, *rest = check_object(obj, classes, width, height, scale)
        slots.append(LabelProblem(file.shown, obj.line, rest[0], first) if isinstance(first, str) else None)
        if isinstance(first, str):
            continue
        xyxy, was_clipped = rest
        if was_clipped:
            clipped.append((file.shown, obj.line))
        if obj.difficult:
            ignore.append((xyxy, first))
        else:
            candidates.append((xyxy, first, (obj, len(slots) - 1)))

    def duplicate(where, earlier, iou) -> tuple[int, LabelProblem]:
        why = f"{where[0].where}: duplicate of object {earlier[0].number} (IoU {iou:.2f})"
        return where[1], LabelProblem(file.shown, where[0].line, why, "duplicate")

    kept, duplicates = duplicate_problems(candidates, duplicate)
    for _, (slot, problem) in duplicates:
        slots[slot] = problem
    problems += [problem for problem in slots if problem is not None]
    rows = [candidates[i][:2] for i in kept]
    size = float(image_size if image_size is not None else max(width, height))
    targets, regions = to_boxes(rows, (scale, scale), pad, size), to_boxes(ignore, (scale, scale), pad, size)
    return ImageResult(targets, problems, crowds=regions, size=(width, height), clipped=clipped), path


@dataclass
class _Read:
    classes: tuple[str, ...]
    splits: dict[str, tuple[list[ImageResult], list[Path | None], list[str]]]  # results, image paths, names
    problems: list[LabelProblem]  # every split's, in split order, then the clipping note
    out: dict[str, np.ndarray]  # split → its letterboxed images (when kept)


def _read(root, image_size: int | None, keep_images: bool, seed: int, val_fraction: float) -> tuple[_VocLayout, _Read]:
    layout = _layout(root, seed, val_fraction)
    xmls = list(dict.fromkeys(xml for files in layout.splits.values() for xml in files))
    parsed = dict(
        zip(xmls, each_image(lambda i: parse_xml(xmls[i], shown_path(xmls[i], layout.root)), len(xmls)), strict=True)
    )
    files = {xml: f for xml, f in parsed.items() if isinstance(f, VocFile)}
    classes = layout.classes
    if classes is None:
        classes = tuple(sorted({obj.name for f in files.values() for obj in f.objects if obj.name}))
        log.info("%s: classes (no classes.txt: the names found, sorted): %s", layout.root, ", ".join(classes))
    index = {name: i for i, name in enumerate(classes)}
    finder = _ImageFinder(layout.images)
    problems = list(layout.problems)
    read = _Read(classes, {}, problems, {})
    used: set[Path] = set()
    for name, split_xmls in layout.splits.items():
        split_files = [files[x] for x in split_xmls if x in files]
        keep = keep_images and image_size is not None
        out = np.empty((len(split_files), image_size, image_size, 3), np.uint8) if keep else None

        def one(i: int, split_files=split_files, out=out):
            return _read_voc_image(split_files[i], finder, layout, index, image_size, out, i)

        done = each_image(one, len(split_files))
        results, paths = [r for r, _ in done], [p for _, p in done]
        used.update(p for p in paths if p is not None)
        by_xml = {file.xml: result.problems for file, result in zip(split_files, results, strict=True)}
        problems += [p for x in split_xmls for p in (by_xml[x] if x in by_xml else [parsed[x]])]  # in file order
        names = [shown_path(p, layout.root) if p is not None else "" for p in paths]
        read.splits[name] = (results, paths, names)
        if out is not None:
            read.out[name] = out
    stems = {x.stem.lower() for x in layout.annotations.iterdir() if x.suffix.lower() == ".xml"}
    for path in finder.exact.values():
        if path not in used and path.stem.lower() not in stems:
            why = "image with no XML file: not read"
            problems.append(LabelProblem(shown_path(path, layout.root), None, why, "no-label"))
    clipped = [where for r in read.splits.values() for result in r[0] for where in result.clipped]
    if clipped:
        (path, line), files_clipped = clipped[0], len({p for p, _ in clipped})
        why = (
            f"{len(clipped)} box(es) in {files_clipped} XML file(s) ran past the image edge and were clipped to it "
            f"(first: {path}" + (f", line {line})" if line else ")")
        )
        problems.append(LabelProblem(shown_path(layout.annotations, layout.root), None, why, "clipped"))
    return layout, read


def _with_box(results: list[ImageResult]) -> int:
    return sum(1 for r in results if r.boxes is not None and len(r.boxes))


def lint_voc(
    root: str | Path, image_size: int | None = None, *, seed: int = 0, val_fraction: float = 0.1
) -> list[LabelProblem]:
    """Every label problem of the Pascal VOC dataset at `root` (module docstring: layouts, splits, conventions).

    Images are decoded (a truncated file is only found that way) but not kept. With `image_size`, the 1-pixel check
    uses the letterboxed size. A train split with no image with a box (which training refuses) is a problem of kind
    "no-box"; the note on clipped boxes (kind "clipped", `is_note`) comes last. A DataError when the folder has no
    annotation files, or its ImageSets or class list cannot be used.
    """
    if image_size is not None:
        check_image_size(image_size)
    layout, read = _read(root, image_size, False, seed, val_fraction)
    problems = read.problems
    if _with_box(read.splits["train"][0]) == 0:
        why = "no training image with a valid box: training would be refused"
        at = len(problems) - (1 if problems and problems[-1].is_note else 0)
        problems.insert(at, LabelProblem(shown_path(layout.annotations, layout.root), None, why, "no-box"))
    return problems


def read_voc_raw(root: str | Path, *, seed: int = 0, val_fraction: float = 0.1) -> RawDataset:
    """Every split of the VOC dataset at `root`, each image's boxes in its own pixels (x1, y1, x2, y2 float32, pixel i
    covering [i, i+1); the module docstring says how VOC's 1-based coordinates map), difficult objects as ignore
    regions, after the same lint as `lint_voc` (its problems are in `problems`). A DataError as for lint_voc."""
    layout, read = _read(root, None, False, seed, val_fraction)
    splits = {name: raw_images(paths, names, results) for name, (results, paths, names) in read.splits.items()}
    return RawDataset("voc", read.classes, splits, str(layout.root), tuple(read.problems))


def load_voc(root: str | Path, image_size: int, *, seed: int = 0, val_fraction: float = 0.1) -> DetectionDataset:
    """The Pascal VOC dataset at `root`, images letterboxed to image_size×image_size (uint8 N×S×S×3), boxes in their
    pixels; difficult objects in each split's `crowds` (ignore regions in scoring). Without ImageSets, `seed` and
    `val_fraction` draw the splits (logged). Problems are logged (a one-line summary) and returned in `problems`; a
    DataError when train has no image with a valid box, or as for lint_voc.
    """
    check_image_size(image_size)
    layout, read = _read(root, image_size, True, seed, val_fraction)
    splits: dict[str, DetectionSplit | None] = {}
    for name, (results, _, names) in read.splits.items():
        if name == "train" and _with_box(results) == 0:
            kept = sum(1 for r in results if r.boxes is not None)
            what = f"{kept} usable image(s), none with a box"
            raise no_training_data(layout.root, read.problems, what)
        if all(r.boxes is None for r in results):
            splits[name] = None
            continue
        images, kept = compact(read.out[name], results)
        crowds = tuple(results[i].crowds for i in kept)
        split_problems = tuple(p for r in results for p in r.problems)
        splits[name] = DetectionSplit(
            images,
            tuple(results[i].boxes for i in kept),
            tuple(names[i] for i in kept),
            split_problems,
            crowds if any(len(c) for c in crowds) else (),
        )
    return loaded_dataset(layout.root, layout.root.resolve().name, read.classes, splits, read.problems)
