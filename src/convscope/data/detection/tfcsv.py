"""TensorFlow Object Detection CSV datasets: one row per box, `filename,width,height,class,xmin,ymin,xmax,ymax`, as the
TF Object Detection API tutorials write them (xml_to_csv.py → train_labels.csv, test_labels.csv) and as Roboflow
exports them ("TensorFlow Object Detection CSV": train/_annotations.csv, valid/…, test/…, images beside each).

Layouts (names in any case):
  - one CSV file: its images in `data_dir`, else in the CSV's folder, images/ beside it, or (train_labels.csv) train/
    or images/train/ beside it (or beside its annotations/ folder, as the TF tutorials lay it out). With a `split`
    column (train, val|valid|validation|eval, test) its rows make those splits; without, the file is the train split
    (logged; a note, kind "split-name", when its name says another split), and load.py holds out validation images.
    When none of its images is found, that is one problem (kind "missing") saying to give their folder (--data-dir).
  - a folder with one CSV per split: SPLIT_labels.csv or SPLIT.csv at the root, in annotations/ or in images/, each
    row's image looked for in images/SPLIT/, SPLIT/, images/ and the CSV's folder; or Roboflow's SPLIT/_annotations.csv
    per split folder, images beside it. A folder needs a train CSV.
Classes: classes.txt or labels.txt (one name a line), else TF's label_map.pbtxt / labelmap.pbtxt (names in id order),
in the dataset folder, its annotations/ or beside a CSV (convscope.data.detection.class_lists: one lookup for every
layout); else the sorted names found. A row of another class is a problem.

Coordinates are pixels of the image, 0-based corners: a box is [xmin, xmax] × [ymin, ymax] with pixel i covering
[i, i+1), as TF's generate_tfrecord.py reads them (xmin / width) and as Roboflow writes them (a whole 640×640 photo is
`0,0,640,640`). xml_to_csv.py copies VOC's 1-based numbers unchanged, which TF reads the same way: such boxes sit at
most a pixel right of and below convscope's VOC reading of the same XML. A box past the image is clipped (one note,
kind "clipped"); `width`/`height` that disagree with the decoded image are a problem and the image's own size is used.
A row with an empty class keeps its image with no objects (an image without boxes); an image with no row is not read
(kind "no-label"). Row problems name the CSV and its line (the header is line 1). Decoding and the lint's other
conventions are the reading kit's (convscope.data.detection.reading); the layouts, the CSV's text, the class lists
and the writer are in tfcsv_files.py.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

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
from convscope.data.detection.class_lists import class_list
from convscope.data.detection.reading import (
    ImageResult,
    check_image_size,
    compact,
    decode_image,
    duplicate_problems,
    each_image,
    finite_number,
    loaded_dataset,
    no_training_data,
    raw_images,
    shown_path,
    to_boxes,
    too_many_boxes,
)
from convscope.data.detection.tfcsv_files import (
    SPLIT_WORDS,
    CsvLayout,
    CsvRow,
    ImageFinder,
    csv_layout,
    read_table,
    split_word,
)
from convscope.data.folder import image_files
from convscope.errors import DataError

log = logging.getLogger(__name__)


@dataclass
class _CsvImage:
    filename: str  # as the rows write it
    shown: str  # the CSV as messages show it
    finder: ImageFinder
    rows: list[CsvRow] = field(default_factory=list)


def _check_row(row: CsvRow, classes: dict[str, int], width: int, height: int, scale: float):
    """(kind, message) of what is wrong with one row's box on a width×height image, or (class, xyxy, clipped)."""
    if row.cls not in classes:
        listed = cut(", ".join(classes), 200)
        return "unknown-class", f"class {echo(row.cls, 40)} is not in the class list ({listed}), row skipped"
    values = []
    for name, text in zip(("xmin", "ymin", "xmax", "ymax"), row.coords, strict=True):
        if (value := finite_number(text)) is None:
            return "number", f"{name} is {echo(text)}, not a number; row skipped"
        values.append(value)
    x1, y1, x2, y2 = values
    written = f"xmin {x1:g}, ymin {y1:g}, xmax {x2:g}, ymax {y2:g}"
    if x2 <= x1 or y2 <= y1:
        what = "inverted" if x2 < x1 or y2 < y1 else "zero-size"
        return "size", f"{what} box ({written}: expected xmax > xmin and ymax > ymin)"
    if x2 <= 0 or y2 <= 0 or x1 >= width or y1 >= height:
        return "outside", f"box ({written}) outside the {width}×{height} image"
    clipped = x1 < 0 or y1 < 0 or x2 > width or y2 > height
    xyxy = np.clip(np.array(values), 0, [width, height, width, height])
    w, h = (xyxy[2] - xyxy[0]) * scale, (xyxy[3] - xyxy[1]) * scale
    if w < 1 or h < 1:
        after = " after resizing" if scale != 1 else ""
        return "size", f"box under 1 pixel{after} ({w:.2f}×{h:.2f} px)"
    return classes[row.cls], xyxy, clipped


