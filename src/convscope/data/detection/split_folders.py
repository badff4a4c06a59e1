"""Split folders: a dataset whose splits are folders named train/ (or training/), val/ (or valid/, validation/, eval/)
and test/ (or testing/), in any case, at the dataset folder itself or one folder below it (`ROOT/train` as Roboflow
exports, `ROOT/images/train` as the TensorFlow Object Detection API tutorials lay it out). Each split folder holds
its labels in one format:

  voc   .xml files beside the images, or in the split's annotations/ folder beside its images/ (voc_folders.py)
  coco  one COCO JSON beside the images: Roboflow's _annotations.coco.json, or the only .json there (coco_folders.py)

`find_split_folders` finds them (None when there are none); `split_folders(root, kind)` checks they are all of one
format and hold a train split, else a one-line DataError naming the folder and what was expected. A val or test
folder with no image and no labels (Roboflow's empty test/ with a JSON of no images, a test/ kept for later) is
left out of the splits, as if absent, with a note (kind "empty-split", `SplitFolders.notes`).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path

from convscope import userfiles
from convscope.data.detection.boxes import SPLIT_NAMES, LabelProblem
from convscope.data.detection.reading import child_folder, shown_path
from convscope.data.folder import image_files
from convscope.errors import DataError

log = logging.getLogger("convscope.data.detection")
# Folder name (lower case) → split; also the split words of the CSV reader (tfcsv_files: names and split column).
SPLIT_FOLDERS = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "eval": "val",
}
SPLIT_FOLDERS |= {"test": "test", "testing": "test"}
ROBOFLOW_JSON = "_annotations.coco.json"  # the JSON of each split folder of Roboflow's COCO export
_SMALL_JSON = 2**20  # bytes: a JSON of no images is a few hundred; a bigger one is read by the reader, not here
KIND_WORDS = {"voc": "Pascal VOC .xml files", "coco": "a COCO .json file", "both": "both .xml and .json files"}


@dataclass(frozen=True)
class SplitFolders:
    root: Path  # the dataset folder
    parent: Path  # the folder holding the split folders: root, or one folder below it
    splits: dict[str, Path]  # split ("train", "val", "test") → its folder, in SPLIT_NAMES order
    kinds: dict[str, str | None]  # split → "voc", "coco", "both" (XML and JSON) or None (neither)
    wrong: str = ""  # what makes it unreadable (two folders for one split, …), "" when nothing: split_folders raises it
    empty: tuple[Path, ...] = ()  # val or test folders with no image and no label, left out of `splits`

    def notes(self) -> list[LabelProblem]:
        """One note (kind "empty-split") per split folder left out as empty, its path relative to `root`."""
        why = "split folder with no image and no labels: read as no {} split"
        return [
            LabelProblem(shown_path(f, self.root), None, why.format(SPLIT_FOLDERS[f.name.lower()]), "empty-split")
            for f in self.empty
        ]


def _listing(folder: Path) -> list[Path]:
    """The entries of a folder, sorted, hidden ones (macOS's ._a.json, .DS_Store) left out."""
    try:
        return sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    except OSError:  # unreadable: as good as empty here; the readers name the folder when they need it
        return []


def _splits_in(root: Path, folder: Path) -> SplitFolders | None:
    """The split folders among `folder`'s folders, or None; two folders for one split are `wrong`."""
    found: dict[str, Path] = {}
    wrong = ""
    for child in _listing(folder):
        split = SPLIT_FOLDERS.get(child.name.lower())
        if split is None or not child.is_dir():
            continue
        if split in found:
            both = f"{found[split].name}/ and {child.name}/"
            wrong = wrong or f"{folder}: {both} are both the {split} split; expected one folder for it"
            continue
        found[split] = child
    if not found:
        return None
    empty = tuple(found.pop(split) for split in ("val", "test") if split in found and is_empty_split(found[split]))
    splits = {split: found[split] for split in SPLIT_NAMES if split in found}
    kinds = {split: split_kind(path) for split, path in splits.items()}
    return SplitFolders(root, folder, splits, kinds, wrong, empty)


def is_empty_split(folder: Path) -> bool:
    """Whether a split folder holds no image (there, or in its images/ folder), no .xml file and no COCO JSON that
    lists an image: Roboflow exports an empty test/ with a JSON of no images; people keep an empty test/ for later."""
    images = child_folder(folder, "images", "jpegimages")
    if image_files(folder) or (images is not None and image_files(images)) or _has_xml(folder):
        return False
    for path in (p for p in _listing(folder) if p.suffix.lower() == ".json" and p.is_file()):
        if path.stat().st_size > _SMALL_JSON:
            return False
        try:
            doc = userfiles.read_json(path, what="COCO annotations JSON")
        except DataError:
            return False  # the reader names what is wrong with it
        if not isinstance(doc, dict) or doc.get("images") != [] or doc.get("annotations", []) != []:
            return False
    return True


def coco_json(folder: Path) -> Path | None:
    """The COCO JSON of a split folder: _annotations.coco.json (any case), else its only .json file, else None.
    A DataError when it has several .json files and none is _annotations.coco.json."""
    jsons = [p for p in _listing(folder) if p.suffix.lower() == ".json" and p.is_file()]
    named = [p for p in jsons if p.name.lower() == ROBOFLOW_JSON]
    if named or len(jsons) <= 1:
        return (named or jsons or [None])[0]
    listed = ", ".join(p.name for p in jsons[:4]) + (", …" if len(jsons) > 4 else "")
    raise DataError(f"{folder}: expected one COCO JSON ({ROBOFLOW_JSON}), found {len(jsons)}: {listed}")


def _has_xml(folder: Path) -> bool:
    annotations = child_folder(folder, "annotations")
    return any(p.suffix.lower() == ".xml" for found in (annotations, folder) if found for p in _listing(found))


def split_kind(folder: Path) -> str | None:
    """What the labels of one split folder are: "voc", "coco", "both" or None (neither)."""
    has_json = any(p.suffix.lower() == ".json" and p.is_file() for p in _listing(folder))
    has_xml = _has_xml(folder)
    return "both" if has_json and has_xml else "coco" if has_json else "voc" if has_xml else None


def find_split_folders(root: Path) -> SplitFolders | None:
    """The split folders of `root`: there, else in the one folder below it whose split folders hold labels (XML or
    JSON); None when there are none. When two folders below it hold such split folders, the first is returned
    with its `wrong` saying so. Raises nothing: the format table asks every folder it is given."""
    if not root.is_dir():
        return None
    if (found := _splits_in(root, root)) is not None:
        return found
    below = [found for child in _listing(root) if child.is_dir() and (found := _splits_in(root, child)) is not None]
    labelled = [found for found in below if any(found.kinds.values())]
    if len(labelled) > 1:
        names = ", ".join(f"{found.parent.name}/" for found in labelled)
        wrong = f"{root}: split folders (train/, val/, test/) in {names}; expected them in one folder"
        return dataclasses.replace(labelled[0], wrong=labelled[0].wrong or wrong)
    return labelled[0] if labelled else None


def holds_split_folders(root: Path, kind: str) -> bool:
    """Whether `root` has split folders any of which holds labels of `kind` ("voc" or "coco")."""
    found = find_split_folders(root)
    return found is not None and any(k in (kind, "both") for k in found.kinds.values())


def split_folders(root: str | Path, kind: str) -> SplitFolders:
    """The split folders of `root`, every one holding labels of `kind` ("voc" or "coco"), train among them.

    A DataError (one line naming the folder and what was expected) when `root` is not a folder, has no split
    folders, has a split folder in another format (or with no labels), or has no train folder."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: expected a folder of split folders, found {'a file' if root.exists() else 'nothing'}")
    found = find_split_folders(root)
    if found is None:
        raise DataError(f"{root}: expected split folders train/, val/ (or valid/) and test/ there or one folder below")
    if found.wrong:
        raise DataError(found.wrong)
    if other := {split: k for split, k in found.kinds.items() if k != kind}:
        seen = "; ".join(f"{found.splits[s].name}/ has {KIND_WORDS.get(k, 'no labels')}" for s, k in other.items())
        raise DataError(f"{found.parent}: expected {KIND_WORDS[kind]} in every split folder, found: {seen}")
    if "train" not in found.splits:
        names = ", ".join(f"{folder.name}/" for folder in found.splits.values())
        raise DataError(f"{found.parent}: expected a train/ split folder beside {names}")
    for note in found.notes():
        log.info("%s: %s", note.path, note.message)
    return found
