"""Writing a `RawDataset` (each image's boxes in its own pixels) as YOLO, COCO or Pascal VOC, for `convscope detect
convert`, into a folder made for it. Images are copied byte for byte (the source is never changed); `names` maps
(split, index) to each image's file name in the output. A split with no image (other than train) is not written
(`written_splits`): every layout's reader would refuse or drop it. What is written, as the usual tools read it:
  yolo  data.yaml (train/val/test folders, nc, names), images/SPLIT/NAME, labels/SPLIT/STEM.txt with `class cx cy w h`
        normalised to [0, 1] (6 decimals). YOLO has no ignore regions: COCO crowds and VOC difficult objects are left
        out, as Ultralytics' VOC.yaml leaves difficult objects out.
  coco  SPLIT.json per split and images/SPLIT/NAME; `file_name` is SPLIT/NAME, so `--data OUT/train.json` finds its
        images in OUT/images. bbox [x, y, w, h] in pixels (3 decimals), category ids from 1 in class order, iscrowd 1
        for ignore regions (mmdetection's VOC converter does the same with difficult objects).
  voc   Annotations/STEM.xml, JPEGImages/NAME, ImageSets/Main/{train,val,trainval,test}.txt and classes.txt (the class
        order, read back by load_voc). Coordinates are 1-based and inclusive, whole pixels: xmin = round(x1) + 1,
        xmax = round(x2) (data/detection/voc_xml.py), so boxes move by at most half a pixel; VOC needs xmax > xmin,
        so a box under 2 pixels wide (or high) grows to 2.
  voc-folders   SPLIT/NAME with SPLIT/STEM.xml beside it (the same XML as voc), SPLIT train/, val/, test/, and
        classes.txt: the split folders of the TensorFlow Object Detection API tutorials (data/detection/voc_folders.py).
  coco-folders  SPLIT/_annotations.coco.json with SPLIT/NAME beside it (`file_name` NAME; the same JSON as coco), the
        val split in valid/: Roboflow's COCO export, as RF-DETR's Roboflow reader finds it (train/, valid/, test/).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from xml.etree import ElementTree

import yaml

from convscope.data.detection.boxes import RawDataset, RawImage
from convscope.data.detection.split_folders import ROBOFLOW_JSON

ROBOFLOW_FOLDERS = {"val": "valid"}  # split → folder name where Roboflow's differs (RF-DETR reads valid/ only)


def written_splits(data: RawDataset) -> dict[str, tuple[RawImage, ...]]:
    """The splits a writer writes: train, and every other split with an image (an empty one is left out, so that
    what is written reads back: the readers refuse a data.yaml naming a folder that is not there)."""
    return {split: images for split, images in data.splits.items() if images or split == "train"}


def _copy(image: RawImage, folder: Path, name: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(image.path, folder / name)  # the bytes as they are: no re-encoding, the source untouched


def write_yolo(data: RawDataset, out: Path, names: dict) -> None:
    splits = written_splits(data)
    for split, images in splits.items():
        (out / "images" / split).mkdir(parents=True, exist_ok=True)
        (out / "labels" / split).mkdir(parents=True, exist_ok=True)
        for i, image in enumerate(images):
            _copy(image, out / "images" / split, names[split, i])
            rows = []
            for (x1, y1, x2, y2), cls in zip(image.boxes.xyxy.tolist(), image.boxes.classes.tolist(), strict=True):
                cx, cy = (x1 + x2) / 2 / image.width, (y1 + y2) / 2 / image.height
                w, h = (x2 - x1) / image.width, (y2 - y1) / image.height
                rows.append(f"{cls} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}\n")
            (out / "labels" / split / Path(names[split, i]).with_suffix(".txt")).write_text("".join(rows))
    doc = {split: f"images/{split}" for split in splits}  # no `path:` — both readers then use data.yaml's folder
    doc.update({"nc": len(data.classes), "names": list(data.classes)})
    (out / "data.yaml").write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))


def _coco_doc(data: RawDataset, split: str, folder: Path, prefix: str, names: dict) -> dict:
    """The COCO JSON of one split, its images copied into `folder`; `file_name` is prefix + the image's name."""
    entries, annotations = [], []
    for i, image in enumerate(data.splits[split]):
        _copy(image, folder, names[split, i])
        entries.append(
            {"id": i + 1, "file_name": prefix + names[split, i], "width": image.width, "height": image.height}
        )
        for boxes, crowd in ((image.boxes, 0), (image.ignore, 1)):
            for (x1, y1, x2, y2), cls in zip(boxes.xyxy.tolist(), boxes.classes.tolist(), strict=True):
                bbox = [round(x1, 3), round(y1, 3), round(x2 - x1, 3), round(y2 - y1, 3)]
                area = round(bbox[2] * bbox[3], 3)
                ann = {"id": len(annotations) + 1, "image_id": i + 1, "category_id": cls + 1, "bbox": bbox}
                annotations.append({**ann, "area": area, "iscrowd": crowd})
    return {
        "info": {"description": f"converted by convscope from {data.format}: {data.source}"},
        "licenses": [],
        "images": entries,
        "annotations": annotations,
        "categories": [{"id": i + 1, "name": name, "supercategory": ""} for i, name in enumerate(data.classes)],
    }