def _size_problem(image: _CsvImage, shown_image: str, width: int, height: int) -> LabelProblem | None:
    for row in image.rows:
        if row.size is None or tuple(finite_number(t) for t in row.size) == (width, height):
            continue
        said = "×".join(cut(text, 20) for text in row.size)
        why = f"width, height say {said} but {shown_image} is {width}×{height}; the image's own size is used"
        return LabelProblem(image.shown, row.line, why, "image-size")
    return None


def _boxes(image: _CsvImage, classes: dict[str, int], width: int, height: int, scale: float):
    """The rows of one width×height image checked (`scale`: its letterbox scale, for the 1-pixel check) →
    ((xyxy, class) of the boxes kept, in the image's pixels; their problems in row order; (CSV, line) of clipped ones).
    A row with an empty class is an image with no boxes: nothing to check."""
    slots: list[LabelProblem | None] = []  # one per row with a class: its problem, in file order
    candidates, clipped = [], []  # (xyxy, class, (row, slot)) of the valid boxes
    for row in (row for row in image.rows if row.cls):
        checked = _check_row(row, classes, width, height, scale)
        if isinstance(checked[0], str):
            slots.append(LabelProblem(image.shown, row.line, checked[1], checked[0]))
            continue
        cls, xyxy, was_clipped = checked
        slots.append(None)
        if was_clipped:
            clipped.append((image.shown, row.line))
        candidates.append((xyxy, cls, (row, len(slots) - 1)))

    def duplicate(where, earlier, iou) -> tuple[int, LabelProblem]:
        why = f"duplicate of the box on line {earlier[0].line} (IoU {iou:.2f}), row skipped"
        return where[1], LabelProblem(image.shown, where[0].line, why, "duplicate")

    kept, duplicates = duplicate_problems(candidates, duplicate)
    for _, (slot, problem) in duplicates:
        slots[slot] = problem
    return [candidates[i][:2] for i in kept], [p for p in slots if p is not None], clipped


def _read_image(image: _CsvImage, root: Path, classes: dict[str, int], image_size, out, index: int):
    """Find and decode one image and check its rows → (ImageResult, its path or None); with image_size, the
    letterboxed pixels go to out[index] (when out is given) and the boxes follow them."""
    first = image.rows[0].line
    if (problem := too_many_boxes(image.shown, len(image.rows), "rows")) is not None:
        return ImageResult(None, [LabelProblem(image.shown, first, problem.message, problem.kind)]), None
    path = image.finder.find(image.filename)
    if path is None:
        where = ", ".join(f"{shown_path(f, root)}/" for f in image.finder.folders) or "no folder"
        why = f"image {echo(image.filename, 60)} not found in {where}; skipped with its {len(image.rows)} row(s)"
        return ImageResult(None, [LabelProblem(image.shown, first, why, "missing")]), None
    shown_image = shown_path(path, root)
    try:
        array = decode_image(path)
    except DataError as err:
        problem = LabelProblem(shown_image, None, f"unreadable image, skipped: {err}", "unreadable")
        return ImageResult(None, [problem]), path
    height, width = array.shape[:2]
    scale, pad = 1.0, (0, 0)
    if image_size is not None:
        array, scale, pad = letterbox(array, image_size)
        if out is not None:
            out[index] = array
    rows, problems, clipped = _boxes(image, classes, width, height, scale)
    problems = [p for p in [_size_problem(image, shown_image, width, height)] if p is not None] + problems
    size = float(image_size if image_size is not None else max(width, height))
    boxes = to_boxes(rows, (scale, scale), pad, size)
    return ImageResult(boxes, problems, size=(width, height), clipped=clipped), path


