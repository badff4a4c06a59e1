"""Pascal VOC datasets: layouts, splits, classes, the 1-based coordinates, every lint check with file and line,
difficult objects as ignore regions, hostile XML refused, and `convscope detect lint` on VOC and COCO."""

import json
import logging
import re
from pathlib import Path

import numpy as np
import pytest
from helpers import shared_data
from PIL import Image

from convscope import DataError
from convscope.cli import main
from convscope.data.detection.load import load_detection
from convscope.data.detection.voc import lint_voc, load_voc, read_voc_raw
from convscope.detect.evaluate import split_metrics


def _xml(filename: str | None, objects: list[tuple], size: tuple | None = (200, 100)) -> str:
    """A VOC annotation: objects are (name, xmin, ymin, xmax, ymax) or (name, xmin, ymin, xmax, ymax, difficult)."""
    lines = ["<annotation>", "  <folder>JPEGImages</folder>"]
    if filename is not None:
        lines.append(f"  <filename>{filename}</filename>")
    if size is not None:
        lines.append(f"  <size><width>{size[0]}</width><height>{size[1]}</height><depth>3</depth></size>")
    for name, *box in objects:
        difficult = box[4] if len(box) > 4 else 0
        coords = "".join(f"<{t}>{v}</{t}>" for t, v in zip(("xmin", "ymin", "xmax", "ymax"), box[:4], strict=True))
        lines += ["  <object>", f"    <name>{name}</name>", f"    <difficult>{difficult}</difficult>"]
        lines += [f"    <bndbox>{coords}</bndbox>", "  </object>"]
    return "\n".join([*lines, "</annotation>"]) + "\n"


def _image(path: Path, width: int = 200, height: int = 100) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((height, width, 3), 90, np.uint8)).save(path)


def _voc(root: Path, files: dict[str, list[tuple]], sets: dict[str, list[str]] | None = None) -> Path:
    """DIR/Annotations/ID.xml + DIR/JPEGImages/ID.png (200×100), and ImageSets/Main when `sets` is given."""
    for stem, objects in files.items():
        (root / "Annotations").mkdir(parents=True, exist_ok=True)
        (root / "Annotations" / f"{stem}.xml").write_text(_xml(f"{stem}.png", objects))
        _image(root / "JPEGImages" / f"{stem}.png")
    for name, ids in (sets or {}).items():
        (root / "ImageSets" / "Main").mkdir(parents=True, exist_ok=True)
        (root / "ImageSets" / "Main" / f"{name}.txt").write_text("".join(f"{i}\n" for i in ids))
    return root


def test_boxes_are_1_based_inclusive_and_follow_the_letterbox(tmp_path):
    # xmin 11 … xmax 60 is pixels 10..59 counted from 0: [10, 60) → x 10 to 60 (detectron2's conversion).
    root = _voc(tmp_path / "ds", {"a": [("cat", 11, 21, 60, 50), ("dog", 1, 1, 200, 100)]}, {"train": ["a"]})
    raw = read_voc_raw(root)
    (image,) = raw.splits["train"]
    assert (image.name, image.width, image.height) == ("JPEGImages/a.png", 200, 100)
    np.testing.assert_array_equal(image.boxes.xyxy, [[10, 20, 60, 50], [0, 0, 200, 100]])
    assert raw.classes == ("cat", "dog") and image.boxes.classes.tolist() == [0, 1] and raw.problems == ()
    data = load_voc(root, 100)  # scale 0.5, the 50 rows centred: pad_y 25
    np.testing.assert_allclose(data.train.targets[0].xyxy, [[5, 35, 30, 50], [0, 25, 100, 75]])
    assert data.val is None and data.test is None and data.train.names == ("JPEGImages/a.png",)


def test_difficult_objects_are_ignore_regions_not_targets(tmp_path):
    root = _voc(tmp_path / "ds", {"a": [("cat", 11, 21, 60, 50), ("cat", 101, 11, 150, 90, 1)]}, {"train": ["a"]})
    data = load_voc(root, 200)  # scale 1, pad_y 50
    np.testing.assert_allclose(data.train.targets[0].xyxy, [[10, 70, 60, 100]])
    np.testing.assert_allclose(data.train.crowds[0].xyxy, [[100, 60, 150, 140]])
    (image,) = read_voc_raw(root).splits["train"]
    np.testing.assert_array_equal(image.ignore.xyxy, [[100, 10, 150, 90]])
    # Scored as ignore regions: a higher-scored detection on the difficult cat is neither right nor wrong.
    found = [(np.array([[10, 70, 60, 100], [100, 60, 150, 140]], np.float32), np.array([0.8, 0.9]), np.array([0, 0]))]
    assert split_metrics(data.train, found, data.classes).map50 == pytest.approx(1.0)


