"""`convscope detect convert`: YOLO ↔ COCO ↔ Pascal VOC in the images' own pixels — boxes, classes, splits and
ignore regions survive round trips, pycocotools reads the COCO written, the source is never changed, and a failure
leaves nothing half-written."""

import contextlib
import dataclasses
import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from helpers import shared_data
from PIL import Image

from convscope.cli import main
from convscope.data.detection.coco import load_coco
from convscope.data.detection.convert import convert, read_raw
from convscope.data.detection.formats import FORMATS
from convscope.data.detection.yolo import load_yolo
from convscope.errors import DataError, OutputError

NAMES = ("cat", "dog", "bird", "cow")  # cow has no box: the class list must survive anyway
YOLO_SPLITS = {
    "train": {
        # a box at fractional pixels, and one touching the right, top and bottom edges
        "a.png": ((200, 100), "0 0.3123 0.4567 0.2011 0.3333\n2 0.9 0.5 0.2 1.0\n"),
        "b.jpg": ((90, 120), "1 0.5 0.5 0.5 0.25\n0 0.2 0.2 0.1 0.1\n"),
    },
    "val": {"c.png": ((64, 64), "0 0.25 0.25 0.2 0.2\n")},
    "test": {"d.png": ((100, 100), "")},  # a background image
}


def _yolo(root: Path) -> Path:
    lines = [f"{split}: images/{split}" for split in YOLO_SPLITS] + [f"names: {list(NAMES)}"]
    root.mkdir(parents=True)
    (root / "data.yaml").write_text("\n".join(lines) + "\n")
    rng = np.random.default_rng(0)
    for split, files in YOLO_SPLITS.items():
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        for name, ((width, height), rows) in files.items():
            pixels = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / "images" / split / name)
            (root / "labels" / split / Path(name).with_suffix(".txt")).write_text(rows)
    return root


VOC_OBJECTS = {  # (name, xmin, ymin, xmax, ymax, difficult), 1-based inclusive
    "x": [("RBC", 11, 21, 60, 50, 0), ("WBC", 101, 1, 200, 100, 1), ("RBC", 2, 3, 4, 5, 0)],
    "y": [("Platelets", 50, 40, 70, 61, 0)],
    "z": [("RBC", 1, 1, 10, 10, 1)],
}


def _voc(root: Path) -> Path:
    (root / "Annotations").mkdir(parents=True)
    (root / "JPEGImages").mkdir()
    (root / "ImageSets" / "Main").mkdir(parents=True)
    for stem, objects in VOC_OBJECTS.items():
        Image.fromarray(np.full((100, 200, 3), 90, np.uint8)).save(root / "JPEGImages" / f"{stem}.jpg")
        body = "".join(
            f"<object><name>{n}</name><difficult>{d}</difficult><bndbox><xmin>{a}</xmin><ymin>{b}</ymin>"
            f"<xmax>{c}</xmax><ymax>{e}</ymax></bndbox></object>"
            for n, a, b, c, e, d in objects
        )
        xml = f"<annotation><filename>{stem}.jpg</filename><size><width>200</width><height>100</height></size>"
        (root / "Annotations" / f"{stem}.xml").write_text(f"{xml}{body}</annotation>")
    for split, stems in {"train": ["x"], "val": ["y"], "test": ["z"]}.items():
        (root / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(f"{s}\n" for s in stems))
    return root


def _by_stem(src) -> dict[str, dict[str, tuple]]:
    """split → stem → (width, height, xyxy, classes, ignore xyxy, ignore classes) of a dataset read raw."""
    data = src if not isinstance(src, str | Path) else read_raw(src)
    return {
        split: {
            image.path.stem: (
                image.width,
                image.height,
                image.boxes.xyxy,
                image.boxes.classes.tolist(),
                image.ignore.xyxy,
                image.ignore.classes.tolist(),
            )
            for image in images
        }
        for split, images in data.splits.items()
    }


def _assert_same(a, b, atol: float) -> None:
    assert a.keys() == b.keys()
    for split in a:
        assert a[split].keys() == b[split].keys(), split
        for stem, (w, h, xyxy, classes, ignore, ignore_classes) in a[split].items():
            w2, h2, xyxy2, classes2, ignore2, ignore_classes2 = b[split][stem]
            assert (w, h, classes, ignore_classes) == (w2, h2, classes2, ignore_classes2), stem
            np.testing.assert_allclose(xyxy2, xyxy, atol=atol, rtol=0, err_msg=stem)
            np.testing.assert_allclose(ignore2, ignore, atol=atol, rtol=0, err_msg=stem)


def _snapshot(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()
    }


