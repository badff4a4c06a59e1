"""Split folders — `train/ val|valid|validation/ test/` at the dataset folder or one folder below it — holding Pascal
VOC XML files (the TensorFlow Object Detection API tutorials' layout, Roboflow's "Pascal VOC" export) or one COCO JSON
each (Roboflow's COCO export): found by the format table, linted with paths relative to the dataset folder, loaded
with the same boxes as the same data in a VOC or COCO folder, and converted both ways exactly."""

import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from convscope.data.detection.convert import convert, read_raw
from convscope.data.detection.formats import FORMATS, format_of
from convscope.data.detection.load import load_detection
from convscope.errors import DataError

W, H = 64, 40  # every test image, pixels
VOC_SPLITS = {  # split → stem → objects (name, xmin, ymin, xmax, ymax, difficult), 1-based inclusive
    "train": {"a": [("RBC", 11, 21, 60, 40, 0), ("WBC", 5, 5, 30, 30, 1)], "b": [("Platelets", 2, 3, 40, 35, 0)]},
    "val": {"c": [("RBC", 1, 1, 20, 20, 0)], "d": [("WBC", 10, 10, 50, 39, 0)]},
    "test": {"e": [("RBC", 3, 4, 33, 34, 0)], "f": []},  # f: a background image
}


def _jpeg(path: Path, stem: str) -> None:
    """A real JPEG, W×H, the same bytes for the same stem."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(ord(stem)).integers(0, 255, (H, W, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format="JPEG", quality=90)


def _xml(path: Path, stem: str, objects: list[tuple]) -> None:
    body = "".join(
        f"<object><name>{n}</name><difficult>{d}</difficult><bndbox><xmin>{a}</xmin><ymin>{b}</ymin>"
        f"<xmax>{c}</xmax><ymax>{e}</ymax></bndbox></object>"
        for n, a, b, c, e, d in objects
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    head = f"<annotation><filename>{stem}.jpg</filename><size><width>{W}</width><height>{H}</height></size>"
    path.write_text(f"{head}{body}</annotation>")


def _voc(root: Path, splits=VOC_SPLITS) -> Path:
    """The same data as a VOC folder: Annotations/, JPEGImages/, ImageSets/Main."""
    for split, files in splits.items():
        for stem, objects in files.items():
            _jpeg(root / "JPEGImages" / f"{stem}.jpg", stem)
            _xml(root / "Annotations" / f"{stem}.xml", stem, objects)
        (root / "ImageSets" / "Main").mkdir(parents=True, exist_ok=True)
        (root / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(f"{s}\n" for s in files))
    return root


def _voc_folders(root: Path, folders: dict[str, str], apart: bool = False, splits=VOC_SPLITS) -> Path:
    """VOC split folders: split → its folder under root; XML beside the images, or (apart) in annotations/."""
    for split, folder in folders.items():
        for stem, objects in splits[split].items():
            _jpeg(root / folder / ("images" if apart else "") / f"{stem}.jpg", stem)
            _xml(root / folder / ("annotations" if apart else "") / f"{stem}.xml", stem, objects)
    return root


# ── COCO: the same boxes as [x, y, w, h] ──────────────────────────────────────────────────────────────────────────
CATEGORIES = {1: "RBC", 2: "WBC"}
COCO_SPLITS = {  # split → stem → (category id, x, y, w, h, iscrowd)
    "train": {"a": [(1, 10.5, 20, 30.25, 19, 0), (2, 4, 4, 26, 26, 1)], "b": [(2, 1, 2, 39, 33, 0)]},
    "val": {"c": [(1, 0, 0, 20, 20, 0)]},
    "test": {"e": [(1, 2, 3, 31, 31, 0)], "f": []},
}


def _coco_doc(split: str, prefix: str, roboflow: bool) -> dict:
    categories = [{"id": i, "name": n, "supercategory": "cells" if roboflow else ""} for i, n in CATEGORIES.items()]
    if roboflow:  # the dataset's name as a category with no annotation, as Roboflow exports it
        categories.insert(0, {"id": 0, "name": "cells", "supercategory": "none"})
    images, annotations = [], []
    for i, (stem, boxes) in enumerate(COCO_SPLITS[split].items()):
        images.append({"id": i, "file_name": f"{prefix}{stem}.jpg", "width": W, "height": H})
        for cid, x, y, w, h, crowd in boxes:
            ann = {"id": len(annotations), "image_id": i, "category_id": cid, "bbox": [x, y, w, h]}
            annotations.append({**ann, "area": w * h, "iscrowd": crowd, "segmentation": []})
    return {"images": images, "annotations": annotations, "categories": categories}


def _coco(root: Path) -> Path:
    """The same data as a folder of COCO split JSONs: SPLIT.json, images/SPLIT/."""
    for split, files in COCO_SPLITS.items():
        for stem in files:
            _jpeg(root / "images" / split / f"{stem}.jpg", stem)
        (root / f"{split}.json").write_text(json.dumps(_coco_doc(split, f"{split}/", False)))
    return root


def _coco_folders(root: Path, folders: dict[str, str]) -> Path:
    """Roboflow's COCO export: SPLIT/_annotations.coco.json with the images beside it."""
    for split, folder in folders.items():
        for stem in COCO_SPLITS[split]:
            _jpeg(root / folder / f"{stem}.jpg", stem)
        (root / folder / "_annotations.coco.json").write_text(json.dumps(_coco_doc(split, "", True)))
    return root