def write_coco(data: RawDataset, out: Path, names: dict) -> None:
    for split in written_splits(data):
        doc = _coco_doc(data, split, out / "images" / split, f"{split}/", names)
        (out / f"{split}.json").write_text(json.dumps(doc, ensure_ascii=False))


def write_coco_folders(data: RawDataset, out: Path, names: dict) -> None:
    for split in written_splits(data):
        folder = out / ROBOFLOW_FOLDERS.get(split, split)
        folder.mkdir(parents=True, exist_ok=True)
        doc = _coco_doc(data, split, folder, "", names)
        (folder / ROBOFLOW_JSON).write_text(json.dumps(doc, ensure_ascii=False))


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


def _voc_xml(image: RawImage, name: str, classes: tuple[str, ...], folder: str) -> ElementTree.ElementTree:
    root = ElementTree.Element("annotation")
    for tag, text in (("folder", folder), ("filename", name)):
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
            corners = _voc_box(xyxy, image.width, image.height)
            for tag, value in zip(("xmin", "ymin", "xmax", "ymax"), corners, strict=True):
                ElementTree.SubElement(box, tag).text = str(value)
    tree = ElementTree.ElementTree(root)
    ElementTree.indent(tree)
    return tree


def _write_voc_image(image: RawImage, name: str, classes: tuple[str, ...], images: Path, xmls: Path) -> None:
    """Copy one image into `images` and write its XML (`<folder>` the images folder's name) into `xmls`."""
    _copy(image, images, name)
    xmls.mkdir(parents=True, exist_ok=True)
    tree = _voc_xml(image, name, classes, images.name)
    tree.write(xmls / f"{Path(name).stem}.xml", encoding="utf-8", xml_declaration=True)


def _write_classes(data: RawDataset, out: Path) -> None:
    (out / "classes.txt").write_text("".join(f"{name}\n" for name in data.classes))  # the class order, read back


def write_voc(data: RawDataset, out: Path, names: dict) -> None:
    (out / "Annotations").mkdir(parents=True)
    (out / "ImageSets" / "Main").mkdir(parents=True)
    ids: dict[str, list[str]] = {}
    for split, images in written_splits(data).items():
        ids[split] = []
        for i, image in enumerate(images):
            _write_voc_image(image, names[split, i], data.classes, out / "JPEGImages", out / "Annotations")
            ids[split].append(Path(names[split, i]).stem)
    if "train" in ids and "val" in ids:
        ids["trainval"] = ids["train"] + ids["val"]  # the devkit's lists have it; mmdetection trains on it
    for split, stems in ids.items():
        (out / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(f"{stem}\n" for stem in stems))
    _write_classes(data, out)


def write_voc_folders(data: RawDataset, out: Path, names: dict) -> None:
    for split, images in written_splits(data).items():
        (out / split).mkdir(parents=True, exist_ok=True)
        for i, image in enumerate(images):
            _write_voc_image(image, names[split, i], data.classes, out / split, out / split)
    _write_classes(data, out)
