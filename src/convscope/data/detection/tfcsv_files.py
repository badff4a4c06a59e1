"""The files of a TensorFlow Object Detection CSV dataset (convscope.data.detection.tfcsv, whose docstring says the
layouts and conventions): where its CSVs and images are (`csv_layout`, `csv_split_files`, `ImageFinder`), the CSV's
rows (`read_table`), the folders where its class list is looked for (`CsvLayout.class_folders`; the lookup is
convscope.data.detection.class_lists', shared by every layout), and the writer of Roboflow's layout (`write_csv`).

A CSV is read with the csv module as editors save it (UTF-8 with or without a BOM, UTF-16 with a BOM, CRLF or LF,
quoted fields), up to MAX_CSV_BYTES and lines of 100,000 characters (convscope.userfiles). Its header is required:
filename, class, xmin, ymin, xmax, ymax (width, height and split optional), names in any case and order.
"""

from __future__ import annotations

import csv
import io
import shutil
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from convscope import userfiles
from convscope.data.detection.boxes import SPLIT_NAMES, LabelProblem, RawDataset, cut
from convscope.data.detection.class_lists import class_folders
from convscope.data.detection.reading import child_folder
from convscope.data.detection.split_folders import SPLIT_FOLDERS
from convscope.data.folder import image_files
from convscope.errors import DataError

MAX_CSV_BYTES = 64 * 2**20  # ~1 million rows; the CSVs of the TF tutorials and Roboflow's exports are kilobytes
COLUMNS = ("filename", "width", "height", "class", "xmin", "ymin", "xmax", "ymax")  # what the writer writes
REQUIRED = ("filename", "class", "xmin", "ymin", "xmax", "ymax")
SPLIT_WORDS = SPLIT_FOLDERS  # one list of split names: folders, CSV names (train_labels), the split column
WRITTEN_SPLITS = {"train": "train", "val": "valid", "test": "test"}  # Roboflow's folder names
ANNOTATIONS = "_annotations.csv"  # Roboflow's name for each split folder's CSV


@dataclass(frozen=True)
class CsvRow:
    line: int  # 1-based line of the CSV on which the row starts (the header is line 1)
    split: str | None  # the split column's value, stripped; None when there is no split column
    filename: str
    cls: str  # stripped; "" for an image with no boxes
    size: tuple[str, str] | None  # width, height as written; None without those columns
    coords: tuple[str, str, str, str]  # xmin, ymin, xmax, ymax as written, stripped


@dataclass(frozen=True)
class CsvTable:
    path: Path
    shown: str  # the CSV as messages show it
    rows: tuple[CsvRow, ...]
    problems: tuple[LabelProblem, ...]  # rows skipped: the wrong number of columns
    has_split: bool  # whether the header has a split column


def _header(record: list[str], path: Path, line: int) -> dict[str, int]:
    """Column name (lower case) → index; a DataError naming the first required column missing."""
    index = {}
    for i, name in enumerate(record):
        index.setdefault(name.strip().lower(), i)
    for name in REQUIRED:
        if name not in index:
            found = cut(", ".join(name.strip() for name in record), 120)
            raise DataError(
                f"{path}, line {line}: expected a header naming the column {name!r} "
                f"({', '.join(COLUMNS)}), found {found}"
            )
    return index


def read_table(path: Path, shown: str) -> CsvTable:
    """The rows of one TF Object Detection CSV; a DataError naming the file (and line) when it cannot be read, has
    no header, or the header misses a required column. Blank rows are skipped; a row with another number of
    columns than the header is a problem (kind "columns")."""
    text = userfiles.read_text(path, max_bytes=MAX_CSV_BYTES, what="CSV file")
    reader = csv.reader(io.StringIO(text, newline=""))
    columns, rows, problems, line = None, [], [], 0
    try:
        for record in reader:
            start, line = line + 1, reader.line_num  # a quoted field may span lines: the row starts after the last
            if not any(field.strip() for field in record):
                continue
            if columns is None:
                columns, width = _header(record, path, start), len(record)
                continue
            if len(record) < width or any(field.strip() for field in record[width:]):  # empty extras: trailing commas
                why = f"{len(record)} columns where the header has {width}; row skipped"
                problems.append(LabelProblem(shown, start, why, "columns"))
                continue
            rows.append(_row(record, columns, start))
    except csv.Error as err:
        raise DataError(f"{path}, line {reader.line_num}: not a readable CSV ({err})") from None
    if columns is None:
        raise DataError(f"{path}: expected a header row ({', '.join(COLUMNS)}), found an empty file")
    return CsvTable(path, shown, tuple(rows), tuple(problems), "split" in columns)


