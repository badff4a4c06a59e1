"""The TensorFlow Object Detection CSV (the TF tutorials' train_labels.csv, Roboflow's _annotations.csv): every layout,
picked by the format table; 0-based pixel corners (the same boxes as the VOC reading of the same objects); every lint
check with its CSV and line; class lists and TF label maps; and round trips through `detect convert`."""

import csv
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from convscope.data.detection.convert import convert, read_raw
from convscope.data.detection.formats import format_of
from convscope.data.detection.tfcsv import lint_csv, load_csv, read_csv_raw
from convscope.data.detection.voc import load_voc
from convscope.errors import DataError

HEADER = "filename,width,height,class,xmin,ymin,xmax,ymax\n"
SIZES = {"a.jpg": (200, 100), "b.jpg": (120, 90), "c.jpg": (64, 64), "d.jpg": (100, 80)}
ROWS = {  # split → (filename, class, xmin, ymin, xmax, ymax): 0-based pixel corners
    "train": [("a.jpg", "cat", 10, 20, 60, 50), ("a.jpg", "dog", 0, 0, 200, 100), ("b.jpg", "dog", 5, 5, 40.5, 30)],
    "val": [("c.jpg", "cat", 1, 2, 33, 34)],
    "test": [("d.jpg", "", "", "", "", "")],  # an image without boxes: an empty class
}
EXPECTED = {  # split → file → (width, height, xyxy, classes) read raw, classes sorted: cat 0, dog 1
    "train": {
        "a.jpg": (200, 100, [[10, 20, 60, 50], [0, 0, 200, 100]], [0, 1]),
        "b.jpg": (120, 90, [[5, 5, 40.5, 30]], [1]),
    },
    "val": {"c.jpg": (64, 64, [[1, 2, 33, 34]], [0])},
    "test": {"d.jpg": (100, 80, np.zeros((0, 4)), [])},
}


