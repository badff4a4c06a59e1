"""`convscope detect convert`: a detection dataset from one format to another — YOLO, COCO, Pascal VOC — in the images'
own pixels (not letterboxed), splits kept, images copied byte for byte (the source is never changed).

Every reader's raw mode (`read_yolo_raw`, `read_coco_raw`, `read_voc_raw`) lints as loading does: the rows it drops
are not written, and the summary counts them. What is written, as the usual tools read it:
  yolo  data.yaml (train/val/test folders, nc, names), images/SPLIT/NAME, labels/SPLIT/STEM.txt with `class cx cy w h`
        normalised to [0, 1] (6 decimals). YOLO has no ignore regions: COCO crowds and VOC difficult objects are left
        out (counted in the summary), as Ultralytics' VOC.yaml leaves difficult objects out.
  coco  SPLIT.json per split and images/SPLIT/NAME; `file_name` is SPLIT/NAME, so `--data OUT/train.json` finds its
        images in OUT/images. bbox [x, y, w, h] in pixels (3 decimals), category ids from 1 in class order, iscrowd 1
        for ignore regions (mmdetection's VOC converter does the same with difficult objects).
  voc   Annotations/STEM.xml, JPEGImages/NAME, ImageSets/Main/{train,val,trainval,test}.txt and classes.txt (the class
        order, read back by load_voc). Coordinates are 1-based and inclusive, whole pixels: xmin = round(x1) + 1,
        xmax = round(x2) (data/detection/voc_xml.py), so boxes move by at most half a pixel; VOC needs xmax > xmin,
        so a box under 2 pixels wide (or high) grows to 2.
A COCO source is one JSON (split "train"; images in --data-dir, default images/ beside it), or a folder of split JSONs
(train.json, val.json, test.json, or instances_train2017.json …, there or in annotations/). File names are unique in
the output: the second a.jpg (from another split or folder) becomes a_2.jpg.

Everything is written into a temporary folder beside OUT, which is renamed to OUT at the end: a failure leaves no
half-written OUT (the temporary folder is removed).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree

import yaml

from convscope.data.detection.boxes import (
    SPLIT_NAMES,
    RawDataset,
    RawImage,
    coco_split_files,
    dataset_format,
    lint_summary,
)
from convscope.data.detection.coco import coco_images_folder, read_coco_raw
from convscope.data.detection.voc import read_voc_raw
from convscope.data.detection.yolo import read_yolo_raw
from convscope.errors import DataError, OutputError

FORMATS = ("yolo", "coco", "voc")


@dataclass(frozen=True)
class ConvertSummary:
    source_format: str
    target: str
    out: Path
    splits: dict[str, tuple[int, int, int]]  # split → (images, boxes, classes with a box) written
    problems: str  # lint_summary of what the readers dropped ("no problems")
    dropped: int  # label problems whose rows were not written (notes not counted)
    ignore_dropped: int  # ignore regions the target cannot hold (YOLO)

    def line(self) -> str:
        """One line: what went where, per split, and what was left out."""
        parts = [f"{s} {i:,} images, {b:,} boxes, {c} classes" for s, (i, b, c) in self.splits.items()]
        text = f"{self.source_format} → {self.target} in {self.out}: " + "; ".join(parts)
        dropped = f"{self.dropped} label problem(s) dropped ({self.problems})" if self.dropped else "no label problems"
        text += f"; {dropped}"
        if self.ignore_dropped:
            text += f"; {self.ignore_dropped} ignore region(s) (crowd/difficult) not written: YOLO has none"
        return text


# ── reading ───────────────────────────────────────────────────────────────────────────────────────────────────────
def read_raw(src: str | Path, data_dir: str | Path | None = None, *, seed: int = 0, val_fraction: float = 0.1):
    """A YOLO folder (or data.yaml), a Pascal VOC folder, a COCO JSON or a folder of COCO split JSONs, read as a
    `RawDataset` (each image's boxes in its own pixels). `data_dir`: a COCO source's image folder. `seed` and
    `val_fraction`: a VOC folder without ImageSets is split as load_voc splits it. DataError when it cannot be read."""
    path = Path(src)
    kind = dataset_format(path)
    if kind == "coco-splits":
        files = coco_split_files(path)
        if "train" not in files:
            raise DataError(f"{path}: expected a train JSON among the COCO split files, found {sorted(files)}")
        return _read_coco_splits(path, files, data_dir)
    if kind == "coco":
        images = Path(data_dir) if data_dir is not None else path.parent / "images"
        return _read_coco_splits(path.parent, {"train": path}, images)
    if kind == "voc":
        return read_voc_raw(path, seed=seed, val_fraction=val_fraction)
    return read_yolo_raw(path)


def _read_coco_splits(root: Path, files: dict[str, Path], data_dir) -> RawDataset:
    classes, splits, problems = None, {}, []
    for split in (s for s in SPLIT_NAMES if s in files):
        names, images, found = read_coco_raw(files[split], coco_images_folder(root, files[split], data_dir))
        if classes is not None and names != classes:
            raise DataError(f"{files[split]}: categories {list(names)} differ from the train JSON's {list(classes)}")
        classes, splits[split] = names, images
        problems += found
    source = str(files["train"]) if len(files) == 1 else str(root)
    return RawDataset("coco", classes, splits, source, tuple(problems))


# ── writing ───────────────────────────────────────────────────────────────────────────────────────────────────────
def _unique_names(data: RawDataset) -> dict[tuple[str, int], str]:
    """(split, index) → a file name unique in the whole output, stems compared without case (VOC ids, label files)."""
    taken, names = set(), {}
    for split, images in data.splits.items():
        for i, image in enumerate(images):
            stem, suffix, n = image.path.stem, image.path.suffix, 1
            candidate = stem
            while candidate.lower() in taken:
                n += 1
                candidate = f"{stem}_{n}"
            taken.add(candidate.lower())
            names[split, i] = candidate + suffix
    return names


def _copy(image: RawImage, folder: Path, name: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(image.path, folder / name)  # the bytes as they are: no re-encoding, the source untouched


def _write_yolo(data: RawDataset, out: Path, names: dict) -> None:
    for split, images in data.splits.items():
        (out / "labels" / split).mkdir(parents=True, exist_ok=True)
        for i, image in enumerate(images):
            _copy(image, out / "images" / split, names[split, i])
            rows = []
            for (x1, y1, x2, y2), cls in zip(image.boxes.xyxy.tolist(), image.boxes.classes.tolist(), strict=True):
                cx, cy = (x1 + x2) / 2 / image.width, (y1 + y2) / 2 / image.height
                w, h = (x2 - x1) / image.width, (y2 - y1) / image.height
                rows.append(f"{cls} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}\n")
            (out / "labels" / split / Path(names[split, i]).with_suffix(".txt")).write_text("".join(rows))
    doc = {split: f"images/{split}" for split in data.splits}  # no `path:` — both readers then use data.yaml's folder
    doc.update({"nc": len(data.classes), "names": list(data.classes)})
    (out / "data.yaml").write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))


def _write_coco(data: RawDataset, out: Path, names: dict) -> None:
    categories = [{"id": i + 1, "name": name, "supercategory": ""} for i, name in enumerate(data.classes)]
    for split, images in data.splits.items():
        entries, annotations = [], []
        for i, image in enumerate(images):
            _copy(image, out / "images" / split, names[split, i])
            name = f"{split}/{names[split, i]}"
            entries.append({"id": i + 1, "file_name": name, "width": image.width, "height": image.height})
            for boxes, crowd in ((image.boxes, 0), (image.ignore, 1)):
                for (x1, y1, x2, y2), cls in zip(boxes.xyxy.tolist(), boxes.classes.tolist(), strict=True):
                    bbox = [round(x1, 3), round(y1, 3), round(x2 - x1, 3), round(y2 - y1, 3)]
                    area = round(bbox[2] * bbox[3], 3)
                    ann = {"id": len(annotations) + 1, "image_id": i + 1, "category_id": cls + 1, "bbox": bbox}
                    annotations.append({**ann, "area": area, "iscrowd": crowd})
        doc = {
            "info": {"description": f"converted by convscope from {data.format}: {data.source}"},
            "licenses": [],
            "images": entries,
            "annotations": annotations,
            "categories": categories,
        }
        (out / f"{split}.json").write_text(json.dumps(doc, ensure_ascii=False))


def _voc_box(xyxy: list[float], width: int, height: int) -> list[int]:
    """x1, y1, x2, y2 → VOC's 1-based inclusive xmin, ymin, xmax, ymax inside the image, with xmax > xmin."""
    corners = []
    for low, high, side in ((xyxy[0], xyxy[2], width), (xyxy[1], xyxy[3], height)):
        first, last = min(max(round(low) + 1, 1), side), min(max(round(high), 1), side)
        if last <= first:  # under 2 pixels: grow to 2, inside the image
            first, last = (first, first + 1) if first < side else (side - 1, side)
        corners.append((first, last))
    (xmin, xmax), (ymin, ymax) = corners
    return [xmin, ymin, xmax, ymax]


def _voc_xml(image: RawImage, name: str, classes: tuple[str, ...]) -> ElementTree.ElementTree:
    root = ElementTree.Element("annotation")
    for tag, text in (("folder", "JPEGImages"), ("filename", name)):
        ElementTree.SubElement(root, tag).text = text
    size = ElementTree.SubElement(root, "size")
    for tag, value in (("width", image.width), ("height", image.height), ("depth", 3)):
        ElementTree.SubElement(size, tag).text = str(value)
    ElementTree.SubElement(root, "segmented").text = "0"
    for boxes, difficult in ((image.boxes, "0"), (image.ignore, "1")):
        for xyxy, cls in zip(boxes.xyxy.tolist(), boxes.classes.tolist(), strict=True):
            obj = ElementTree.SubElement(root, "object")
            for tag, text in (("name", classes[cls]), ("pose", "Unspecified"), ("truncated", "0")):
                ElementTree.SubElement(obj, tag).text = text
            ElementTree.SubElement(obj, "difficult").text = difficult
            box = ElementTree.SubElement(obj, "bndbox")
            for tag, value in zip(
                ("xmin", "ymin", "xmax", "ymax"), _voc_box(xyxy, image.width, image.height), strict=True
            ):
                ElementTree.SubElement(box, tag).text = str(value)
    tree = ElementTree.ElementTree(root)
    ElementTree.indent(tree)
    return tree


def _write_voc(data: RawDataset, out: Path, names: dict) -> None:
    (out / "Annotations").mkdir(parents=True)
    (out / "ImageSets" / "Main").mkdir(parents=True)
    ids: dict[str, list[str]] = {}
    for split, images in data.splits.items():
        ids[split] = []
        for i, image in enumerate(images):
            name = names[split, i]
            _copy(image, out / "JPEGImages", name)
            _voc_xml(image, name, data.classes).write(
                out / "Annotations" / f"{Path(name).stem}.xml", encoding="utf-8", xml_declaration=True
            )
            ids[split].append(Path(name).stem)
    if "train" in ids and "val" in ids:
        ids["trainval"] = ids["train"] + ids["val"]  # the devkit's lists have it; mmdetection trains on it
    for split, stems in ids.items():
        (out / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(f"{stem}\n" for stem in stems))
    (out / "classes.txt").write_text("".join(f"{name}\n" for name in data.classes))


_WRITERS = {"yolo": _write_yolo, "coco": _write_coco, "voc": _write_voc}


# ── the command ───────────────────────────────────────────────────────────────────────────────────────────────────
def _check_out(out: Path, src: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataError(f"{out}: not an empty folder; convert writes into a new or empty one, and changes nothing else")
    if src.is_dir() and out.resolve().is_relative_to(src.resolve()):
        raise DataError(f"{out}: inside the source {src}; convert never writes into the dataset it reads")


def convert(
    src: str | Path,
    to: str,
    out: str | Path,
    data_dir: str | Path | None = None,
    *,
    seed: int = 0,
    val_fraction: float = 0.1,
) -> ConvertSummary:
    """Convert the dataset at `src` (any of FORMATS, see `read_raw`) to format `to` in the new or empty folder `out`.

    Boxes keep their pixels (within half a pixel for VOC's whole pixels), classes and their order, splits, and ignore
    regions (as iscrowd / difficult; YOLO has none). Returns the summary (`.line()` is the CLI's). DataError when the
    source cannot be read, `to` is not a format, or `out` is not empty or lies inside the source; OutputError when
    writing fails (then nothing is left at `out`).
    """
    if to not in FORMATS:
        raise DataError(f"expected --to {', '.join(FORMATS)}. Received: {to!r}")
    src, out = Path(src), Path(out)
    _check_out(out, src)
    data = read_raw(src, data_dir, seed=seed, val_fraction=val_fraction)
    tmp = None
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
        _WRITERS[to](data, tmp, _unique_names(data))
        os.chmod(tmp, 0o755)  # mkdtemp makes it 0700
        if out.exists():
            out.rmdir()  # empty (checked above): rename needs the name free on every system
        os.rename(tmp, out)
    except OSError as err:
        raise OutputError(f"{out}: cannot write ({err.strerror or err}); nothing was written") from None
    finally:
        if tmp is not None and tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    dropped = [problem for problem in data.problems if not problem.is_note]
    splits = {}
    for split, images in data.splits.items():
        boxes = sum(len(image.boxes) for image in images)
        present = {int(c) for image in images for c in image.boxes.classes}
        splits[split] = (len(images), boxes, len(present))
    ignore = sum(len(image.ignore) for images in data.splits.values() for image in images) if to == "yolo" else 0
    return ConvertSummary(data.format, to, out, splits, lint_summary(dropped), len(dropped), ignore)