def _row(record: list[str], columns: dict[str, int], line: int) -> CsvRow:
    def field(name: str) -> str:
        return record[columns[name]].strip()

    size = (field("width"), field("height")) if "width" in columns and "height" in columns else None
    split = field("split") if "split" in columns else None
    coords = (field("xmin"), field("ymin"), field("xmax"), field("ymax"))
    return CsvRow(line, split, field("filename"), field("class"), size, coords)


# ── layouts ───────────────────────────────────────────────────────────────────────────────────────────────────────
@dataclass(frozen=True)
class CsvSource:
    csv: Path
    split: str | None  # None: a single file, split by its split column (else "train")
    images: tuple[Path, ...]  # where a row's image is looked for, in order


@dataclass(frozen=True)
class CsvLayout:
    root: Path  # messages show paths relative to it
    name: str
    sources: tuple[CsvSource, ...]
    class_folders: tuple[Path, ...]  # where a class list is looked for, in order


def split_word(stem: str) -> str | None:
    """The split a CSV's name gives ('train_labels' → train, 'valid' → val), or None."""
    stem = stem.lower()
    return SPLIT_WORDS.get(stem.removesuffix("_labels")) if stem.endswith("_labels") else SPLIT_WORDS.get(stem)


def _folders(*candidates: Path | None) -> tuple[Path, ...]:
    return tuple(dict.fromkeys(c for c in candidates if c is not None and c.is_dir()))


def _image_folders(root: Path, word: str, file: Path) -> tuple[Path, ...]:
    images = child_folder(root, "images")
    inside = child_folder(images, word) if images is not None else None
    return _folders(inside, child_folder(root, word), images, file.parent)


def csv_split_files(root: Path) -> dict[str, CsvSource]:
    """split → its CSV and image folders in a folder of TF Object Detection CSVs (module docstring), {} when none."""
    found: dict[str, CsvSource] = {}
    try:
        children = sorted(p for p in Path(root).iterdir() if p.is_dir())
    except OSError:
        return found
    for folder in children:  # Roboflow: train/_annotations.csv, valid/_annotations.csv, test/…
        split = SPLIT_WORDS.get(folder.name.lower())
        if split is not None and split not in found and (folder / ANNOTATIONS).is_file():
            found[split] = CsvSource(folder / ANNOTATIONS, split, (folder,))
    for place in _folders(root, child_folder(root, "annotations"), child_folder(root, "images")):
        for file in sorted(p for p in place.iterdir() if p.suffix.lower() == ".csv" and p.is_file()):
            split = split_word(file.stem)
            if split is not None and split not in found:
                word = file.stem.lower().removesuffix("_labels")
                found[split] = CsvSource(file, split, _image_folders(root, word, file))
    return dict(sorted(found.items(), key=lambda item: SPLIT_NAMES.index(item[0])))