def _jpeg(path: Path, size: tuple[int, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(len(path.name)).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, quality=90)


def _csv(path: Path, rows: list[tuple], split: str | None = None, header: str = HEADER) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [header.rstrip("\n") + (",split" if split else "")]
    for name, *rest in rows:
        size = SIZES.get(name, (0, 0))
        lines.append(",".join(map(str, (name, *size, *rest))) + (f",{split}" if split else ""))
    path.write_text("\n".join(lines) + "\n")
    return path


def _by_name(data) -> dict:
    return {
        split: {i.path.name: (i.width, i.height, i.boxes.xyxy, i.boxes.classes.tolist()) for i in images}
        for split, images in data.splits.items()
    }


def _assert_boxes(found: dict, expected: dict, atol: float = 0) -> None:
    assert found.keys() == expected.keys()
    for split in expected:
        assert found[split].keys() == expected[split].keys(), split
        for name, (w, h, xyxy, classes) in expected[split].items():
            w2, h2, xyxy2, classes2 = found[split][name]
            assert (w2, h2, classes2) == (w, h, classes), name
            np.testing.assert_allclose(xyxy2, np.reshape(xyxy, (-1, 4)), atol=atol, rtol=0, err_msg=name)


# ── layouts ───────────────────────────────────────────────────────────────────────────────────────────────────────
def _single_file(root: Path) -> Path:  # one CSV without a split column: the train split, images beside it
    for name in ("a.jpg", "b.jpg"):
        _jpeg(root / name, SIZES[name])
    return _csv(root / "train_labels.csv", ROWS["train"])


def _split_column(root: Path) -> Path:  # one CSV with a split column, images in images/ beside it
    for name, size in SIZES.items():
        _jpeg(root / "images" / name, size)
    text = HEADER.rstrip("\n") + ",split\n"
    for split, word in (("train", "train"), ("val", "Valid"), ("test", "test")):
        text += _rows_text(ROWS[split], word)
    (root / "all.csv").write_bytes(("\ufeff" + text).replace("\n", "\r\n").encode())  # a BOM and CRLF
    return root / "all.csv"


def _rows_text(rows: list[tuple], split: str) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows((n, *SIZES[n], *rest, split) for n, *rest in rows)
    return out.getvalue()


def _root_files(root: Path) -> Path:  # SPLIT_labels.csv at the root, images in images/SPLIT/
    for split, word in (("train", "train"), ("val", "val"), ("test", "test")):
        _csv(root / f"{word}_labels.csv", ROWS[split])
        for name in {r[0] for r in ROWS[split]}:
            _jpeg(root / "images" / word / name, SIZES[name])
    return root


def _annotations_folder(root: Path) -> Path:  # annotations/SPLIT.csv, every image in images/
    for split, word in (("train", "train"), ("val", "validation"), ("test", "test")):
        _csv(root / "annotations" / f"{word}.csv", ROWS[split])
    for name, size in SIZES.items():
        _jpeg(root / "images" / name, size)
    return root


def _roboflow(root: Path) -> Path:  # train/_annotations.csv, valid/…, test/…, images beside each
    for split, word in (("train", "train"), ("val", "valid"), ("test", "test")):
        _csv(root / word / "_annotations.csv", ROWS[split])
        for name in {r[0] for r in ROWS[split]}:
            _jpeg(root / word / name, SIZES[name])
    (root / "README.roboflow.txt").write_text("exported from roboflow.com\n")
    return root


@pytest.mark.parametrize("make", [_split_column, _root_files, _annotations_folder, _roboflow])
def test_every_layout_is_picked_by_the_format_table_and_reads_the_same_boxes(tmp_path, make):
    path = make(tmp_path / "ds")
    assert format_of(path).name == "csv"
    raw = read_raw(path)
    assert (raw.format, raw.classes, raw.problems) == ("csv", ("cat", "dog"), ())
    _assert_boxes(_by_name(raw), EXPECTED)
    data = load_csv(path, 64)
    assert [len(s) for s in (data.train, data.val, data.test)] == [2, 1, 1]
    scale = 64 / 200  # a.jpg, 200×100: letterboxed with scale 0.32, 16 pixels of padding above
    np.testing.assert_allclose(data.train.targets[0].xyxy[0], np.array([10, 20, 60, 50]) * scale + [0, 16, 0, 16])


def test_one_csv_without_a_split_column_is_the_train_split(tmp_path):
    path = _single_file(tmp_path / "ds")
    assert format_of(path).name == "csv" and format_of(tmp_path / "ds").name == "csv"
    data = load_csv(path, 64)
    assert (data.val, data.test, data.classes, data.name) == (None, None, ("cat", "dog"), "train_labels")
    assert data.train.names == ("a.jpg", "b.jpg") and [len(t) for t in data.train.targets] == [2, 1]
    other = tmp_path / "elsewhere"  # --data-dir: the images are there
    for name in ("a.jpg", "b.jpg"):
        _jpeg(other / name, SIZES[name])
        (tmp_path / "ds" / name).unlink()
    _assert_boxes(_by_name(read_csv_raw(path, data_dir=other)), {"train": EXPECTED["train"]})


@pytest.mark.parametrize("data", ["ds", "ds/images", "ds/images/train_labels.csv"])
def test_the_tf_tutorial_layout_images_train_labels_csv_beside_images_train(tmp_path, data):
    root = tmp_path / "ds"
    for split in ("train", "test"):
        _csv(root / "images" / f"{split}_labels.csv", ROWS[split])
        for name in {r[0] for r in ROWS[split]}:
            _jpeg(root / "images" / split / name, SIZES[name])
    raw = read_raw(tmp_path / data)
    expected = {"train": EXPECTED["train"]} if data.endswith(".csv") else {s: EXPECTED[s] for s in ("train", "test")}
    assert raw.problems == ()
    _assert_boxes(_by_name(raw), expected)


def test_the_boxes_equal_the_voc_reading_of_the_same_objects(tmp_path):
    root = tmp_path / "voc"
    (root / "Annotations").mkdir(parents=True)
    (root / "ImageSets" / "Main").mkdir(parents=True)
    rows = [("a.jpg", "cat", 10, 20, 60, 50), ("a.jpg", "dog", 0, 0, 200, 100), ("b.jpg", "dog", 5, 5, 40, 30)]
    for name in ("a.jpg", "b.jpg"):
        _jpeg(root / "JPEGImages" / name, SIZES[name])
        objects = "".join(
            f"<object><name>{c}</name><bndbox><xmin>{x1 + 1}</xmin><ymin>{y1 + 1}</ymin><xmax>{x2}</xmax>"
            f"<ymax>{y2}</ymax></bndbox></object>"  # VOC: 1-based, inclusive
            for n, c, x1, y1, x2, y2 in rows
            if n == name
        )
        (root / "Annotations" / f"{name[0]}.xml").write_text(
            f"<annotation><filename>{name}</filename>{objects}</annotation>"
        )
    (root / "ImageSets" / "Main" / "train.txt").write_text("a\nb\n")
    path = _csv(tmp_path / "csv" / "train_labels.csv", rows)
    for name in ("a.jpg", "b.jpg"):
        (tmp_path / "csv" / name).write_bytes((root / "JPEGImages" / name).read_bytes())
    voc, ours = load_voc(root, 96), load_csv(path, 96)
    assert voc.classes == ours.classes and voc.train.names == ("JPEGImages/a.jpg", "JPEGImages/b.jpg")
    np.testing.assert_array_equal(ours.train.images, voc.train.images)
    for mine, theirs in zip(ours.train.targets, voc.train.targets, strict=True):
        np.testing.assert_array_equal(mine.xyxy, theirs.xyxy)
        np.testing.assert_array_equal(mine.classes, theirs.classes)


# ── problems ──────────────────────────────────────────────────────────────────────────────────────────────────────
def test_every_problem_names_the_csv_and_its_line(tmp_path):
    root = tmp_path / "ds"
    for name in ("a.jpg", "b.jpg", "e.jpg"):
        _jpeg(root / name, SIZES.get(name, (50, 50)))
    _jpeg(root / "unlisted.jpg", (10, 10))
    (root / "classes.txt").write_text("cat\ndog\n")
    text = HEADER + "\n".join(
        [
            "a.jpg,200,100,cat,10,20,60,50",  # 2: fine
            "a.jpg,200,100,bird,10,20,60,50",  # 3: not in classes.txt
            "a.jpg,200,100,dog,ten,20,60,50",  # 4: not a number
            "a.jpg,200,100,dog,60,20,10,50",  # 5: inverted
            "a.jpg,200,100,dog,10,20,10,50",  # 6: zero width
            "a.jpg,200,100,dog,190,90,230,120",  # 7: past the edge: clipped (a note)
            "a.jpg,200,100,dog,300,10,350,50",  # 8: wholly outside
            "a.jpg,200,100,cat,10,20,60.5,50",  # 9: duplicate of line 2
            "b.jpg,999,90,dog,5,5,40,30",  # 10: width disagrees with the image
            "gone.jpg,10,10,cat,1,1,5,5",  # 11: no such image
            "b.jpg,120,90,dog,5,5",  # 12: too few columns
            "e.jpg,50,50,,,,,",  # 13: an image without boxes
        ]
    )
    path = root / "train_labels.csv"
    path.write_text(text + "\n")
    found = [(p.path, p.line, p.kind) for p in lint_csv(path)]
    assert found == [
        ("train_labels.csv", 12, "columns"),
        ("train_labels.csv", 3, "unknown-class"),
        ("train_labels.csv", 4, "number"),
        ("train_labels.csv", 5, "size"),
        ("train_labels.csv", 6, "size"),
        ("train_labels.csv", 8, "outside"),
        ("train_labels.csv", 9, "duplicate"),
        ("train_labels.csv", 10, "image-size"),
        ("train_labels.csv", 11, "missing"),
        ("unlisted.jpg", None, "no-label"),
        ("train_labels.csv", None, "clipped"),
    ]
    messages = {p.line: p.message for p in lint_csv(path)}
    assert messages[3] == "class 'bird' is not in the class list (cat, dog), row skipped"
    assert messages[5] == "inverted box (xmin 60, ymin 20, xmax 10, ymax 50: expected xmax > xmin and ymax > ymin)"
    assert messages[9].startswith("duplicate of the box on line 2 (IoU 0.99)")
    assert messages[10] == "width, height say 999×90 but b.jpg is 120×90; the image's own size is used"
    raw = read_csv_raw(path)
    _assert_boxes(
        _by_name(raw),
        {
            "train": {
                "a.jpg": (200, 100, [[10, 20, 60, 50], [190, 90, 200, 100]], [0, 1]),
                "b.jpg": (120, 90, [[5, 5, 40, 30]], [1]),
                "e.jpg": (50, 50, np.zeros((0, 4)), []),
            }
        },
    )


def test_a_missing_column_is_one_line_naming_the_file_and_column(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text("filename,width,height,class,xmin,ymin,ymax\na.jpg,1,1,cat,1,1,1\n")
    with pytest.raises(DataError) as caught:
        load_csv(path, 64)
    assert str(caught.value) == (
        f"{path}, line 1: expected a header naming the column 'xmax' (filename, width, height, class, xmin, ymin, "
        "xmax, ymax), found filename, width, height, class, xmin, ymin, ymax"
    )
    (tmp_path / "empty").mkdir()
    _csv(tmp_path / "empty" / "test_labels.csv", [])
    with pytest.raises(DataError, match=r"expected a train CSV .* found test$"):
        read_csv_raw(tmp_path / "empty")


def test_a_bad_split_value_is_a_problem_and_a_csv_with_no_train_box_is_refused(tmp_path):
    root = tmp_path / "ds"
    _jpeg(root / "a.jpg", SIZES["a.jpg"])
    path = _csv(root / "data.csv", [("a.jpg", "cat", 10, 20, 60, 50)], split="holdout")
    assert [(p.line, p.kind) for p in lint_csv(path)] == [(2, "entry"), (None, "no-box")]
    with pytest.raises(DataError, match="expected training images with at least one box"):
        load_csv(path, 64)


# ── classes ───────────────────────────────────────────────────────────────────────────────────────────────────────
def test_a_label_map_gives_the_class_order_by_id(tmp_path):
    path = _single_file(tmp_path / "ds")
    (tmp_path / "ds" / "label_map.pbtxt").write_text(
        "# written by hand\nitem {\n  id: 2\n  name: 'dog'\n}\nitem { id: 1 name: \"cat\" }\n"
        "item {\n  name: 'bird'  # no box\n  id: 3\n  display_name: 'Bird'\n}\n"
    )
    raw = read_csv_raw(path)
    assert raw.classes == ("cat", "dog", "bird")
    assert [i.boxes.classes.tolist() for i in raw.splits["train"]] == [[0, 1], [1]]
    (tmp_path / "ds" / "label_map.pbtxt").write_text(
        "item {\n  id: 1\n  name: 'cat'\n}\nitem {\n  id: 1\n  name: 'x'\n}\n"
    )
    with pytest.raises(DataError, match=r"label_map\.pbtxt, line 5: id 1 appears twice$"):
        read_csv_raw(path)
    (tmp_path / "ds" / "classes.txt").write_text("dog\ncat\n")  # a classes.txt comes first
    assert read_csv_raw(path).classes == ("dog", "cat")


# ── convert ───────────────────────────────────────────────────────────────────────────────────────────────────────
def test_voc_to_csv_to_voc_is_exact(tmp_path):
    src = _roboflow(tmp_path / "src")
    convert(src, "voc", tmp_path / "voc")
    summary = convert(tmp_path / "voc", "csv", tmp_path / "csv")
    assert summary.line() == (
        f"voc → csv in {tmp_path / 'csv'}: train 2 images, 3 boxes, 2 classes; val 1 image, 1 box, 1 class; "
        "test 1 image, 0 boxes, 0 classes; no label problems"
    )
    assert (tmp_path / "csv" / "train" / "_annotations.csv").read_text().splitlines()[:3] == [
        "filename,width,height,class,xmin,ymin,xmax,ymax",
        "a.jpg,200,100,cat,10,20,60,50",
        "a.jpg,200,100,dog,0,0,200,100",
    ]
    assert (tmp_path / "csv" / "test" / "_annotations.csv").read_text() == HEADER + "d.jpg,100,80,,,,,\n"
    assert sorted(p.name for p in (tmp_path / "csv").iterdir()) == ["classes.txt", "test", "train", "valid"]
    convert(tmp_path / "csv", "voc", tmp_path / "voc2")
    for xml in (tmp_path / "voc" / "Annotations").iterdir():
        assert (tmp_path / "voc2" / "Annotations" / xml.name).read_text() == xml.read_text()
    again = read_raw(tmp_path / "csv")
    assert again.classes == ("cat", "dog") and again.problems == ()
    _assert_boxes(
        _by_name(again), {**EXPECTED, "train": {**EXPECTED["train"], "b.jpg": (120, 90, [[5, 5, 40, 30]], [1])}}
    )  # VOC: whole pixels


def test_yolo_to_csv_to_yolo_keeps_fractional_boxes_backgrounds_and_unused_classes(tmp_path):
    src = tmp_path / "yolo"
    (src / "data.yaml").parent.mkdir(parents=True)
    (src / "data.yaml").write_text("train: images/train\nval: images/val\nnames: [cat, dog, cow]\n")
    labels = {
        "train": {"a.jpg": "0 0.3123 0.4567 0.2011 0.3333\n1 0.9 0.5 0.2 1.0\n", "d.jpg": ""},
        "val": {"c.jpg": "1 0.5 0.5 0.25 0.5\n"},
    }
    for split, files in labels.items():
        for name, text in files.items():
            _jpeg(src / "images" / split / name, SIZES[name])
            (src / "labels" / split).mkdir(parents=True, exist_ok=True)
            (src / "labels" / split / f"{name[0]}.txt").write_text(text)
    start = read_raw(src)
    convert(src, "csv", tmp_path / "csv")
    convert(tmp_path / "csv", "yolo", tmp_path / "back")
    middle, back = read_raw(tmp_path / "csv"), read_raw(tmp_path / "back")
    assert start.classes == middle.classes == back.classes == ("cat", "dog", "cow")
    assert middle.problems == back.problems == ()
    _assert_boxes(_by_name(middle), _by_name(start), atol=1e-3)  # pixels with 3 decimals
    _assert_boxes(_by_name(back), _by_name(start), atol=1e-3)
    assert (tmp_path / "back" / "labels" / "train" / "a.txt").read_text() == (
        "0 0.312300 0.456700 0.201100 0.333300\n1 0.900000 0.500000 0.200000 1.000000\n"
    )
    assert (tmp_path / "back" / "labels" / "train" / "d.txt").read_text() == ""
