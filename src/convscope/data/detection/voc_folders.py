"""Pascal VOC split folders: `train/`, `val/` (or `valid/`, `validation/`) and `test/` in any case, at the dataset
folder or one folder below it (`ROOT/images/train` of the TensorFlow Object Detection API tutorials, `ROOT/train`,
`ROOT/valid`, `ROOT/test` of Roboflow's "Pascal VOC" export), each holding its images with their .xml files beside
them, or an `images/` and an `annotations/` folder. The splits are the folders found (no val folder: no val split,
none drawn here). Classes are the dataset's class list (classes.txt, labels.txt or TF's label_map.pbtxt in the dataset
folder, its annotations/ folder or the folder holding the splits: convscope.data.detection.class_lists), else the
sorted names found over every split: one class list for all of them. Every file is read as in a VOC folder
(convscope.data.detection.voc_read): the same checks, difficult objects as ignore regions, problems named relative to
the dataset folder. XML files in folders nested inside a split folder are not read (one problem, kind "nested", says
how many): a split's files are those directly in its folder, as the TF tutorials' xml_to_csv.py (`glob(path +
'/*.xml')`) and Roboflow read them; nested folders are mostly copies (backups, augmentations) that would be read twice.
"""

from __future__ import annotations

import logging
from pathlib import Path

from convscope.data.detection.boxes import DetectionDataset, LabelProblem, RawDataset
from convscope.data.detection.class_lists import class_folders, class_list
from convscope.data.detection.reading import check_image_size, child_folder, shown_path
from convscope.data.detection.split_folders import split_folders
from convscope.data.detection.voc_read import (
    VocLayout,
    lint_layout,
    load_layout,
    raw_layout,
    xml_files,
)
from convscope.errors import DataError

log = logging.getLogger("convscope.data.detection.voc")


def voc_folders_layout(root: str | Path) -> VocLayout:
    """The VocLayout of the split folders at `root`: each split's XML files and its annotations and images folders.
    A DataError as split_folders says, or when a split's annotations folder has no .xml file."""
    found = split_folders(root, "voc")
    splits, folders = {}, {}
    for split, folder in found.splits.items():
        annotations = child_folder(folder, "annotations") or folder
        images = child_folder(folder, "images", "jpegimages") or folder
        splits[split] = xml_files(annotations)
        if not splits[split]:
            raise DataError(f"{annotations}: expected the Pascal VOC .xml files of the {split} split, found none")
        folders[split] = (annotations, images)
    counts = ", ".join(f"{split} {len(xmls)}" for split, xmls in splits.items())
    log.info("%s: Pascal VOC split folders in %s (XML files: %s)", found.root, found.parent, counts)
    listed = class_list(class_folders(found.root, found.parent))
    classes = listed[0] if listed is not None else None
    return VocLayout(found.root, classes, splits, folders, found.notes() + _nested(found.root, folders))


def _nested(root: Path, folders: dict[str, tuple[Path, Path]]) -> list[LabelProblem]:
    """One problem (kind "nested") when folders inside the split folders hold .xml files, which are not read."""
    nested: list[Path] = []
    for xml_folder, images in folders.values():
        for place in dict.fromkeys((xml_folder, images)):
            below = [p for p in sorted(place.iterdir()) if p.is_dir() and not p.name.startswith(".")]
            below = [p for p in below if p not in (xml_folder, images)]  # the split's own annotations/, images/
            nested += [x for folder in below for x in sorted(folder.rglob("*")) if x.suffix.lower() == ".xml"]
    if not nested:
        return []
    why = (
        f"{len(nested)} XML file(s) in folders nested inside the split folders were not read (first: "
        f"{shown_path(nested[0], root)}); a split's files are those directly in its folder: move them there to read "
        "them"
    )
    return [LabelProblem(shown_path(nested[0].parent, root), None, why, "nested")]


def lint_voc_folders(root: str | Path, image_size: int | None = None) -> list[LabelProblem]:
    """Every label problem of the VOC split folders at `root`, as lint_voc finds them in a VOC folder (images decoded,
    not kept; with `image_size` the 1-pixel check uses the letterboxed size). A DataError as voc_folders_layout."""
    if image_size is not None:
        check_image_size(image_size)
    return lint_layout(voc_folders_layout(root), image_size)


def read_voc_folders_raw(root: str | Path) -> RawDataset:
    """Every split of the VOC split folders at `root`, boxes in the images' own pixels (as read_voc_raw), difficult
    objects as ignore regions; exactly the splits found. A DataError as voc_folders_layout."""
    return raw_layout(voc_folders_layout(root), "voc-folders")


def load_voc_folders(root: str | Path, image_size: int) -> DetectionDataset:
    """The VOC split folders at `root` letterboxed to image_size×image_size (uint8 N×S×S×3), as load_voc loads a VOC
    folder; `val` is None without a val folder. A DataError when train has no image with a valid box, or as
    voc_folders_layout."""
    check_image_size(image_size)
    return load_layout(voc_folders_layout(root), image_size)
