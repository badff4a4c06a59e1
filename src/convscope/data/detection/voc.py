"""Pascal VOC detection datasets: one XML file per image, as LabelImg writes them and the TensorFlow Object Detection
API reads them.

Layouts (folder names in any case): `DIR/Annotations/*.xml` with the images in `DIR/JPEGImages/` (the VOC devkit's),
`DIR/annotations/` beside `DIR/images/`, or the XML files beside their images in one folder. An XML file's image is
the one its `<filename>` names (case and extension may differ: `a.JPG` finds a.jpg, or a.png when that is the only
`a`), else the one with the XML file's own stem; when both exist and differ (a LabelImg XML copied and renamed,
`<filename>` left as it was), the image with the XML file's own stem wins, as LabelImg pairs them (it opens STEM.xml
for STEM.jpg), with a problem of kind "filename" naming both. A second XML file labelling the same image is skipped
(kind "claimed", naming both). Splits come from `ImageSets/Main/{train,val,trainval,test}.txt` (train is train.txt, or
trainval.txt less val.txt when there is no train.txt); without ImageSets a seeded draw holds out `val_fraction` for
val and as much for test. Classes are the dataset's class list (classes.txt, labels.txt or TF's label_map.pbtxt, in
the dataset folder or its annotations/ folder: convscope.data.detection.class_lists, one lookup for every layout;
objects of other classes are problems), else the sorted names found. `<difficult>1</difficult>` objects are ignore
regions (`DetectionSplit.crowds`, as COCO's iscrowd): neither targets nor, in scoring, false positives — as the VOC
devkit and mmdetection treat them.

Coordinates (1-based, inclusive: a box covers [xmin − 1, xmax] in convscope's pixels, detectron2's conversion), the
checks of each object, and the safe parsing are in voc_xml.py; reading a layout (shared with the VOC split folders of
convscope.data.detection.voc_folders) is voc_read.py's. A box running past the image is clipped
(one note, kind "clipped", says how many); the decoded image's size is used when `<size>` disagrees (a problem).
Decoding and the lint's other conventions are the reading kit's (convscope.data.detection.reading).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from convscope.data.detection.boxes import (
    SPLIT_NAMES,
    DetectionDataset,
    LabelProblem,
    RawDataset,
    cut,
)
from convscope.data.detection.class_lists import class_folders, class_list, read_lines
from convscope.data.detection.reading import check_image_size, child_folder, shown_path
from convscope.data.detection.voc_read import (
    VocLayout,
    lint_layout,
    load_layout,
    raw_layout,
    xml_files,
)
from convscope.errors import DataError

log = logging.getLogger(__name__)


def _set_entry(text: str, xmls: dict[str, Path]) -> tuple[str, Path | None]:
    """(the id, its XML file or None) of one ImageSets line: the whole line (stripped) when an annotation file has
    that stem ('BloodImage 00002', 'blood, sample 3'), else the line less a per-class file's last column
    ('a b  -1'), else its first word (the devkit's ids have no space)."""
    whole = text.strip()
    words = whole.split()
    candidates = [whole]
    if len(words) > 1 and words[-1].lstrip("-").isdigit():
        candidates.append(whole[: whole.rfind(words[-1])].rstrip())
    candidates.append(words[0])
    for candidate in candidates:
        if (xml := xmls.get(candidate.lower())) is not None:
            return candidate, xml
    return candidates[1] if len(candidates) > 2 else whole, None  # the id as the line gives it


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
        lines = read_lines(path, "the image set")
        ids[name] = {}  # XML file → None: a set that keeps the file's order
        for line, text in enumerate(lines, start=1):
            if not text.split():
                continue
            image_id, xml = _set_entry(text, xmls)
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


def _layout(root: str | Path, seed: int, val_fraction: float) -> VocLayout:
    root = Path(root)
    if not root.is_dir():
        raise DataError(
            f"{root}: expected a Pascal VOC dataset folder, found {'a file' if root.exists() else 'nothing'}"
        )
    annotations = child_folder(root, "annotations") or root
    images = child_folder(root, "jpegimages", "images") or annotations
    found_xml = xml_files(annotations)
    if not found_xml:
        raise DataError(f"{annotations}: expected Pascal VOC .xml annotation files, found none")
    listed = class_list(class_folders(root, annotations))
    classes = listed[0] if listed is not None else None
    found = _image_sets(root, annotations, {p.stem.lower(): p for p in found_xml})
    if found is None:
        splits, problems = _drawn_splits(found_xml, seed, val_fraction), []
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
        if unlisted := len(set(found_xml) - {xml for files in splits.values() for xml in files}):
            log.info("%s: %d annotation file(s) are in no ImageSets/Main list and were not read", root, unlisted)
    return VocLayout(root, classes, splits, dict.fromkeys(splits, (annotations, images)), problems)


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
    return lint_layout(_layout(root, seed, val_fraction), image_size)


def read_voc_raw(root: str | Path, *, seed: int = 0, val_fraction: float = 0.1) -> RawDataset:
    """Every split of the VOC dataset at `root`, each image's boxes in its own pixels (x1, y1, x2, y2 float32, pixel i
    covering [i, i+1); the module docstring says how VOC's 1-based coordinates map), difficult objects as ignore
    regions, after the same lint as `lint_voc` (its problems are in `problems`). A DataError as for lint_voc."""
    return raw_layout(_layout(root, seed, val_fraction), "voc")


def load_voc(root: str | Path, image_size: int, *, seed: int = 0, val_fraction: float = 0.1) -> DetectionDataset:
    """The Pascal VOC dataset at `root`, images letterboxed to image_size×image_size (uint8 N×S×S×3), boxes in their
    pixels; difficult objects in each split's `crowds` (ignore regions in scoring). Without ImageSets, `seed` and
    `val_fraction` draw the splits (logged). Problems are logged (a one-line summary) and returned in `problems`; a
    DataError when train has no image with a valid box, or as for lint_voc.
    """
    check_image_size(image_size)
    return load_layout(_layout(root, seed, val_fraction), image_size)