# ── a dataset ─────────────────────────────────────────────────────────────────────────────────────────────────────
@dataclass
class _Read:
    layout: CsvLayout
    classes: tuple[str, ...]
    splits: dict[str, tuple[list[ImageResult], list[Path | None], list[str]]]  # results, image paths, shown names
    problems: list[LabelProblem]  # the CSVs', every split's in split order, images with no row, the clipping note
    out: dict[str, np.ndarray]  # split → its letterboxed images (when kept)


def _split_of(row: CsvRow, shown: str, problems: list[LabelProblem]) -> str | None:
    split = SPLIT_WORDS.get(row.split.lower()) if row.split is not None else "train"
    if split is None:
        why = f"split {echo(row.split, 40)} is not train, val (valid, validation) or test; row skipped"
        problems.append(LabelProblem(shown, row.line, why, "entry"))
    return split


def _images(layout: CsvLayout, problems: list[LabelProblem]) -> dict[str, dict[str, _CsvImage]]:
    """split → filename → its rows, every CSV read (in split order, images in the order of their first row)."""
    groups: dict[str, dict[str, _CsvImage]] = {}
    for source in layout.sources:
        shown = shown_path(source.csv, layout.root)
        table = read_table(source.csv, shown)
        problems += table.problems
        finder = ImageFinder(source.images)
        if source.split is None and not table.has_split:
            problems += _read_as_train(source.csv, shown)
        for row in table.rows:
            split = source.split or _split_of(row, shown, problems)
            if split is None:
                continue
            if not row.filename:
                problems.append(LabelProblem(shown, row.line, "no filename; row skipped", "entry"))
                continue
            image = groups.setdefault(split, {}).setdefault(row.filename, _CsvImage(row.filename, shown, finder))
            image.rows.append(row)
    return {name: groups[name] for name in SPLIT_NAMES if name in groups}


def _read_as_train(csv: Path, shown: str) -> list[LabelProblem]:
    """A single CSV without a split column is the train split: logged, and a note (kind "split-name") when its name
    says another split (test_labels.csv)."""
    log.info("%s: no split column, so its rows are the train split", csv)
    named = split_word(csv.stem)
    if named is None or named == "train":
        return []
    why = f"named for the {named} split but without a split column: its rows are read as the train split"
    return [LabelProblem(shown, None, why, "split-name")]


def _none_found(layout: CsvLayout, splits: dict, problems: list[LabelProblem]) -> list[LabelProblem]:
    """`problems` with its "missing" ones made one when no row's image was found at all: with a --data-dir hint for a
    single CSV (the images are elsewhere), instead of one problem per image."""
    results = [r for results, _, _ in splits.values() for r in results]
    missing = [p for p in problems if p.kind == "missing"]
    if len(missing) < 2 or len(missing) != len(results):
        return problems
    first = next(p for p in missing)
    where = ", ".join(f"{shown_path(f, layout.root)}/" for f in layout.sources[0].images) or "no folder"
    hint = "; give their folder with --data-dir" if len(layout.sources) == 1 and layout.sources[0].split is None else ""
    why = (
        f"none of the {len(missing)} images its rows name is in {where} (first: {first.message.split(' not found')[0]})"
    )
    one = LabelProblem(first.path, None, why + hint, "missing")
    return [one if p is first else p for p in problems if p.kind != "missing" or p is first]


def _classes(layout: CsvLayout, groups: dict[str, dict[str, _CsvImage]]) -> tuple[str, ...]:
    listed = class_list(list(layout.class_folders))
    if listed is not None:
        return listed[0]
    names = tuple(sorted({row.cls for images in groups.values() for i in images.values() for row in i.rows} - {""}))
    log.info("%s: classes (no classes.txt or label map: the names found, sorted): %s", layout.root, ", ".join(names))
    return names


def _unread_images(layout: CsvLayout, used: set[Path]) -> list[LabelProblem]:
    """Images in the folders where rows found theirs that no row names (kind "no-label")."""
    folders = dict.fromkeys(f for src in layout.sources for f in src.images if any(p.parent == f for p in used))
    why = "image in no row of the CSV: not read"
    return [
        LabelProblem(shown_path(path, layout.root), None, why, "no-label")
        for folder in folders
        for path in image_files(folder)
        if path not in used
    ]


def _clipped_note(layout: CsvLayout, results: list[ImageResult]) -> list[LabelProblem]:
    clipped = [where for result in results for where in result.clipped]
    if not clipped:
        return []
    (shown, line), images = clipped[0], sum(1 for result in results if result.clipped)
    why = (
        f"{len(clipped)} box(es) of {images} image(s) ran past the image edge and were clipped to it "
        f"(first: {shown}, line {line})"
    )
    return [LabelProblem(shown, None, why, "clipped")]


