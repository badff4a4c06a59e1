"""The detection data formats — YOLO, COCO, Pascal VOC, their split-folder layouts and the TF Object Detection
CSV — in one table, `FORMATS`: for each, how a path is
recognised, how it loads for training (letterboxed to S×S), lints, reads raw (boxes in the images' own pixels) and is
written. `format_of(path)` is the one place that picks a format from a path: `load_detection` (training, evaluation),
`convscope detect lint` and `convscope detect convert` all ask it.

Recognised in this order: a .json file is COCO, a .yaml or .yml file YOLO (its data.yaml); a folder with a data.yaml
is YOLO, a folder of COCO split JSONs (`coco_split_files`: train.json …, or instances_train2017.json …, there or in
annotations/) COCO, a folder with .xml files in its Annotations folder, or beside the images, Pascal VOC. A .csv file
is the TF Object Detection CSV, and so is a folder of split CSVs (`csv_split_files`: train_labels.csv … there, in
annotations/ or images/, or Roboflow's train/_annotations.csv …; convscope.data.detection.tfcsv). Anything else is a
DataError naming them.

A folder that is none of these, with split folders (`train/`, `val/` or `valid/` or `validation/`, `test/`, any case)
there or one folder below it, is read by the split folders' labels: .xml files (beside the images, or in each split's
annotations/) are "voc-folders" (convscope.data.detection.voc_folders), a COCO JSON in each (Roboflow's
_annotations.coco.json) "coco-folders" (convscope.data.detection.coco_folders); split folders in mixed formats, or
without train/, are a DataError naming the folder.

A COCO source is one JSON — one split, whose images are in `data_dir` (default: images/ beside it when there is one,
else the JSON's own folder, as Roboflow's train/_annotations.coco.json has them; when none of its images is there, the
DataError says to give their folder with --data-dir); training holds out
val_fraction of it (seeded) for validation, and the same images serve as the test split — or a folder of split JSONs,
each with its own images (`coco_images_folder`), a train JSON required to load or convert it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from convscope.data.detection.boxes import (
    DetectionDataset,
    LabelProblem,
    RawDataset,
    hold_out,
)
from convscope.data.detection.coco import (
    coco_json_images,
    lint_coco,
    load_coco,
    read_coco_raw,
)
from convscope.data.detection.coco_folders import (
    coco_images_folder,
    coco_split_files,
    lint_coco_folders,
    lint_coco_splits,
    load_coco_folders,
    load_coco_splits,
    read_coco_folders_raw,
    read_coco_splits,
)
from convscope.data.detection.reading import child_folder
from convscope.data.detection.split_folders import holds_split_folders
from convscope.data.detection.tfcsv import lint_csv, load_csv, read_csv_raw
from convscope.data.detection.tfcsv_files import csv_split_files, write_csv
from convscope.data.detection.voc import lint_voc, load_voc, read_voc_raw
from convscope.data.detection.voc_folders import lint_voc_folders, load_voc_folders, read_voc_folders_raw
from convscope.data.detection.write import write_coco, write_coco_folders, write_voc, write_voc_folders, write_yolo
from convscope.data.detection.yolo import lint_yolo, load_yolo, read_yolo_raw
from convscope.errors import DataError

log = logging.getLogger("convscope.detect")

EXPECTED = (
    "expected a YOLO dataset folder (with data.yaml), a Pascal VOC folder (Annotations/*.xml, or XML files "
    "beside their images), a COCO .json file, a TF Object Detection .csv file (or a folder of split CSVs), or "
    "split folders (train/, val/ or valid/, test/) of Pascal VOC .xml files or a COCO .json file each"
)


@dataclass(frozen=True)
class Format:
    """One detection data format: how a path is recognised, and its readers and writer.

    load(path, image_size, *, data_dir, seed, val_fraction) → DetectionDataset, images uint8 N×S×S×3 (S = image_size)
    lint(path, *, data_dir) → every LabelProblem, notes included, images decoded but not kept
    read_raw(path, *, data_dir, seed, val_fraction) → RawDataset, each image's boxes in its own pixels
    write(data, out, names) writes a RawDataset into the folder `out`, (split, index) → file name given by `names`
    `data_dir`: a COCO source's image folder (others ignore it); `seed`, `val_fraction`: the drawn splits of a source
    that has none (a COCO JSON, a VOC folder without ImageSets).
    """

    name: str  # a key of FORMATS ("yolo", "coco", "voc", …): `detect convert --to`'s word and RawDataset.format
    suffixes: tuple[str, ...]  # a file whose suffix (lower case) is one of these is of this format
    holds: Callable[[Path], bool]  # whether a folder is of this format
    ignore_regions: bool  # whether it holds ignore regions (COCO iscrowd, VOC difficult); YOLO has none
    load: Callable[..., DetectionDataset]
    lint: Callable[..., list[LabelProblem]]
    read_raw: Callable[..., RawDataset]
    write: Callable[[RawDataset, Path, dict], None]


def format_of(path: str | Path, *, by_name: bool = False) -> Format:
    """The format of the dataset at `path` (the module docstring says how it is recognised); a DataError naming the
    three formats otherwise. With `by_name`, a path whose suffix names a format is of it even before it is found to be
    a file, so that its own reader says what is missing (as training words it)."""
    path = Path(path)
    if by_name or path.is_file():
        for fmt in FORMATS.values():
            if path.suffix.lower() in fmt.suffixes:
                return fmt
    if not path.is_dir():
        raise DataError(f"{path}: {EXPECTED}, found {'a file' if path.exists() else 'nothing'}")
    for fmt in FORMATS.values():
        if fmt.holds(path):
            return fmt
    raise DataError(f"{path}: {EXPECTED}, found a folder with none of them")


def _has_voc_xml(folder: Path) -> bool:
    folders = [found for found in (child_folder(folder, "annotations"), folder) if found is not None]
    return any(p.suffix.lower() == ".xml" for found in folders for p in found.iterdir())


# ── a COCO source: one JSON, or a folder of split JSONs ───────────────────────────────────────────────────────────
def _split_jsons(root: Path) -> dict[str, Path]:
    """split → JSON of a folder of COCO split files, which must have a train JSON to be loaded or converted."""
    files = coco_split_files(root)
    if "train" not in files:
        raise DataError(f"{root}: expected a train JSON among the COCO split files, found {sorted(files)}")
    return files


def _hint(data_dir) -> str | None:
    """What a COCO JSON's error says when none of its images is in the folder chosen for it (None: --data-dir given)."""
    return None if data_dir else "give their folder with --data-dir (default: images/ beside the JSON, else its folder)"