def test_splits_come_from_image_sets(tmp_path):
    files = {stem: [("cat", 11, 11, 50, 50)] for stem in "abcdef"}
    root = _voc(tmp_path / "ds", files, {"train": ["a", "b"], "val": ["c"], "trainval": list("abc"), "test": ["d"]})
    raw = read_voc_raw(root)
    assert {s: [i.name for i in images] for s, images in raw.splits.items()} == {
        "train": ["JPEGImages/a.png", "JPEGImages/b.png"],
        "val": ["JPEGImages/c.png"],
        "test": ["JPEGImages/d.png"],
    }
    (root / "ImageSets" / "Main" / "train.txt").unlink()  # then train is trainval less val
    (root / "ImageSets" / "Main" / "trainval.txt").write_text("a\nb\nc\ne\nzz\n")
    raw = read_voc_raw(root)
    assert [i.name for i in raw.splits["train"]] == ["JPEGImages/a.png", "JPEGImages/b.png", "JPEGImages/e.png"]
    assert [(str(p), p.kind) for p in raw.problems] == [
        ("ImageSets/Main/trainval.txt, line 5: zz: no Annotations/zz.xml, left out", "set-entry")
    ]


def test_without_image_sets_a_seeded_split_is_drawn_and_logged(tmp_path, caplog):
    root = _voc(tmp_path / "ds", {f"{i:02}": [("cat", 11, 11, 50, 50)] for i in range(20)})
    with caplog.at_level(logging.INFO, logger="convscope.data.detection.voc"):
        data = load_voc(root, 32, seed=3, val_fraction=0.1)
    assert (len(data.train), len(data.val), len(data.test)) == (16, 2, 2)
    assert "no ImageSets/Main, so 16/2/2 annotation files were drawn for train/val/test (seed 3" in caplog.text
    again, other = read_voc_raw(root, seed=3), read_voc_raw(root, seed=4)
    assert [i.name for i in again.splits["val"]] == list(data.val.names)
    assert [i.name for i in other.splits["val"]] != list(data.val.names)
    everything = sorted(name for split in (data.train, data.val, data.test) for name in split.names)
    assert everything == [f"JPEGImages/{i:02}.png" for i in range(20)]


@pytest.mark.parametrize("layout", ["lowercase", "beside"])
def test_other_layouts_and_file_names_that_differ_in_case_or_extension(tmp_path, layout):
    root = tmp_path / "ds"
    xml_dir, image_dir = (root / "annotations", root / "images") if layout == "lowercase" else (root, root)
    xml_dir.mkdir(parents=True)
    _image(image_dir / "a.png")
    _image(image_dir / "B.jpg")
    _image(image_dir / "c.png")
    (xml_dir / "a.xml").write_text(_xml("A.JPG", [("cat", 11, 11, 50, 50)]))  # finds a.png: case and extension
    (xml_dir / "b.xml").write_text(_xml("b.jpg", [("cat", 11, 11, 50, 50)]))  # finds B.jpg
    (xml_dir / "c.xml").write_text(_xml(None, [("cat", 11, 11, 50, 50)]))  # no <filename>: the XML's stem
    raw = read_voc_raw(root, val_fraction=0)
    found = sorted(image.path.name for image in raw.splits["train"])
    assert found == ["B.jpg", "a.png", "c.png"] and raw.problems == ()


def test_a_class_list_orders_classes_and_other_names_are_problems(tmp_path):
    root = _voc(tmp_path / "ds", {"a": [("dog", 11, 11, 50, 50), ("cow", 61, 11, 90, 50)]}, {"train": ["a"]})
    (root / "classes.txt").write_text("dog\ncat\n")
    raw = read_voc_raw(root)
    assert raw.classes == ("dog", "cat") and raw.splits["train"][0].boxes.classes.tolist() == [0]
    assert [(str(p), p.kind) for p in raw.problems] == [
        (
            "Annotations/a.xml, line 10: object 2 (cow): class 'cow' is not in the class list (dog, cat), skipped",
            "unknown-class",
        )
    ]


BAD = [
    ("cat", 11, 11, 50, 50),  # line 5: fine
    ("cat", 30, 11, 30, 50),  # line 10: zero-size
    ("cat", 50, 11, 20, 50),  # line 15: inverted
    ("cat", "ten", 11, 50, 50),  # line 20: not a number
    ("cat", 201, 11, 250, 50),  # line 25: outside the 200×100 image
    ("cat", 0, -3, 205, 60),  # line 30: runs past the edge: clipped, kept
    ("cat", 11, 11, 50, 51),  # line 35: duplicate of object 1
]


