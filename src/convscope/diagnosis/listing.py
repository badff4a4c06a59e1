"""Every image of a data set, with its split and label, listed before any is decoded: what the doctor examines.

Three kinds of data set, told apart in this order:
- a built-in name (fashion-mnist, mnist, cifar10, cifar100): its arrays, read as training reads them;
- a detection data set in any layout convscope reads (data.detection.formats.format_of): its raw reader's images
  and boxes, in the images' own pixels, and the annotation problems the reader found;
- an image-class folder (root/train/<class>/, val/ or valid/ or validation/, test/; or root/<class>/ alone, which
  training splits itself: the split "all"). Each split's own class folders are listed — a class missing from a split
  is a finding, not an error — and every file with an image suffix, readable or not.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from convscope.data.detection.boxes import Boxes, LabelProblem
from convscope.data.folder import class_folders, image_files, split_layout
from convscope.data.load import BUILT_IN
from convscope.errors import DataError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Item:
    """One image: where it is, which split and class."""

    split: str  # "train", "val", "test", or "all" (a flat folder that training splits itself)
    name: str  # as shown: relative to the data set's folder, or "train[123]" for a built-in array
    path: Path | None  # the file; None for a built-in data set's array
    label: int | None  # index into Listing.classes (classification); None for detection
    index: int  # position within its split (built-in arrays: the row)
    boxes: Boxes | None = None  # detection: the image's boxes in its own pixels


@dataclass
class Listing:
    source: str
    layout: str
    task: str  # "classification" or "detection"
    classes: tuple[str, ...]
    items: list[Item]
    folders: dict[str, str]  # split → where its images are, as shown
    arrays: dict[str, np.ndarray] | None = None  # built-in: split → uint8 N×H×W×C
    problems: tuple[LabelProblem, ...] = ()  # detection: what the format's reader dropped or noted
    notes: list[str] = field(default_factory=list)

    def split_names(self) -> list[str]:
        return list(dict.fromkeys(item.split for item in self.items))

    def pixels(self, item: Item) -> np.ndarray | None:
        """A built-in item's image (uint8 H×W×C); None for a file (the caller decodes it)."""
        return None if self.arrays is None else self.arrays[item.split][item.index]


def list_data(data: str | Path, data_dir: str | Path | None = None) -> Listing:
    """The images of `data` (see the module docstring). Raises DataError (one line) when it is none of the kinds or
    cannot be read at all: a missing folder, a detection data set whose annotations do not parse."""
    text = str(data)
    if text in BUILT_IN:
        return _built_in(text, data_dir)
    path = Path(data)
    if not path.exists():
        raise DataError(
            f"{path}: no such file or folder; expected an image folder, a detection data set or one of "
            f"{', '.join(BUILT_IN)}"
        )
    if path.is_file() or not _looks_like_class_folders(path):
        return _detection(path, data_dir)
    return _class_folders(path)


def _looks_like_class_folders(root: Path) -> bool:
    """A folder whose (train/) subfolders hold images is an image-class folder; anything else is tried as detection
    (whose formats say what they expected when it is none of them either)."""
    from convscope.data.detection.formats import format_of

    try:
        format_of(root)
        return False
    except DataError:
        return True


def _built_in(name: str, data_dir) -> Listing:
    from convscope.data.load import load_dataset

    dataset = load_dataset(name, None if data_dir is None else str(data_dir), (32, 32, 3), seed=0, val_fraction=0)
    arrays, items = {}, []
    for split_name in ("train", "val", "test"):
        split = getattr(dataset, split_name)
        if split is None:
            continue
        arrays[split_name] = split.images
        items += [Item(split_name, f"{split_name}[{i}]", None, int(label), i) for i, label in enumerate(split.labels)]
    folders = {name: f"{dataset.source or name} ({name} arrays)" for name in arrays}
    return Listing(name, f"built-in {name}", "classification", dataset.classes, items, folders, arrays=arrays)


def _class_folders(root: Path) -> Listing:
    folders, notes = split_layout(root)
    flat = folders["train"] == root
    per_split = {("all" if flat else name): folder for name, folder in folders.items() if folder is not None}
    classes = sorted({name for folder in per_split.values() for name in class_folders(folder)})
    if not classes:
        raise DataError(f"{root}: expected one subfolder per class (or train/<class>/), found no subfolder")
    index = {name: i for i, name in enumerate(classes)}
    items, others = [], []
    for split, folder in per_split.items():
        position = 0
        for name, class_folder in class_folders(folder).items():
            for path in image_files(class_folder, recursive=True, others=others):
                items.append(Item(split, _shown(path, root), path, index[name], position))
                position += 1
    notes += _left_out(others, root)
    shown = {split: _shown(folder, root) + "/" if folder != root else "./" for split, folder in per_split.items()}
    if flat:
        layout = "image folders, one per class (training draws its own val and test splits)"
    else:
        layout = "image folders (" + " ".join(f"{_shown(f, root)}/" for f in per_split.values()) + ")"
    return Listing(str(root), layout, "classification", tuple(classes), items, shown, notes=notes)


def _detection(path: Path, data_dir) -> Listing:
    from convscope.data.detection.formats import format_of
    from convscope.data.detection.summary import reading_notes

    fmt = format_of(path)
    with reading_notes() as notes:  # splits drawn or missing, classes found: the readers' INFO lines
        raw = fmt.read_raw(path, data_dir=data_dir, seed=0, val_fraction=0.1)
    base = path if path.is_dir() else path.parent
    items = [
        Item(split, image.name, image.path, None, i, image.boxes)
        for split, images in raw.splits.items()
        for i, image in enumerate(images)
    ]
    folders = {split: _common_folder([image.path for image in images], base) for split, images in raw.splits.items()}
    return Listing(
        str(path),
        f"{fmt.name} layout",
        "detection",
        raw.classes,
        items,
        folders,
        problems=raw.problems,
        notes=notes,
    )


def _left_out(others: list[Path], root: Path) -> list[str]:
    """Notes on what a class folder holds that neither training nor the doctor reads: other files (by suffix), and
    links to folders (not followed)."""
    links = [path for path in others if path.is_dir()]
    files = Counter(path.suffix.lower() or "(no suffix)" for path in others if not path.is_dir())
    notes = []
    if files:
        kinds = ", ".join(f"{suffix} {count:,}" for suffix, count in files.most_common())
        notes.append(
            f"{sum(files.values()):,} file(s) in class folders are not read, their suffix not an image format "
            f"convscope reads ({kinds}): convert them (e.g. HEIC to JPEG) or move them out"
        )
    if links:
        shown = ", ".join(_shown(path, root) for path in links[:3]) + (", …" if len(links) > 3 else "")
        notes.append(f"{len(links):,} link(s) to folders not followed, their images not read ({shown})")
    return notes


def _shown(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def _common_folder(paths: list[Path], base: Path) -> str:
    if not paths:
        return "(none)"
    folder = Path(os.path.commonpath([path.parent for path in paths]))
    return "./" if folder == base else _shown(folder, base) + "/"