def _by_stem(data) -> dict:
    """split → stem → (width, height, boxes, classes, ignore boxes, ignore classes) of a RawDataset."""
    return {
        split: {
            i.path.stem: (i.width, i.height, i.boxes.xyxy.tolist(), i.boxes.classes.tolist(), i.ignore.xyxy.tolist())
            for i in images
        }
        for split, images in data.splits.items()
    }


def _same_loaded(a, b) -> None:
    """Two DetectionDatasets with the same classes, images and boxes in each split (names may differ)."""
    assert a.classes == b.classes
    for split in ("train", "val", "test"):
        x, y = getattr(a, split), getattr(b, split)
        assert (x is None) == (y is None), split
        if x is None:
            continue
        np.testing.assert_array_equal(x.images, y.images)
        assert len(x.targets) == len(y.targets) and len(x.crowds) == len(y.crowds)
        for t, u in zip(x.targets + x.crowds, y.targets + y.crowds, strict=True):
            np.testing.assert_array_equal(t.xyxy, u.xyxy)
            assert t.classes.tolist() == u.classes.tolist()


def _snapshot(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*.*")}


# ── VOC split folders ─────────────────────────────────────────────────────────────────────────────────────────────
@pytest.mark.parametrize(
    "folders, apart",
    [
        ({"train": "train", "val": "valid", "test": "test"}, False),  # Roboflow's Pascal VOC export
        ({"train": "Train", "val": "VALIDATION", "test": "Test"}, False),  # any case
        ({"train": "images/train", "val": "images/val", "test": "images/test"}, False),  # the TF tutorials'
        ({"train": "train", "val": "val", "test": "test"}, True),  # images/ + annotations/ in each split
        ({"train": "data/train", "val": "data/valid", "test": "data/test"}, True),
    ],
)
def test_voc_split_folders_read_as_the_same_data_in_a_voc_folder(tmp_path, folders, apart):
    root = _voc_folders(tmp_path / "ds", folders, apart)
    (root / "README.roboflow.txt").write_text("exported\n")
    assert format_of(root).name == "voc-folders"
    fmt, std = FORMATS["voc-folders"], _voc(tmp_path / "std")
    raw = fmt.read_raw(root, data_dir=None, seed=0, val_fraction=0.1)
    assert _by_stem(raw) == _by_stem(read_raw(std)) and raw.problems == () and raw.format == "voc-folders"
    assert raw.classes == ("Platelets", "RBC", "WBC")  # the sorted union over every split
    assert raw.splits["val"][0].name == f"{folders['val']}/{'images/' if apart else ''}c.jpg"
    options = {"data_dir": None, "seed": 0, "val_fraction": 0.1}
    _same_loaded(fmt.load(root, 48, **options), FORMATS["voc"].load(std, 48, **options))
    assert fmt.lint(root, data_dir=None) == []


def test_train_and_test_only_is_read_without_a_val_split_and_not_taken_for_plain_voc(tmp_path):
    root = _voc_folders(tmp_path / "ds", {"train": "images/train", "test": "images/test"})
    (root / "annotations").mkdir()
    (root / "annotations" / "label_map.pbtxt").write_text("item { id: 1 name: 'RBC' }\n")  # as the tutorials have
    assert format_of(root).name == "voc-folders"
    data = FORMATS["voc-folders"].load(root, 32, data_dir=None, seed=0, val_fraction=0.1)
    assert data.val is None and (len(data.train), len(data.test)) == (2, 2)
    assert list(read_raw(root).splits) == ["train", "test"]  # exactly the splits found


def test_a_class_list_at_the_root_orders_the_classes_of_every_split(tmp_path):
    root = _voc_folders(tmp_path / "ds", {"train": "train", "val": "valid"})
    (root / "classes.txt").write_text("WBC\nRBC\nPlatelets\nextra\n")
    raw = read_raw(root)
    assert raw.classes == ("WBC", "RBC", "Platelets", "extra")
    assert raw.splits["val"][1].boxes.classes.tolist() == [0]  # d's WBC


def test_voc_lint_names_paths_relative_to_the_dataset_folder(tmp_path):
    root = _voc_folders(tmp_path / "ds", {"train": "images/train", "val": "images/valid", "test": "images/test"})
    (root / "classes.txt").write_text("RBC\nWBC\n")  # Platelets is no class: b's object is a problem
    _jpeg(root / "images" / "test" / "g.jpg", "g")  # an image with no XML
    _xml(root / "images" / "valid" / "h.xml", "h", [("RBC", 1, 1, 9, 9, 0)])  # an XML with no image
    problems = FORMATS["voc-folders"].lint(root, data_dir=None)
    assert [(p.path, p.line, p.kind) for p in problems] == [
        ("images/train/b.xml", 1, "unknown-class"),
        ("images/valid/h.xml", None, "missing"),
        ("images/test/g.jpg", None, "no-label"),
    ]
    assert "not found in images/valid/" in problems[1].message


# ── Roboflow's COCO export ────────────────────────────────────────────────────────────────────────────────────────
ROBOFLOW = {"train": "train", "val": "valid", "test": "test"}


@pytest.mark.parametrize("below", ["", "export/"])
def test_coco_split_folders_read_as_the_same_data_in_split_jsons(tmp_path, below, caplog):
    root = _coco_folders(tmp_path / "ds", {split: below + folder for split, folder in ROBOFLOW.items()})
    assert format_of(root).name == "coco-folders"
    std = _coco(tmp_path / "std")
    with caplog.at_level(logging.INFO, logger="convscope.data.detection.coco"):
        raw = read_raw(root)
    assert raw.classes == ("RBC", "WBC") and raw.problems == ()  # the supercategory entry "cells" left out
    assert "category 'cells' (id 0) has no annotation and is the supercategory of all the others" in caplog.text
    assert _by_stem(raw) == _by_stem(read_raw(std))
    np.testing.assert_allclose(raw.splits["train"][0].boxes.xyxy, [[10.5, 20, 40.75, 39]])
    fmt = FORMATS["coco-folders"]
    loaded = fmt.load(root, 48, data_dir=None, seed=0, val_fraction=0.1)
    _same_loaded(loaded, FORMATS["coco"].load(std, 48, data_dir=None, seed=0, val_fraction=0.1))
    assert loaded.name == "ds" and loaded.val.names == ("c.jpg",)


def test_a_split_folder_may_name_its_only_json_as_it_likes_but_not_hold_two(tmp_path):
    root = _coco_folders(tmp_path / "ds", {"train": "train", "test": "test"})
    (root / "test" / "_annotations.coco.json").rename(root / "test" / "labels.json")
    data = load_detection(str(root), None, 32, 0.1, 0)  # the path training and evaluation take
    assert data.classes == ("RBC", "WBC") and len(data.test) == 2
    (root / "test" / "more.json").write_text("{}")
    with pytest.raises(DataError) as caught:
        read_raw(root)
    assert str(caught.value) == (
        f"{root / 'test'}: expected one COCO JSON (_annotations.coco.json), found 2: labels.json, more.json"
    )


def test_a_supercategory_with_annotations_or_a_class_without_any_is_kept(tmp_path):
    root = _coco_folders(tmp_path / "ds", {"train": "train"})
    doc = json.loads((root / "train" / "_annotations.coco.json").read_text())
    doc["categories"].append({"id": 3, "name": "Platelets", "supercategory": "cells"})  # no box, not a parent
    (root / "train" / "_annotations.coco.json").write_text(json.dumps(doc))
    assert read_raw(root).classes == ("RBC", "WBC", "Platelets")
    doc["annotations"].append({"id": 99, "image_id": 0, "category_id": 0, "bbox": [1, 1, 5, 5], "iscrowd": 0})
    (root / "train" / "_annotations.coco.json").write_text(json.dumps(doc))
    assert read_raw(root).classes == ("cells", "RBC", "WBC", "Platelets")  # it has a box: a class


def test_coco_lint_names_paths_relative_to_the_dataset_folder_and_categories_must_agree(tmp_path):
    root = _coco_folders(tmp_path / "ds", {"train": "train", "val": "valid"})
    doc = json.loads((root / "valid" / "_annotations.coco.json").read_text())
    doc["images"].append({"id": 7, "file_name": "gone.jpg", "width": W, "height": H})
    doc["annotations"].append({"id": 50, "image_id": 0, "category_id": 9, "bbox": [1, 1, 5, 5], "iscrowd": 0})
    (root / "valid" / "_annotations.coco.json").write_text(json.dumps(doc))
    problems = FORMATS["coco-folders"].lint(root, data_dir=None)
    assert [(p.path, p.kind) for p in problems] == [
        ("valid/_annotations.coco.json", "class"),
        ("valid/gone.jpg", "missing"),
    ]
    doc["categories"][2]["name"] = "Neutrophil"
    (root / "valid" / "_annotations.coco.json").write_text(json.dumps(doc))
    with pytest.raises(DataError, match=r"valid/_annotations\.coco\.json: categories \['RBC', 'Neutrophil'\] differ"):
        read_raw(root)


# ── converting both ways ──────────────────────────────────────────────────────────────────────────────────────────
def test_voc_to_voc_folders_and_back_is_exact(tmp_path):
    src = _voc(tmp_path / "src")
    (src / "classes.txt").write_text("RBC\nWBC\nPlatelets\ncow\n")  # cow has no box: the order must survive
    convert(src, "voc-folders", tmp_path / "folders")
    files = [f"{split}/{stem}.{ext}" for split, stems in VOC_SPLITS.items() for stem in stems for ext in ("jpg", "xml")]
    assert sorted(_snapshot(tmp_path / "folders")) == sorted(["classes.txt", *files])
    assert (tmp_path / "folders" / "classes.txt").read_text() == "RBC\nWBC\nPlatelets\ncow\n"
    assert "<folder>train</folder>" in (tmp_path / "folders" / "train" / "a.xml").read_text()
    assert _by_stem(read_raw(tmp_path / "folders")) == _by_stem(read_raw(src))
    convert(tmp_path / "folders", "voc", tmp_path / "back")
    convert(src, "voc", tmp_path / "direct")
    assert _snapshot(tmp_path / "back") == _snapshot(tmp_path / "direct")  # XML, image sets, images: byte for byte
    assert read_raw(tmp_path / "back").classes == ("RBC", "WBC", "Platelets", "cow")


def test_coco_to_coco_folders_and_back_is_exact(tmp_path):
    src = _coco(tmp_path / "src")
    convert(src, "coco-folders", tmp_path / "folders")
    assert sorted(p.name for p in (tmp_path / "folders").iterdir()) == ["test", "train", "valid"]  # RF-DETR's names
    doc = json.loads((tmp_path / "folders" / "valid" / "_annotations.coco.json").read_text())
    assert [i["file_name"] for i in doc["images"]] == ["c.jpg"] and (tmp_path / "folders" / "valid" / "c.jpg").is_file()
    assert format_of(tmp_path / "folders").name == "coco-folders"
    assert _by_stem(read_raw(tmp_path / "folders")) == _by_stem(read_raw(src))
    convert(tmp_path / "folders", "coco", tmp_path / "back")
    convert(src, "coco", tmp_path / "direct")
    back, direct = _snapshot(tmp_path / "back"), _snapshot(tmp_path / "direct")
    assert {k: v for k, v in back.items() if k.startswith("images/")} == {
        k: v for k, v in direct.items() if k.startswith("images/")
    }
    for split in ("train", "val", "test"):
        docs = [json.loads((tmp_path / out / f"{split}.json").read_text()) for out in ("back", "direct")]
        for d in docs:
            del d["info"]  # it names the source
        assert docs[0] == docs[1], split
    boxes = json.loads((tmp_path / "back" / "train.json").read_text())["annotations"]
    assert [(a["category_id"], a["bbox"], a["iscrowd"]) for a in boxes] == [
        (1, [10.5, 20.0, 30.25, 19.0], 0),
        (2, [4.0, 4.0, 26.0, 26.0], 1),  # the crowd region after the image's boxes, still iscrowd
        (2, [1.0, 2.0, 39.0, 33.0], 0),
    ]


@pytest.mark.parametrize("files", [["images/train/a.jpg", "labels/train/a.txt"], ["train/cat/a.jpg", "val/dog/b.jpg"]])
def test_split_folders_without_xml_or_json_are_none_of_the_formats(tmp_path, files):
    for name in files:  # a YOLO folder that lost its data.yaml; a classification dataset
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("")
    with pytest.raises(DataError, match="found a folder with none of them$"):
        format_of(tmp_path)


# ── what is not a layout ──────────────────────────────────────────────────────────────────────────────────────────
def test_mixed_formats_or_no_train_split_is_a_one_line_error_naming_the_folder(tmp_path):
    mixed = _voc_folders(tmp_path / "mixed", {"train": "train"})
    _coco_folders(mixed, {"val": "valid"})
    with pytest.raises(DataError) as caught:
        read_raw(mixed)
    assert str(caught.value) == (
        f"{mixed}: expected Pascal VOC .xml files in every split folder, found: valid/ has a COCO .json file"
    )
    no_train = _voc_folders(tmp_path / "no_train", {"val": "images/valid", "test": "images/test"})
    with pytest.raises(DataError) as caught:
        FORMATS["voc-folders"].lint(no_train, data_dir=None)
    assert str(caught.value) == f"{no_train / 'images'}: expected a train/ split folder beside valid/, test/"
    twice = _coco_folders(tmp_path / "twice", {"train": "train", "val": "valid"})
    (twice / "val").mkdir()
    assert format_of(twice).name == "coco-folders"
    with pytest.raises(DataError, match=r"twice: val/ and valid/ are both the val split; expected one folder for it$"):
        read_raw(twice)
    two = _voc_folders(tmp_path / "two", {"train": "a/train", "test": "b/test"})
    with pytest.raises(DataError, match=r"two: split folders \(train/, val/, test/\) in a/, b/; expected them in one"):
        read_raw(two)
    unlabelled = _voc_folders(tmp_path / "unlabelled", {"train": "train"})
    _jpeg(unlabelled / "test" / "x.jpg", "x")  # an image but no labels (an empty test/ is no test split)
    with pytest.raises(DataError, match=r"found: test/ has no labels$"):
        read_raw(unlabelled)