def _load_coco(path: Path, image_size: int, *, data_dir, seed: int, val_fraction: float) -> DetectionDataset:
    if not path.is_dir():
        split, classes = load_coco(path, coco_json_images(path, data_dir), image_size, hint=_hint(data_dir))
        train, held = hold_out(split, val_fraction, seed)
        log.info("%s: %d images for training, %d held out for validation and test", path, len(train), len(held))
        return DetectionDataset(path.stem, classes, train, held, held, str(path), split.problems)
    files = _split_jsons(path)
    images = {name: coco_images_folder(path, file, data_dir) for name, file in files.items()}
    return load_coco_splits(path, files, images, image_size)


def _lint_coco(path: Path, *, data_dir) -> list[LabelProblem]:
    if not path.is_dir():
        return lint_coco(path, coco_json_images(path, data_dir), hint=_hint(data_dir))
    files = coco_split_files(path)  # train.json, val.json, test.json: each JSON with its own images
    return lint_coco_splits(files, {name: coco_images_folder(path, file, data_dir) for name, file in files.items()})


def _read_coco_raw(path: Path, *, data_dir, seed: int, val_fraction: float) -> RawDataset:
    if not path.is_dir():
        classes, images, problems = read_coco_raw(path, coco_json_images(path, data_dir), hint=_hint(data_dir))
        return RawDataset("coco", classes, {"train": images}, str(path), tuple(problems))
    files = _split_jsons(path)
    source = str(files["train"]) if len(files) == 1 else str(path)
    folders = {name: coco_images_folder(path, file, data_dir) for name, file in files.items()}
    return read_coco_splits("coco", source, files, folders)


# ── the table ─────────────────────────────────────────────────────────────────────────────────────────────────────
FORMATS: dict[str, Format] = {
    "yolo": Format(
        "yolo",
        (".yaml", ".yml"),
        holds=lambda folder: (folder / "data.yaml").is_file(),
        ignore_regions=False,
        load=lambda path, image_size, **_: load_yolo(path, image_size),
        lint=lambda path, **_: lint_yolo(path),
        read_raw=lambda path, **_: read_yolo_raw(path),
        write=write_yolo,
    ),
    "coco": Format(
        "coco",
        (".json",),
        holds=lambda folder: bool(coco_split_files(folder)),
        ignore_regions=True,
        load=_load_coco,
        lint=_lint_coco,
        read_raw=_read_coco_raw,
        write=write_coco,
    ),
    "voc": Format(
        "voc",
        (),
        holds=_has_voc_xml,
        ignore_regions=True,
        load=lambda path, image_size, *, seed, val_fraction, **_: load_voc(
            path, image_size, seed=seed, val_fraction=val_fraction
        ),
        lint=lambda path, **_: lint_voc(path),
        read_raw=lambda path, *, seed, val_fraction, **_: read_voc_raw(path, seed=seed, val_fraction=val_fraction),
        write=write_voc,
    ),
    "voc-folders": Format(
        "voc-folders",
        (),
        holds=lambda folder: holds_split_folders(folder, "voc"),
        ignore_regions=True,
        load=lambda path, image_size, **_: load_voc_folders(path, image_size),
        lint=lambda path, **_: lint_voc_folders(path),
        read_raw=lambda path, **_: read_voc_folders_raw(path),
        write=write_voc_folders,
    ),
    "coco-folders": Format(
        "coco-folders",
        (),
        holds=lambda folder: holds_split_folders(folder, "coco"),
        ignore_regions=True,
        load=lambda path, image_size, **_: load_coco_folders(path, image_size),
        lint=lambda path, **_: lint_coco_folders(path),
        read_raw=lambda path, **_: read_coco_folders_raw(path),
        write=write_coco_folders,
    ),
    "csv": Format(
        "csv",
        (".csv",),
        holds=lambda folder: bool(csv_split_files(folder)),
        ignore_regions=False,
        load=lambda path, image_size, *, data_dir, **_: load_csv(path, image_size, data_dir=data_dir),
        lint=lambda path, *, data_dir, **_: lint_csv(path, data_dir=data_dir),
        read_raw=lambda path, *, data_dir, **_: read_csv_raw(path, data_dir=data_dir),
        write=write_csv,
    ),
}