def test_every_lint_check_fires_with_file_and_line(tmp_path):
    root = _voc(tmp_path / "ds", {"a": BAD, "b": [("dog", 11, 11, 50, 50)], "c": [], "d": []})
    (root / "Annotations" / "b.xml").write_text(_xml("gone.png", [], size=(640, 480)))  # finds b.png by stem
    (root / "Annotations" / "c.xml").write_text("<annotation><object></annotation>\n")
    no_box = re.sub(r" *<bndbox>.*</bndbox>\n", "", _xml("d.png", [("dog", 11, 11, 50, 50)]))
    (root / "Annotations" / "d.xml").write_text(no_box)
    _image(root / "JPEGImages" / "lonely.png")
    (root / "Annotations" / "f.xml").write_text(_xml("f.png", []))  # its image is missing
    problems = lint_voc(root, val_fraction=0)
    assert [(str(p), p.kind) for p in problems] == [
        ("Annotations/a.xml, line 10: object 2 (cat): zero-size box (xmin 30, ymin 11, xmax 30, ymax 50: expected "
         "xmax > xmin and ymax > ymin)", "size"),
        ("Annotations/a.xml, line 15: object 3 (cat): inverted box (xmin 50, ymin 11, xmax 20, ymax 50: expected "
         "xmax > xmin and ymax > ymin)", "size"),
        ("Annotations/a.xml, line 20: object 4 (cat): <xmin> is 'ten', not a number", "number"),
        ("Annotations/a.xml, line 25: object 5 (cat): box (xmin 201, ymin 11, xmax 250, ymax 50) outside the 200×100 "
         "image", "outside"),
        ("Annotations/a.xml, line 35: object 7 (cat): duplicate of object 1 (IoU 0.98)", "duplicate"),
        ("Annotations/b.xml: <size> says 640×480 but JPEGImages/b.png is 200×100; the image's own size is used",
         "image-size"),
        ("Annotations/c.xml, line 1: not well-formed XML (mismatched tag); its image is skipped", "xml"),
        ("Annotations/d.xml, line 5: object 1 (dog): no <bndbox>, skipped", "entry"),
        ("Annotations/f.xml: image 'f.png' not found in JPEGImages/, skipped", "missing"),
        ("JPEGImages/lonely.png: image with no XML file: not read", "no-label"),
        ("Annotations: 1 box(es) in 1 XML file(s) ran past the image edge and were clipped to it (first: "
         "Annotations/a.xml, line 30)", "clipped"),
    ]  # fmt: skip
    assert problems[-1].is_note and not any(p.is_note for p in problems[:-1])
    a = next(i for i in read_voc_raw(root, val_fraction=0).splits["train"] if i.name == "JPEGImages/a.png")
    np.testing.assert_array_equal(a.boxes.xyxy, [[10, 10, 50, 50], [0, 0, 200, 60]])  # the clipped one kept


def test_at_a_training_size_tiny_boxes_are_problems_and_nothing_valid_refuses(tmp_path):
    root = _voc(tmp_path / "ds", {"a": [("cat", 11, 11, 12, 50)]}, {"train": ["a"]})  # 2 px wide: 0.64 px at 64
    assert lint_voc(root) == []
    problems = lint_voc(root, image_size=64)
    assert [str(p) for p in problems] == [
        "Annotations/a.xml, line 5: object 1 (cat): box under 1 pixel after resizing (0.64×12.80 px)",
        "Annotations: no training image with a valid box: training would be refused",
    ]
    with pytest.raises(DataError, match=r"expected training images with at least one box, found 1 usable image"):
        load_voc(root, 64)


LOL = "".join(f' <!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">\n' for i in range(1, 10))  # lol9: 10⁹ × "lol"
HOSTILE = {
    "laughs": f'<?xml version="1.0"?>\n<!DOCTYPE lolz [\n <!ENTITY lol0 "lol">\n{LOL}]>\n'
    "<annotation><filename>&lol9;</filename></annotation>\n",
    "xxe": '<?xml version="1.0"?>\n<!DOCTYPE a [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n'
    "<annotation><filename>&xxe;</filename><object><name>&xxe;</name></object></annotation>\n",
}


