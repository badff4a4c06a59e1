"""Detection data: letterbox geometry, YOLO and COCO loading, and the label lint on crafted bad datasets."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from convscope import DataError
from convscope.data.detection.boxes import (
    PAD_VALUE,
    Boxes,
    DetectionSplit,
    LabelProblem,
    letterbox,
    lint_summary,
)
from convscope.data.detection.coco import load_coco
from convscope.data.detection.yolo import label_path, lint_yolo, load_yolo

# --- letterbox ------------------------------------------------------------------------------------------------------


def _rectangle(width: int, height: int, xyxy: tuple[int, int, int, int]) -> np.ndarray:
    """Black width×height RGB image with a white rectangle covering pixels [x1, x2)×[y1, y2)."""
    image = np.zeros((height, width, 3), np.uint8)
    x1, y1, x2, y2 = xyxy
    image[y1:y2, x1:x2] = 255
    return image


@pytest.mark.parametrize(
    "width, height, xyxy, size",
    [
        (100, 50, (20, 10, 60, 30), 64),  # wide, shrunk
        (40, 90, (5, 30, 25, 80), 64),  # tall
        (1000, 400, (200, 100, 700, 300), 128),  # big shrink: Pillow reduces first
        (30, 20, (3, 4, 17, 12), 96),  # enlarged
    ],
)
def test_letterbox_maps_boxes_as_x_times_scale_plus_pad(width, height, xyxy, size):
    out, scale, (pad_x, pad_y) = letterbox(_rectangle(width, height, xyxy), size)
    assert out.shape == (size, size, 3) and out.dtype == np.uint8
    assert scale == pytest.approx(size / max(width, height))
    x1, y1, x2, y2 = (np.array(xyxy) * scale + [pad_x, pad_y, pad_x, pad_y]).tolist()
    # The white mass and its centroid land where the mapped box says (the edges are blurred, not moved).
    gray = out[..., 0].astype(np.float64)
    new_w, new_h = math.floor(width * scale + 1e-9), math.floor(height * scale + 1e-9)
    assert (pad_x, pad_y) == ((size - new_w) // 2, (size - new_h) // 2)
    content = np.zeros_like(gray, bool)
    content[pad_y : pad_y + new_h, pad_x : pad_x + new_w] = True
    assert (out[~content] == PAD_VALUE).all()
    mass = np.where(content, gray, 0) / 255
    ys, xs = np.mgrid[0:size, 0:size] + 0.5  # pixel centres
    assert mass.sum() == pytest.approx((x2 - x1) * (y2 - y1), rel=0.02)
    assert (mass * xs).sum() / mass.sum() == pytest.approx((x1 + x2) / 2, abs=0.15)
    assert (mass * ys).sum() / mass.sum() == pytest.approx((y1 + y2) / 2, abs=0.15)


def test_letterbox_pads_the_shorter_side_evenly():
    out, scale, pad = letterbox(np.full((50, 100, 3), 200, np.uint8), 64)
    assert scale == 0.64 and pad == (0, 16)
    assert (out[:16] == PAD_VALUE).all() and (out[48:] == PAD_VALUE).all() and (out[16:48] == 200).all()


def test_letterbox_refuses_what_is_not_an_image():
    with pytest.raises(DataError, match="uint8 H×W×C"):
        letterbox(np.zeros((4, 4)), 8)
    with pytest.raises(DataError, match="positive number of pixels"):
        letterbox(np.zeros((4, 4, 3), np.uint8), 0)


def test_label_path_follows_yolo():
    assert label_path(Path("ds/images/train/a.png")) == Path("ds/labels/train/a.txt")
    assert label_path(Path("ds/train/images/b.jpg")) == Path("ds/train/labels/b.txt")
    assert label_path(Path("images/x/images/c.png")) == Path("images/x/labels/c.txt")  # the last `images` folder
    assert label_path(Path("ds/pictures/d.png")) == Path("ds/pictures/d.txt")


def test_dataclasses_check_shapes():
    assert len(Boxes.empty()) == 0
    with pytest.raises(DataError, match="float32 n×4"):
        Boxes(np.zeros((2, 3), np.float32), np.zeros(2, np.int64))
    with pytest.raises(DataError, match="uint8 N×S×S×3"):
        DetectionSplit(np.zeros((1, 8, 9, 3), np.uint8), (Boxes.empty(),), ("a",))
    assert len(DetectionSplit(np.zeros((1, 8, 8, 3), np.uint8), (Boxes.empty(),), ("a",))) == 1


# --- YOLO ---------------------------------------------------------------------------------------------------------


def _yolo(root: Path, names=("cat", "dog", "bird"), yaml_extra: str = "", splits=("train",)) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    lines = [f"{split}: images/{split}" for split in splits] + [f"names: {list(names)}", yaml_extra]
    (root / "data.yaml").write_text("\n".join(lines) + "\n")
    for split in splits:
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
    return root


def _image(root: Path, name: str, width: int = 200, height: int = 100, split: str = "train") -> Path:
    path = root / "images" / split / name
    Image.fromarray(np.full((height, width, 3), 90, np.uint8)).save(path)
    return path


def _labels(root: Path, name: str, text: str, split: str = "train") -> None:
    (root / "labels" / split / name).write_text(text)


def test_load_yolo_round_trips_boxes_on_non_square_images(tmp_path):
    root = _yolo(tmp_path / "ds", splits=("train", "val"))
    _image(root, "a.png", 200, 100)  # scale 0.32 at 64 px, pad (0, 16)
    _labels(root, "a.txt", "0 0.5 0.5 0.2 0.4\n2 0.1 0.15 0.1 0.1\n")
    _image(root, "b.png", 50, 80, split="val")  # scale 0.8, new width floor(40) → pad (12, 0)
    _labels(root, "b.txt", "1 0.5 0.25 0.4 0.5\n", split="val")
    data = load_yolo(root, 64)
    assert data.classes == ("cat", "dog", "bird") and data.test is None and not data.problems
    assert data.train.names == ("images/train/a.png",) and data.val.names == ("images/val/b.png",)
    a = data.train.targets[0]
    expected = np.array([[80, 30, 120, 70], [10, 10, 30, 20]]) * 0.32 + [0, 16, 0, 16]
    np.testing.assert_allclose(a.xyxy, expected, atol=1e-4)
    assert a.classes.tolist() == [0, 2] and a.xyxy.dtype == np.float32
    b = data.val.targets[0]
    np.testing.assert_allclose(b.xyxy, [[15 * 0.8 + 12, 0, 35 * 0.8 + 12, 40 * 0.8]], atol=1e-4)
    assert data.train.images.shape == (1, 64, 64, 3) and (data.train.images[0, :16] == PAD_VALUE).all()


def test_yaml_names_dict_and_path_key(tmp_path):
    root = tmp_path / "ds"
    inner = _yolo(root / "inner")
    (inner / "data.yaml").unlink()
    (root / "data.yaml").write_text("path: inner\ntrain: images/train\nnc: 2\nnames:\n  0: cat\n  1: dog\n")
    _image(inner, "a.png")
    _labels(inner, "a.txt", "1 0.5 0.5 0.2 0.2\n")
    data = load_yolo(root / "data.yaml", 32)
    assert data.classes == ("cat", "dog") and data.train.targets[0].classes.tolist() == [1]


def test_roboflow_layout(tmp_path):
    root = tmp_path / "ds"
    (root / "train" / "images").mkdir(parents=True)
    (root / "train" / "labels").mkdir()
    (root / "data.yaml").write_text("train: ../train/images\nnames: [a]\n")  # as Roboflow writes it
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(root / "train" / "images" / "x.jpg")
    (root / "train" / "labels" / "x.txt").write_text("0 0.5 0.5 0.5 0.5\n")
    data = load_yolo(root, 20)
    assert data.train.names == ("train/images/x.jpg",)
    np.testing.assert_allclose(data.train.targets[0].xyxy, [[5, 5, 15, 15]])


@pytest.mark.parametrize(
    "text, message",
    [
        ("train: images/train\nnames: {0: a, 2: b}\n", r"expected class ids 0\.\.1"),
        ("train: images/train\nnc: 3\nnames: [a, b]\n", "nc is 3 but names lists 2 classes"),
        ("names: [a]\n", "expected a train: entry"),
        ("train: images/nowhere\nnames: [a]\n", "expected a folder of images"),
        ("train: [images/train\n", r"data.yaml, line 2: not valid YAML"),
        ("- just a list\n", "expected a mapping"),
    ],
)
def test_bad_data_yaml_is_a_data_error_naming_it(tmp_path, text, message):
    root = _yolo(tmp_path / "ds")
    (root / "data.yaml").write_text(text)
    with pytest.raises(DataError, match=message) as caught:
        load_yolo(root, 32)
    assert "data.yaml" in str(caught.value) and "\n" not in str(caught.value)


def test_missing_data_yaml(tmp_path):
    with pytest.raises(DataError, match="found no data.yaml"):
        load_yolo(tmp_path, 32)


BAD_ROWS = """\
0 0.5 0.5 0.2 0.2
1 0.5 0.5 0.2
1 0.5 abc 0.2 0.2
12 0.5 0.5 0.2 0.2
1.5 0.5 0.5 0.2 0.2
1 0.95 0.5 0.2 0.2
2 0.5 0.5 0 0.2
0 0.51 0.5 0.2 0.2