def test_yolo_to_coco_to_voc_to_yolo_keeps_every_box_class_and_split(tmp_path):
    src = _yolo(tmp_path / "src")
    before = _snapshot(src)
    start = read_raw(src)
    convert(src, "coco", tmp_path / "coco")
    convert(tmp_path / "coco", "voc", tmp_path / "voc")
    convert(tmp_path / "voc", "yolo", tmp_path / "yolo")
    assert _snapshot(src) == before  # the source is never changed
    _assert_same(_by_stem(start), _by_stem(tmp_path / "coco"), atol=1e-3)  # COCO: pixels with 3 decimals
    _assert_same(_by_stem(start), _by_stem(tmp_path / "voc"), atol=0.5)  # VOC: whole pixels
    _assert_same(_by_stem(start), _by_stem(tmp_path / "yolo"), atol=0.5 + 1e-3)
    for fmt in ("coco", "voc", "yolo"):
        assert read_raw(tmp_path / fmt).classes == NAMES and read_raw(tmp_path / fmt).problems == ()
    # The right-edge box is exact all the way: x2 = 200, y from 0 to 100.
    np.testing.assert_allclose(_by_stem(tmp_path / "yolo")["train"]["a"][2][1], [160, 0, 200, 100], atol=1e-3)
    assert (tmp_path / "yolo" / "images" / "train" / "b.jpg").read_bytes() == (
        src / "images" / "train" / "b.jpg"
    ).read_bytes()  # copied byte for byte, not re-encoded
    assert (tmp_path / "yolo" / "labels" / "train" / "a.txt").read_text().splitlines()[1] == (
        "2 0.900000 0.500000 0.200000 1.000000"
    )
    assert (tmp_path / "yolo" / "labels" / "test" / "d.txt").read_text() == ""  # background: an empty label file


def test_voc_to_coco_to_voc_is_exact_with_difficult_flags_and_image_sets(tmp_path):
    src = _voc(tmp_path / "src")
    summary = convert(src, "coco", tmp_path / "coco")
    assert summary.line() == (
        f"voc → coco in {tmp_path / 'coco'}: train 1 image, 2 boxes, 1 class; val 1 image, 1 box, 1 class; "
        "test 1 image, 0 boxes, 0 classes; no label problems"
    )
    doc = json.loads((tmp_path / "coco" / "train.json").read_text())
    assert doc["categories"] == [
        {"id": 1, "name": "Platelets", "supercategory": ""},
        {"id": 2, "name": "RBC", "supercategory": ""},
        {"id": 3, "name": "WBC", "supercategory": ""},
    ]
    assert doc["images"] == [{"id": 1, "file_name": "train/x.jpg", "width": 200, "height": 100}]
    assert [(a["category_id"], a["bbox"], a["iscrowd"]) for a in doc["annotations"]] == [
        (2, [10.0, 20.0, 50.0, 30.0], 0),  # xmin 11 … xmax 60: x 10, w 50
        (2, [1.0, 2.0, 3.0, 3.0], 0),
        (3, [100.0, 0.0, 100.0, 100.0], 1),  # difficult → iscrowd
    ]
    convert(tmp_path / "coco", "voc", tmp_path / "voc")
    for stem, objects in VOC_OBJECTS.items():
        written = (tmp_path / "voc" / "Annotations" / f"{stem}.xml").read_text()
        found = []
        for part in written.split("<object>")[1:]:
            value = {tag: part.split(f"<{tag}>")[1].split("<")[0] for tag in ("name", "difficult", "xmin", "ymin")}
            value.update({tag: part.split(f"<{tag}>")[1].split("<")[0] for tag in ("xmax", "ymax")})
            found.append((value["name"], *(int(value[t]) for t in ("xmin", "ymin", "xmax", "ymax", "difficult"))))
        assert sorted(found) == sorted(objects), stem
    sets = tmp_path / "voc" / "ImageSets" / "Main"
    assert {p.name: p.read_text() for p in sets.iterdir()} == {
        "train.txt": "x\n",
        "val.txt": "y\n",
        "trainval.txt": "x\ny\n",
        "test.txt": "z\n",
    }
    assert (tmp_path / "voc" / "classes.txt").read_text() == "Platelets\nRBC\nWBC\n"