def test_billion_laughs_and_external_entities_are_refused_without_expanding(tmp_path):
    root = _voc(tmp_path / "ds", {"ok": [("cat", 11, 11, 50, 50)]}, {"train": ["ok", "laughs", "xxe"]})
    for stem, text in HOSTILE.items():
        (root / "Annotations" / f"{stem}.xml").write_text(text)
        _image(root / "JPEGImages" / f"{stem}.png")
    problems = lint_voc(root)  # refused at the entity declaration: nothing is expanded (no time bound needed)
    assert [(p.path, p.line, p.kind) for p in problems] == [
        ("Annotations/laughs.xml", None, "xml"),
        ("Annotations/xxe.xml", None, "xml"),
    ]
    assert problems[0].message.startswith("refused: the XML declares entities (EntitiesForbidden: lol0)")
    assert problems[1].message.startswith("refused: the XML declares entities (EntitiesForbidden: xxe)")
    assert "root:" not in " ".join(map(str, problems))  # nothing of /etc/passwd was read into a message
    raw = read_voc_raw(root)
    assert [i.name for i in raw.splits["train"]] == ["JPEGImages/ok.png"] and raw.classes == ("cat",)


def test_load_detection_reads_voc_and_names_the_three_formats_otherwise(tmp_path):
    root = _voc(tmp_path / "ds", {stem: [("cat", 11, 11, 50, 50)] for stem in "abcde"})
    data = load_detection(str(root), None, 32, 0.2, 0)  # no ImageSets: a fifth for val, as much for test
    assert (data.classes, len(data.train), len(data.val), len(data.test)) == (("cat",), 3, 1, 1)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError) as caught:
        load_detection(str(tmp_path / "empty"), None, 32, 0.1, 0)
    assert str(caught.value) == (
        f"{tmp_path / 'empty'}: expected a YOLO dataset folder (with data.yaml), a Pascal VOC folder "
        "(Annotations/*.xml, or XML files beside their images), a COCO .json file, a TF Object Detection .csv file "
        "(or a folder of split CSVs), or split folders (train/, val/ or valid/, test/) of Pascal VOC .xml files or a "
        "COCO .json file each, found a folder with none of them"
    )


def test_lint_cli_reads_voc_and_coco_with_the_same_exit_codes(tmp_path, capsys):
    root = _voc(tmp_path / "voc", {"a": [("cat", 11, 11, 50, 50), ("cat", 30, 11, 30, 50)]}, {"train": ["a"]})
    assert main(["detect", "lint", str(root)]) == 1
    captured = capsys.readouterr()
    assert captured.out.splitlines()[-1:] == [  # after the summary (tests/data/detection/test_lint_summary.py)
        "Annotations/a.xml, line 10: object 2 (cat): zero-size box (xmin 30, ymin 11, xmax 30, ymax 50: expected "
        "xmax > xmin and ymax > ymin)"
    ]
    assert captured.err == "convscope: 1 label problem(s): 1 zero-size box\n"
    coco = tmp_path / "coco"
    _image(coco / "images" / "a.png")
    doc = {
        "images": [{"id": 1, "file_name": "a.png", "width": 200, "height": 100}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 40, 40], "iscrowd": 0}],
        "categories": [{"id": 1, "name": "cat"}],
    }
    (coco / "train.json").write_text(json.dumps(doc))
    assert main(["detect", "lint", str(coco / "train.json")]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "no problems found"
    doc["annotations"][0]["bbox"] = [190, 10, 40, 40]
    (coco / "train.json").write_text(json.dumps(doc))
    assert main(["detect", "lint", str(coco / "train.json"), "--data-dir", str(coco / "images")]) == 1
    assert capsys.readouterr().out.splitlines()[-2:] == [
        f"{coco / 'train.json'}: annotation 1: bbox [190, 10, 40, 40] outside the 200×100 image",
        "train.json: no training image with a valid box: training would be refused",
    ]
    (root / "Annotations" / "a.xml").unlink()
    assert main(["detect", "lint", str(root)]) == 2
    assert "expected a YOLO dataset folder (with data.yaml), a Pascal VOC folder" in capsys.readouterr().err


def test_bccd_lint_finds_its_two_zero_size_boxes_and_loads_every_other_box():
    root = shared_data("bccd-voc")
    problems = lint_voc(root)
    assert sorted((p.path, p.line, p.kind) for p in problems) == [
        ("Annotations/BloodImage_00338.xml", 158, "size"),
        ("Annotations/BloodImage_00343.xml", 50, "size"),
    ]
    data = load_voc(root, 128)
    assert data.classes == ("Platelets", "RBC", "WBC")
    assert [len(s) for s in (data.train, data.val, data.test)] == [205, 87, 72]
    assert sum(len(t) for s in (data.train, data.val, data.test) for t in s.targets) == 4888 - 2