def csv_layout(path: Path, data_dir) -> CsvLayout:
    """Where the CSVs at `path` (a CSV file, or a folder of split CSVs) and their images are; `data_dir`: a single
    file's image folder. A DataError when `path` is neither, `data_dir` is not a folder, or a folder has no train
    CSV."""
    if path.is_file():
        dataset = path.parent.parent if path.parent.name.lower() == "annotations" else None
        if data_dir is not None:
            if not Path(data_dir).is_dir():
                found = "a file" if Path(data_dir).exists() else "nothing"
                raise DataError(f"{data_dir}: expected the folder of the CSV's images, found {found}")
            folders = (Path(data_dir),)
        else:
            word = path.stem.lower().removesuffix("_labels")
            images = child_folder(path.parent, "images")
            by_split = child_folder(images, word) if images is not None else None
            folders = _folders(path.parent, images, child_folder(path.parent, word), by_split)
            if dataset is not None:  # the TF tutorials' annotations/train_labels.csv, images in ../images/train/
                folders = _folders(*folders, *_image_folders(dataset, word, path))
        places = class_folders(path.parent, dataset)
        return CsvLayout(path.parent, path.stem, (CsvSource(path, None, folders),), tuple(places))
    if not path.is_dir():
        raise DataError(f"{path}: expected a TF Object Detection CSV file or a folder of them, found nothing")
    files = csv_split_files(path)
    if "train" not in files:
        raise DataError(
            f"{path}: expected a train CSV (train_labels.csv, train.csv or train/{ANNOTATIONS}), "
            f"found {', '.join(files) or 'none'}"
        )
    places = class_folders(path, *(src.csv.parent for src in files.values()))
    return CsvLayout(path, path.resolve().name, tuple(files.values()), tuple(places))


# ── one image ─────────────────────────────────────────────────────────────────────────────────────────────────────
class ImageFinder:
    """An image by the name a row gives: that relative path in one of the folders, else its file name (case
    ignored) in the first folder that has it. Never a path outside the folders."""

    def __init__(self, folders: tuple[Path, ...]) -> None:
        self.folders = folders
        self.by_name = [{p.name.lower(): p for p in reversed(image_files(folder))} for folder in folders]

    def find(self, filename: str) -> Path | None:
        relative = PurePosixPath(filename.replace("\\", "/"))
        if not relative.is_absolute() and ".." not in relative.parts:
            found = next((f / relative for f in self.folders if (f / relative).is_file()), None)
            if found is not None:
                return found
        return next((names[relative.name.lower()] for names in self.by_name if relative.name.lower() in names), None)


# ── writing ───────────────────────────────────────────────────────────────────────────────────────────────────────
def _number(value: float) -> str:
    """A pixel coordinate as written: whole pixels without a point (Roboflow's), else up to 3 decimals."""
    text = f"{value:.3f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def write_csv(data: RawDataset, out: Path, names: dict) -> None:
    """`data` in Roboflow's "TensorFlow Object Detection CSV" layout: SPLIT/_annotations.csv (train, valid, test)
    with the images beside it, and classes.txt (the class order). Rows are filename, width, height, class, xmin,
    ymin, xmax, ymax in the image's pixels, 0-based corners (x1, y1, x2, y2 as convscope holds them); an image
    without boxes is one row with the class and corners empty. CSV has no ignore regions: they are left out."""
    for split, images in data.splits.items():
        if not images and split != "train":
            continue  # an empty split is not written (convscope.data.detection.write.written_splits)
        folder = out / WRITTEN_SPLITS[split]
        folder.mkdir(parents=True, exist_ok=True)
        rows: list[tuple] = [COLUMNS]
        for i, image in enumerate(images):
            name = names[split, i]
            shutil.copyfile(image.path, folder / name)  # the bytes as they are: no re-encoding, the source untouched
            boxes = list(zip(image.boxes.xyxy.tolist(), image.boxes.classes.tolist(), strict=True))
            if not boxes:
                rows.append((name, image.width, image.height, "", "", "", "", ""))
            for xyxy, cls in boxes:
                rows.append((name, image.width, image.height, data.classes[cls], *map(_number, xyxy)))
        with open(folder / ANNOTATIONS, "w", newline="", encoding="utf-8") as f:
            csv.writer(f, lineterminator="\n").writerows(rows)
    (out / "classes.txt").write_text("".join(f"{name}\n" for name in data.classes), encoding="utf-8")