2 0.3 0.3 0.1 0.1
1 0.5 0.5 0.001 0.2
0 0.5 0.5 nan 0.2
"""

EXPECTED = {
    (
        "labels/train/a.txt",
        2,
        "columns",
        "expected 5 columns (class cx cy w h) or a polygon (class x1 y1 x2 y2 x3 y3 …: an odd number of columns, "
        "at least 7), found 4",
    ),
    ("labels/train/a.txt", 3, "number", "expected a number, found 'abc'"),
    ("labels/train/a.txt", 4, "class", "class 12 out of range (0–2)"),
    ("labels/train/a.txt", 5, "class", "class 1.5 is not an integer"),
    ("labels/train/a.txt", 6, "outside", "coordinates outside [0, 1]: x 0.85 to 1.05, y 0.4 to 0.6"),
    ("labels/train/a.txt", 7, "size", "zero-size box (w 0, h 0.2)"),
    ("labels/train/a.txt", 8, "duplicate", "duplicate of line 1 (IoU 0.90)"),
    ("labels/train/a.txt", 11, "size", "box under 1 pixel after resizing to 64 px (0.06×6.40 px)"),
    ("labels/train/a.txt", 12, "number", "expected a number, found 'nan'"),
    ("images/train/b.png", None, "no-label", "no label file (labels/train/b.txt): treated as an image with no objects"),
    ("labels/train/c.txt", None, "orphan", "label file with no image"),
}


def _bad_dataset(root: Path) -> Path:
    """One image of each kind: a (many bad rows, two good), b (no labels), c.txt (no image), d (not an image)."""
    _yolo(root)
    _image(root, "a.png", 200, 100)
    _labels(root, "a.txt", BAD_ROWS)
    _image(root, "b.png")
    _labels(root, "c.txt", "0 0.5 0.5 0.1 0.1\n")
    (root / "images" / "train" / "d.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    _labels(root, "d.txt", "0 0.5 0.5 0.1 0.1\n")
    return root


def test_every_lint_check_fires_with_file_and_line_and_good_rows_survive(tmp_path):
    root = _bad_dataset(tmp_path / "ds")
    # Row 8 overlaps row 1 with IoU 0.90 only: not a duplicate at 0.95. Make it one.
    (root / "labels" / "train" / "a.txt").write_text(BAD_ROWS.replace("0 0.51 0.5", "0 0.501 0.5"))
    data = load_yolo(root, 64)
    found = {(p.path, p.line, p.kind, p.message) for p in data.problems if p.kind != "unreadable"}
    expected = {e if e[2] != "duplicate" else (*e[:3], "duplicate of line 1 (IoU 0.99)") for e in EXPECTED}
    assert found == expected
    (unreadable,) = [p for p in data.problems if p.kind == "unreadable"]
    assert unreadable.path == "images/train/d.png" and unreadable.message.startswith("unreadable image, skipped")
    assert data.train.names == ("images/train/a.png", "images/train/b.png")  # d left out, b kept
    a, b = data.train.targets
    np.testing.assert_allclose(a.xyxy, np.array([[80, 40, 120, 60], [50, 25, 70, 35]]) * 0.32 + [0, 16, 0, 16])
    assert a.classes.tolist() == [0, 2] and len(b) == 0
    assert (
        str(next(p for p in data.problems if p.line == 4)) == "labels/train/a.txt, line 4: class 12 out of range (0–2)"
    )
    assert data.problems == data.train.problems


def test_lint_yolo_reports_the_same_without_keeping_images(tmp_path):
    root = _bad_dataset(tmp_path / "ds")
    problems = lint_yolo(root, image_size=64)
    found = {(p.path, p.line, p.kind) for p in problems}
    assert found == {e[:3] for e in EXPECTED} - {("labels/train/a.txt", 8, "duplicate")} | {
        ("images/train/d.png", None, "unreadable")
    }
    # Without a size the 1-pixel check uses the original 200 px: 0.001 × 200 = 0.2 px, still too small.
    (tiny,) = [p for p in lint_yolo(root) if p.line == 11]
    assert tiny.message == "box under 1 pixel (0.20×20.00 px)"


def test_duplicate_threshold(tmp_path):
    root = _yolo(tmp_path / "ds")
    _image(root, "a.png", 100, 100)
    # IoU 0.98 with line 1 (a duplicate); IoU 0.90 (kept); the same box in another class (kept).
    _labels(root, "a.txt", "0 0.5 0.5 0.5 0.5\n0 0.505 0.5 0.5 0.5\n0 0.525 0.5 0.5 0.5\n1 0.5 0.5 0.5 0.5\n")
    data = load_yolo(root, 100)
    assert [(p.line, p.message) for p in data.problems] == [(2, "duplicate of line 1 (IoU 0.98)")]
    assert data.train.targets[0].classes.tolist() == [0, 0, 1]


def test_lint_summary_counts_kinds():
    problems = [LabelProblem("a", 1, "m", "outside")] * 3 + [
        LabelProblem("a", 2, "m", "duplicate"),
        LabelProblem("a", 3, "m", "number"),
        LabelProblem("a", 4, "m", "number"),
    ]
    assert lint_summary(problems) == "3 boxes outside the image, 2 values that are not numbers, 1 duplicate box"
    assert lint_summary([]) == "no problems"
    assert str(LabelProblem("images/x.png", None, "unreadable")) == "images/x.png: unreadable"


def test_nothing_valid_raises_with_the_summary(tmp_path):
    root = _yolo(tmp_path / "ds")
    _image(root, "a.png")
    _labels(root, "a.txt", "7 0.5 0.5 0.2 0.2\n0 1.5 0.5 0.2 0.2\n0 0.5 0.5 0.2\n")
    _image(root, "b.png")
    with pytest.raises(DataError) as caught:
        load_yolo(root, 32)
    message = str(caught.value)
    assert "\n" not in message and "data.yaml: expected training images with at least one box" in message
    assert "2 usable image(s), none with a box" in message
    assert "4 label problem(s)" in message
    summary = "1 row with the wrong number of columns, 1 bad class id, 1 box outside the image, 1 image with no label"
    assert summary in message
    assert "labels/train/a.txt, line 1: class 7 out of range (0–2)" in message


def test_empty_training_folder_raises(tmp_path):
    with pytest.raises(DataError, match="0 usable image"):
        load_yolo(_yolo(tmp_path / "ds"), 32)


def test_unreadable_label_file_skips_its_image(tmp_path):
    root = _yolo(tmp_path / "ds")
    _image(root, "a.png")
    _labels(root, "a.txt", "0 0.5 0.5 0.2 0.2\n")
    _image(root, "b.png")
    (root / "labels" / "train" / "b.txt").write_bytes(b"\xff\xfe\x00binary")
    data = load_yolo(root, 32)
    assert data.train.names == ("images/train/a.png",)
    assert [(p.path, p.kind) for p in data.problems] == [("labels/train/b.txt", "label-file")]


# --- COCO ---------------------------------------------------------------------------------------------------------


def _coco(tmp_path: Path) -> tuple[Path, Path]:
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(np.full((100, 200, 3), 60, np.uint8)).save(images / "wide.png")  # 200×100
    Image.fromarray(np.full((80, 50, 3), 60, np.uint8)).save(images / "tall.jpg")  # 50×80
    doc = {
        "images": [
            {"id": 1, "file_name": "wide.png", "width": 200, "height": 100},
            {"id": 2, "file_name": "tall.jpg", "width": 50, "height": 80},
            {"id": 3, "file_name": "gone.png", "width": 10, "height": 10},
            {"id": 4, "file_name": "../escape.png"},
        ],
        "categories": [{"id": 7, "name": "dog"}, {"id": 3, "name": "cat"}],
        "annotations": [
            {"id": 10, "image_id": 1, "category_id": 7, "bbox": [20, 10, 50, 40]},
            {"id": 11, "image_id": 1, "category_id": 3, "bbox": [100, 50, 100, 50]},
            {"id": 12, "image_id": 2, "category_id": 3, "bbox": [5, 8, 20, 40]},
            {"id": 13, "image_id": 9, "category_id": 3, "bbox": [0, 0, 5, 5]},
            {"id": 14, "image_id": 1, "category_id": 5, "bbox": [0, 0, 5, 5]},
            {"id": 15, "image_id": 1, "category_id": 7, "bbox": [0, 0, 50, 50], "iscrowd": 1},  # an ignore region
            {"id": 16, "image_id": 1, "category_id": 7, "bbox": [0, 0, 0, 5]},
            {"id": 17, "image_id": 2, "category_id": 7, "bbox": [30, 10, 30, 10]},
            {"id": 18, "image_id": 1, "category_id": 7, "bbox": [20, 10, 50, 40.5]},
            {"id": 19, "image_id": 1, "category_id": 7, "bbox": [20, 10, "w", 40]},
            {"id": 20, "image_id": 3, "category_id": 7, "bbox": [1, 1, 5, 5]},
        ],
    }
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(doc))
    return path, images


def test_load_coco_letterboxes_and_maps_categories(tmp_path):
    path, images = _coco(tmp_path)
    split, classes = load_coco(path, images, 64)
    assert classes == ("cat", "dog")  # sorted category ids 3, 7 → 0, 1
    assert split.names == ("wide.png", "tall.jpg") and split.images.shape == (2, 64, 64, 3)
    wide, tall = split.targets
    # wide: 200×100 → scale 0.32, pad (0, 16)
    np.testing.assert_allclose(wide.xyxy, np.array([[20, 10, 70, 50], [100, 50, 200, 100]]) * 0.32 + [0, 16, 0, 16])
    assert wide.classes.tolist() == [1, 0]
    # tall: 50×80 → scale 0.8, width floor(40) → pad (12, 0)
    np.testing.assert_allclose(tall.xyxy, [[5 * 0.8 + 12, 8 * 0.8, 25 * 0.8 + 12, 48 * 0.8]], atol=1e-5)
    assert tall.classes.tolist() == [0]
    # The crowd annotation 15 is no target; it is wide's ignore region for scoring, letterboxed like the boxes.
    assert len(split.crowds) == 2 and len(split.crowds[1]) == 0
    np.testing.assert_allclose(split.crowds[0].xyxy, [np.array([0, 0, 50, 50]) * 0.32 + [0, 16, 0, 16]])
    assert split.crowds[0].classes.tolist() == [1]


def test_coco_problems_name_the_annotation(tmp_path):
    path, images = _coco(tmp_path)
    split, _ = load_coco(path, images, 64)
    found = {(p.kind, p.message) for p in split.problems}
    shown = str(path)
    assert all(p.path == shown for p in split.problems if p.kind not in ("missing",))
    assert found == {
        ("entry", "image 4: file name '../escape.png' points outside the images folder, skipped"),
        ("unknown-image", "annotation 13: image_id 9 is not among the usable images"),
        ("class", "annotation 14: category_id 5 is not in categories"),
        ("size", "annotation 16: zero-size box (w 0, h 5)"),
        ("outside", "annotation 17: bbox [30, 10, 30, 10] outside the 50×80 image"),
        ("duplicate", "annotation 18: duplicate of annotation 10 (IoU 0.99)"),
        ("entry", "annotation 19: expected bbox [x, y, w, h], found [20, 10, 'w', 40]"),
        ("missing", "image 3: no such file, skipped with its 1 annotation(s)"),
    }
    (missing,) = [p for p in split.problems if p.kind == "missing"]
    assert missing.path == str(images / "gone.png")


def test_coco_image_size_must_match_the_json(tmp_path):
    path, images = _coco(tmp_path)
    doc = json.loads(path.read_text())
    doc["images"][1]["width"] = 80
    path.write_text(json.dumps(doc))
    split, _ = load_coco(path, images, 64)
    assert split.names == ("wide.png",)
    assert any(p.kind == "image-size" and "is 50×80 but the JSON says 80×80" in p.message for p in split.problems)


def test_coco_with_nothing_usable_raises(tmp_path):
    path, images = _coco(tmp_path)
    doc = json.loads(path.read_text())
    doc["annotations"] = [{"id": 1, "image_id": 1, "category_id": 99, "bbox": [0, 0, 5, 5]}]
    path.write_text(json.dumps(doc))
    with pytest.raises(DataError, match=r"none with a usable box; 3 label problem\(s\): .*1 bad class id"):
        load_coco(path, images, 64)


@pytest.mark.parametrize(
    "text, message",
    [
        ("{", r"instances.json, line 1: not valid JSON"),
        ("[]", "expected a JSON object"),
        ('{"images": [], "annotations": []}', "expected a list under 'categories'"),
        ('{"images": [], "annotations": [], "categories": [{"id": "x"}]}', "expected an integer id"),
    ],
)
def test_bad_coco_json(tmp_path, text, message):
    (tmp_path / "instances.json").write_text(text)
    with pytest.raises(DataError, match=message):
        load_coco(tmp_path / "instances.json", tmp_path, 64)
