"""COCO sources of several splits, each a JSON with its own image folder: a folder of split JSONs (train.json …,
instances_train2017.json …; convscope.data.detection.formats finds them) and Roboflow's COCO export, split folders
`train/`, `valid/` (or `val/`, `validation/`) and `test/` — any case, at the dataset folder or one folder below it —
each holding its images beside one `_annotations.coco.json` (or its only .json file; split_folders.py finds them).

Every JSON is read by convscope.data.detection.coco (load_coco, lint_coco, read_coco_raw), so the same checks apply;
the splits must list the same categories (Roboflow's supercategory entry, a category with no annotation that is the
supercategory of all the others, is left out by coco.py, and logged; decided over all the splits together: when one
split annotates it, it is kept in every split's classes). The splits are those found: no val
folder, no val split. In split folders, problems name their paths relative to the dataset folder.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from pathlib import Path

from convscope.data.detection.boxes import (
    SPLIT_NAMES,
    DetectionDataset,
    DetectionSplit,
    LabelProblem,
    RawDataset,
    echo,
)
from convscope.data.detection.coco import lint_coco, load_coco, read_coco_raw
from convscope.data.detection.reading import check_image_size, shown_path
from convscope.data.detection.split_folders import coco_json, split_folders
from convscope.errors import DataError

log = logging.getLogger("convscope.data.detection.coco")


# ── a folder of split JSONs ───────────────────────────────────────────────────────────────────────────────────────
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


def coco_images_folder(root: Path, json_path: Path, data_dir: str | Path | None) -> Path:
    """The image folder of a split JSON: `data_dir` when given, else images/ or the folder named like the JSON
    (COCO 2017's train2017/ for instances_train2017.json), else images/."""
    if data_dir is not None:
        return Path(data_dir)
    stem = json_path.stem.lower().removeprefix("instances_")
    for folder in (root / "images", root / stem):  # ours (file_name SPLIT/NAME), COCO 2017's train2017/ …
        if folder.is_dir():
            return folder
    return root / "images"


def same_classes(classes: tuple[str, ...] | None, names: tuple[str, ...], path: Path) -> None:
    """A DataError when a split JSON's categories (`names`) differ from the train JSON's (`classes`, None: none yet)."""
    if classes is not None and names != classes:
        raise DataError(f"{path}: categories {list(names)} differ from the train JSON's {list(classes)}")


def _shown(problems, root: Path | None) -> list[LabelProblem]:
    """The problems with their paths relative to `root` (None: as they are)."""
    if root is None:
        return list(problems)
    return [dataclasses.replace(p, path=shown_path(Path(p.path), root)) for p in problems]


def _ordered(files: dict[str, Path]) -> list[str]:
    return [name for name in SPLIT_NAMES if name in files]


def _parent_lacking(names: dict[str, tuple[str, ...]]) -> list[str]:
    """The splits whose classes lack one name that another split has and that is all they lack (Roboflow's parent
    category, left out of a JSON that does not annotate it, kept in one that does): they are read again keeping it.
    Empty when the classes agree, or differ otherwise (same_classes then says how)."""
    most = max(names.values(), key=len)
    lacking = [split for split, found in names.items() if found != most]
    if not lacking or any(len(names[s]) != len(most) - 1 or not set(names[s]) < set(most) for s in lacking):
        return []
    (extra,) = set(most) - set(names[lacking[0]])
    having = ", ".join(split for split in names if split not in lacking)
    log.info(
        "category %s is annotated in %s: kept in the classes of %s too (read again keeping it), as one class list "
        "serves every split",
        echo(extra, 40),
        having,
        ", ".join(lacking),
    )
    return lacking


def load_coco_splits(
    source: Path, files: dict[str, Path], images: dict[str, Path], image_size: int, *, root: Path | None = None
) -> DetectionDataset:
    """Split → JSON (`files`, train among them) and split → image folder (`images`) loaded as one DetectionDataset
    letterboxed to image_size (uint8 N×S×S×3); splits not in `files` are None. With `root`, problems name paths
    relative to it. A DataError when the splits' categories differ, or as load_coco."""
    check_image_size(image_size)
    read = {name: load_coco(files[name], images[name], image_size) for name in _ordered(files)}
    for name in _parent_lacking({name: names for name, (_, names) in read.items()}):
        read[name] = load_coco(files[name], images[name], image_size, keep_parent=True)
    splits: dict[str, DetectionSplit] = {}
    classes = None
    for name, (split, names) in read.items():
        same_classes(classes, names, files[name])
        splits[name], classes = dataclasses.replace(split, problems=tuple(_shown(split.problems, root))), names
    problems = tuple(problem for split in splits.values() for problem in split.problems)
    return DetectionDataset(
        source.name, classes, splits["train"], splits.get("val"), splits.get("test"), str(source), problems
    )


def lint_coco_splits(
    files: dict[str, Path], images: dict[str, Path], image_size: int | None = None, *, root: Path | None = None
) -> list[LabelProblem]:
    """Every problem of each split JSON and its images, in the order of `files`, as lint_coco finds them; with
    `root`, paths relative to it. A DataError as lint_coco."""
    found = [p for name, file in files.items() for p in lint_coco(file, images[name], image_size)]
    return _shown(found, root)


def read_coco_splits(
    format_name: str, source: str, files: dict[str, Path], images: dict[str, Path], *, root: Path | None = None
) -> RawDataset:
    """Every split's images with their boxes in their own pixels (read_coco_raw), as a RawDataset of `format_name`
    from `source`; with `root`, problems and images name paths relative to it. A DataError when the categories
    differ."""
    read = {name: read_coco_raw(files[name], images[name]) for name in _ordered(files)}
    for name in _parent_lacking({name: names for name, (names, _, _) in read.items()}):
        read[name] = read_coco_raw(files[name], images[name], keep_parent=True)
    classes, splits, problems = None, {}, []
    for name, (names, raw, found) in read.items():
        same_classes(classes, names, files[name])
        if root is not None:  # named relative to the dataset folder, split folder included: 'test/a.jpg'
            raw = tuple(dataclasses.replace(image, name=shown_path(image.path, root)) for image in raw)
        classes, splits[name] = names, raw
        problems += _shown(found, root)
    return RawDataset(format_name, classes, splits, source, tuple(problems))


# ── Roboflow's COCO export: a JSON in each split folder ──────────────────────────────────────────────────────────
def coco_folders(root: str | Path) -> tuple[Path, dict[str, Path], dict[str, Path], list[LabelProblem]]:
    """(the dataset folder, split → its JSON, split → its folder, the notes on empty split folders left out) of COCO
    split folders. A DataError as split_folders says, or when a split folder has several JSONs and no
    _annotations.coco.json."""
    found = split_folders(root, "coco")
    files = {split: coco_json(folder) for split, folder in found.splits.items()}
    return found.root, files, found.splits, found.notes()


def load_coco_folders(root: str | Path, image_size: int) -> DetectionDataset:
    """COCO split folders letterboxed to image_size (as load_coco_splits); `val` is None without a val folder."""
    root, files, folders, notes = coco_folders(root)
    data = load_coco_splits(root, files, folders, image_size, root=root)
    return dataclasses.replace(data, problems=(*notes, *data.problems))


def lint_coco_folders(root: str | Path, image_size: int | None = None) -> list[LabelProblem]:
    """Every problem of the COCO split folders at `root`, paths relative to it (as lint_coco_splits)."""
    root, files, folders, notes = coco_folders(root)
    return notes + lint_coco_splits(files, folders, image_size, root=root)


def read_coco_folders_raw(root: str | Path) -> RawDataset:
    """The COCO split folders at `root` in the images' own pixels (as read_coco_splits): exactly the splits found."""
    root, files, folders, notes = coco_folders(root)
    data = read_coco_splits("coco-folders", str(root), files, folders, root=root)
    return dataclasses.replace(data, problems=(*notes, *data.problems))