def test_the_coco_written_loads_in_pycocotools_and_scores_its_own_boxes_perfectly(tmp_path):
    pytest.importorskip("pycocotools")
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    convert(_voc(tmp_path / "src"), "coco", tmp_path / "coco")
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(tmp_path / "coco" / "train.json"))
        anns = gt.loadAnns(gt.getAnnIds())
        results = [{**a, "score": 1.0} for a in anns if not a["iscrowd"]]
        evaluator = COCOeval(gt, gt.loadRes(results), iouType="bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    assert [a["iscrowd"] for a in anns] == [0, 0, 1] and gt.getCatIds() == [1, 2, 3]
    assert evaluator.stats[0] == pytest.approx(1.0)  # AP@[.5:.95]: its own boxes found exactly
    split, classes = load_coco(tmp_path / "coco" / "train.json", tmp_path / "coco" / "images", 200)
    assert classes == ("Platelets", "RBC", "WBC") and len(split.targets[0]) == 2 and len(split.crowds[0]) == 1


def test_coco_sources_in_the_coco_2017_layout_or_as_one_json(tmp_path):
    src = _voc(tmp_path / "src")
    convert(src, "coco", tmp_path / "ours")
    coco = tmp_path / "coco2017"  # annotations/instances_train2017.json, images in train2017/
    (coco / "annotations").mkdir(parents=True)
    for split in ("train", "val"):
        doc = json.loads((tmp_path / "ours" / f"{split}.json").read_text())
        for entry in doc["images"]:
            entry["file_name"] = entry["file_name"].removeprefix(f"{split}/")
        (coco / "annotations" / f"instances_{split}2017.json").write_text(json.dumps(doc))
        (tmp_path / "ours" / "images" / split).rename(coco / f"{split}2017")
    expected = _by_stem(src)
    del expected["test"]
    _assert_same(expected, _by_stem(coco), atol=0)
    one = read_raw(coco / "annotations" / "instances_val2017.json", coco / "val2017")  # one JSON: split "train"
    assert list(one.splits) == ["train"] and [i.path.name for i in one.splits["train"]] == ["y.jpg"]


def test_to_yolo_leaves_ignore_regions_out_and_says_so(tmp_path, capsys):
    src = _voc(tmp_path / "src")
    out = tmp_path / "yolo"
    assert main(["detect", "convert", str(src), "--to", "yolo", "--out", str(out)]) == 0
    assert capsys.readouterr().out == (
        f"voc → yolo in {out}: train 1 image, 2 boxes, 1 class; val 1 image, 1 box, 1 class; test 1 image, "
        "0 boxes, 0 classes; no label problems; 2 ignore region(s) (crowd/difficult) not written: YOLO has "
        "none\n"
    )
    assert (out / "data.yaml").read_text() == (
        "train: images/train\nval: images/val\ntest: images/test\nnc: 3\nnames:\n- Platelets\n- RBC\n- WBC\n"
    )
    assert (out / "labels" / "train" / "x.txt").read_text() == (
        "1 0.175000 0.350000 0.250000 0.300000\n1 0.012500 0.035000 0.015000 0.030000\n"
    )


def test_dropped_rows_are_counted_and_file_names_stay_unique(tmp_path):
    src = _yolo(tmp_path / "src")
    (src / "labels" / "val" / "c.txt").write_text("0 0.25 0.25 0.2 0.2\n9 0.5 0.5 0.1 0.1\n")
    Image.fromarray(np.zeros((10, 10, 3), np.uint8)).save(src / "images" / "val" / "a.png")  # a.png again
    summary = convert(src, "voc", tmp_path / "voc")
    assert (summary.dropped, summary.problems) == (2, "1 bad class id, 1 image with no label file")
    assert sorted(p.name for p in (tmp_path / "voc" / "JPEGImages").iterdir()) == [
        "a.png",
        "a_2.png",
        "b.jpg",
        "c.png",
        "d.png",
    ]
    assert (tmp_path / "voc" / "ImageSets" / "Main" / "val.txt").read_text() == "a_2\nc\n"


def test_a_non_empty_out_or_one_inside_the_source_is_refused_in_one_line(tmp_path, capsys):
    src = _yolo(tmp_path / "src")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    assert main(["detect", "convert", str(src), "--to", "coco", "--out", str(tmp_path / "full")]) == 2
    assert capsys.readouterr().err == (
        f"convscope: error: {tmp_path / 'full'}: not an empty folder; convert writes into a new or empty one, and "
        "changes nothing else\n"
    )
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine"
    with pytest.raises(DataError, match="inside the source"):
        convert(src, "coco", src / "converted")
    (tmp_path / "empty").mkdir()
    convert(src, "coco", tmp_path / "empty")  # an empty folder is fine
    assert (tmp_path / "empty" / "train.json").is_file()


def test_a_failure_leaves_nothing_half_written(tmp_path, monkeypatch):
    src = _yolo(tmp_path / "src")

    def fail_midway(data, out, names):
        (out / "train.json").write_text("{")
        raise OSError(28, "No space left on device")

    monkeypatch.setitem(FORMATS, "coco", dataclasses.replace(FORMATS["coco"], write=fail_midway))
    with pytest.raises(OutputError) as caught:
        convert(src, "coco", tmp_path / "out")
    assert str(caught.value) == f"{tmp_path / 'out'}: cannot write (No space left on device); nothing was written"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]  # no OUT, no temporary folder


def test_bccd_converted_to_yolo_and_coco_loads_with_the_same_boxes(tmp_path):
    root = shared_data("bccd-voc")
    convert(root, "yolo", tmp_path / "yolo")
    convert(root, "coco", tmp_path / "coco")
    yolo = load_yolo(tmp_path / "yolo", 320)
    counts = {}
    for split in ("train", "val", "test"):
        coco, _ = load_coco(tmp_path / "coco" / f"{split}.json", tmp_path / "coco" / "images", 320)
        counts[split] = (len(coco), sum(len(t) for t in coco.targets))
    splits = {"train": yolo.train, "val": yolo.val, "test": yolo.test}
    assert {name: (len(s), sum(len(t) for t in s.targets)) for name, s in splits.items()} == counts
    assert counts == {"train": (205, 2804), "val": (87, 1137), "test": (72, 945)}  # 4,888 less the 2 zero-size