def _read(path, data_dir, image_size: int | None, keep_images: bool) -> _Read:
    layout = csv_layout(Path(path), data_dir)
    problems: list[LabelProblem] = []
    groups = _images(layout, problems)
    classes = _classes(layout, groups)
    index = {name: i for i, name in enumerate(classes)}
    read = _Read(layout, classes, {}, problems, {})
    for name, by_file in groups.items():
        images = list(by_file.values())
        keep = keep_images and image_size is not None
        out = np.empty((len(images), image_size, image_size, 3), np.uint8) if keep else None

        def one(i: int, images=images, out=out):
            return _read_image(images[i], layout.root, index, image_size, out, i)

        done = each_image(one, len(images))
        results, paths = [r for r, _ in done], [p for _, p in done]
        problems += [problem for result in results for problem in result.problems]
        read.splits[name] = (results, paths, [shown_path(p, layout.root) if p else "" for p in paths])
        if out is not None:
            read.out[name] = out
    read.problems = problems = _none_found(layout, read.splits, problems)
    used = {p for _, paths, _ in read.splits.values() for p in paths if p is not None}
    problems += _unread_images(layout, used)
    problems += _clipped_note(layout, [result for results, _, _ in read.splits.values() for result in results])
    return read


def _with_box(read: _Read) -> int:
    results = read.splits.get("train", ([],))[0]
    return sum(1 for r in results if r.boxes is not None and len(r.boxes))


def lint_csv(path: str | Path, *, data_dir=None, image_size: int | None = None) -> list[LabelProblem]:
    """Every label problem of the TF Object Detection CSV dataset at `path` (a CSV file or a folder: module
    docstring), each with its CSV and line. Images are decoded but not kept; with `image_size`, the 1-pixel check
    uses the letterboxed size. A train split with no image with a box is a problem of kind "no-box"; the note on
    clipped boxes comes last. A DataError when a CSV cannot be read or lacks a column, or the layout has no train."""
    if image_size is not None:
        check_image_size(image_size)
    read = _read(path, data_dir, image_size, False)
    problems = read.problems
    if _with_box(read) == 0:
        why = "no training image with a valid box: training would be refused"
        at = len(problems) - (1 if problems and problems[-1].is_note else 0)
        shown = shown_path(read.layout.sources[0].csv, read.layout.root)
        problems.insert(at, LabelProblem(shown, None, why, "no-box"))
    return problems


def read_csv_raw(path: str | Path, *, data_dir=None) -> RawDataset:
    """Every split of the CSV dataset at `path`, each image's boxes in its own pixels (x1, y1, x2, y2 float32, the
    CSV's corners), after the same lint as `lint_csv` (its problems are in `problems`). A DataError as lint_csv's."""
    read = _read(path, data_dir, None, False)
    splits = {name: raw_images(paths, names, results) for name, (results, paths, names) in read.splits.items()}
    return RawDataset("csv", read.classes, splits, str(path), tuple(read.problems))


def load_csv(path: str | Path, image_size: int, *, data_dir=None) -> DetectionDataset:
    """The CSV dataset at `path` (a CSV file or a folder: module docstring), images letterboxed to
    image_size×image_size (uint8 N×S×S×3), boxes in their pixels. One file without a split column is the train split
    (val and test None). Problems are logged (a one-line summary) and returned in `problems`; a DataError when train
    has no image with a valid box, or as for lint_csv."""
    check_image_size(image_size)
    read = _read(path, data_dir, image_size, True)
    if _with_box(read) == 0:
        kept = sum(1 for r in read.splits.get("train", ([],))[0] if r.boxes is not None)
        raise no_training_data(Path(path), read.problems, f"{kept} usable image(s), none with a box")
    splits: dict[str, DetectionSplit | None] = {}
    for name, (results, _, names) in read.splits.items():
        if all(r.boxes is None for r in results):
            splits[name] = None
            continue
        images, kept = compact(read.out[name], results)
        problems = tuple(p for r in results for p in r.problems)
        splits[name] = DetectionSplit(
            images, tuple(results[i].boxes for i in kept), tuple(names[i] for i in kept), problems
        )
    return loaded_dataset(Path(path), read.layout.name, read.classes, splits, read.problems)
