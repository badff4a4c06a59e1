"""YOLO label files as people write them: polygon rows (the segmentation format) read as their boxes, and text saved
with a byte-order mark, CRLF line ends, trailing spaces or tabs; data.yaml and COCO JSON the same."""

import codecs
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from convscope.data.detection.coco import load_coco
from convscope.data.detection.yolo import lint_yolo, load_yolo

CASE = Path(__file__).resolve().parents[3] / "shared" / "cases" / "yolo-polygon-rows"


def _dataset(root: Path, names=("cat", "dog")) -> Path:
    (root / "images" / "train").mkdir(parents=True)
    (root / "labels" / "train").mkdir(parents=True)
    (root / "data.yaml").write_text(f"train: images/train\nnames: {list(names)}\n")
    return root


def _image(root: Path, name: str, width: int = 200, height: int = 100) -> None:
    Image.fromarray(np.full((height, width, 3), 90, np.uint8)).save(root / "images" / "train" / name)


def _letterboxed(xyxy_normalised) -> np.ndarray:
    """Normalised xyxy on a 200×100 image → pixels of its 64×64 letterbox (scale 0.32, pad (0, 16))."""
    return np.array(xyxy_normalised) * [200, 100, 200, 100] * 0.32 + [0, 16, 0, 16]


# A triangle, a plain box, then rows that stay errors: 6 and 8 columns, a point outside, all points on one line.
POLYGONS = """\
0 0.2 0.1 0.6 0.3 0.3 0.7
1 0.5 0.5 0.2 0.2
0 0.1 0.1 0.2 0.2 0.3
0 0.1 0.1 0.2 0.2 0.3 0.3 0.4
1 0.5 0.5 1.2 0.5 0.6 0.9
1 0.1 0.5 0.4 0.5 0.9 0.5
"""


def test_polygon_rows_become_their_bounding_boxes_with_one_note(tmp_path):
    root = _dataset(tmp_path / "ds")
    _image(root, "a.png")
    (root / "labels" / "train" / "a.txt").write_text(POLYGONS)
    _image(root, "b.png")
    (root / "labels" / "train" / "b.txt").write_text("1 0.1 0.1 0.4 0.1 0.4 0.5 0.1 0.5\n")  # a 4-point square
    data = load_yolo(root, 64)
    a, b = data.train.targets
    # The triangle's box is the min and max of its points (Ultralytics' segments2boxes): x 0.2–0.6, y 0.1–0.7.
    np.testing.assert_allclose(a.xyxy, _letterboxed([[0.2, 0.1, 0.6, 0.7], [0.4, 0.4, 0.6, 0.6]]), atol=1e-4)
    assert a.classes.tolist() == [0, 1]
    np.testing.assert_allclose(b.xyxy, _letterboxed([[0.1, 0.1, 0.4, 0.5]]), atol=1e-4)
    columns = (
        "expected 5 columns (class cx cy w h) or a polygon (class x1 y1 x2 y2 x3 y3 …: an odd number of columns, "
        "at least 7), found {}"
    )
    assert [(p.path, p.line, p.kind, p.message) for p in data.problems] == [
        ("labels/train/a.txt", 3, "columns", columns.format(6)),
        ("labels/train/a.txt", 4, "columns", columns.format(8)),
        ("labels/train/a.txt", 5, "outside", "coordinates outside [0, 1]: x 0.5 to 1.2, y 0.5 to 0.9"),
        ("labels/train/a.txt", 6, "size", "zero-size box around the polygon's 3 points (w 0.8, h 0)"),
        (
            "data.yaml",
            None,
            "polygon",
            "2 polygon row(s) (YOLO segmentation format: class x1 y1 x2 y2 …) in 2 label file(s) read as their "
            "bounding boxes (first: labels/train/a.txt, line 1)",
        ),
    ]
    assert [p.is_note for p in data.problems] == [False] * 4 + [True]
    assert lint_yolo(root, 64) == list(data.problems)  # the lint says the same, the note once, last


def test_polygon_case_from_the_issue_trains_on_boxes():
    if not CASE.is_dir():
        pytest.skip(f"{CASE} is not here")
    data = load_yolo(CASE, 64)
    assert [len(t) for t in data.train.targets] == [4, 0, 0, 0, 0, 6] and [len(t) for t in data.val.targets] == [6, 6]
    # labels/train/000000.txt, line 1: class 7, x 0.351563–0.765625, y 0.460937–0.640625 on a 64×64 image.
    np.testing.assert_allclose(data.train.targets[0].xyxy[0], [22.5, 29.5, 49.0, 41.0], atol=1e-3)
    assert data.train.targets[0].classes.tolist() == [7, 5, 1, 6]
    notes = [p for p in data.problems if p.is_note]
    assert len(notes) == 1 and notes[0].message.startswith("22 polygon row(s)")
    assert [p.kind for p in data.problems if not p.is_note] == ["no-label"]  # images/train/000002.png


def test_label_text_with_bom_crlf_trailing_spaces_and_tabs(tmp_path):
    root = _dataset(tmp_path / "ds")
    rows = "0\t0.5\t0.5\t0.2\t0.4  \r\n1 0.25  0.25 0.1 0.1 \t\r\n\r\n1\t0.2 0.1 0.6 0.3 0.3 0.7\r\n"
    expected = _letterboxed([[0.4, 0.3, 0.6, 0.7], [0.2, 0.2, 0.3, 0.3], [0.2, 0.1, 0.6, 0.7]])
    saved = {
        "utf8-bom.png": codecs.BOM_UTF8 + rows.encode(),
        "utf16.png": rows.encode("utf-16"),  # Windows Notepad's "Unicode": UTF-16 with its BOM
        "cr.png": rows.replace("\r\n", "\r").encode(),  # old Mac line ends
    }
    for name, raw in saved.items():
        _image(root, name)
        (root / "labels" / "train" / name.replace(".png", ".txt")).write_bytes(raw)
    data = load_yolo(root, 64)
    assert [p.kind for p in data.problems] == ["polygon"]
    assert data.train.names == ("images/train/cr.png", "images/train/utf16.png", "images/train/utf8-bom.png")
    for boxes in data.train.targets:
        np.testing.assert_allclose(boxes.xyxy, expected, atol=1e-4)
        assert boxes.classes.tolist() == [0, 1, 1]


def test_data_yaml_with_bom_crlf_and_tabs(tmp_path):
    root = _dataset(tmp_path / "ds")
    _image(root, "a.png")
    (root / "labels" / "train" / "a.txt").write_text("1 0.5 0.5 0.2 0.2\n")
    text = "train:\timages/train  \r\nnames:\r\n\t0: cat\r\n\t1: dog\r\n"  # tab after the colon, tab-indented names
    for raw in (codecs.BOM_UTF8 + text.encode(), text.encode("utf-16")):
        (root / "data.yaml").write_bytes(raw)
        data = load_yolo(root, 32)
        assert data.classes == ("cat", "dog") and data.train.targets[0].classes.tolist() == [1]


def test_coco_json_with_a_bom(tmp_path):
    (tmp_path / "images").mkdir()
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(tmp_path / "images" / "a.png")
    doc = {
        "images": [{"id": 1, "file_name": "a.png", "width": 40, "height": 40}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [4, 8, 20, 10]}],
        "categories": [{"id": 1, "name": "thing"}],
    }
    (tmp_path / "coco.json").write_bytes(codecs.BOM_UTF8 + json.dumps(doc, indent=1).replace("\n", "\r\n").encode())
    split, classes = load_coco(tmp_path / "coco.json", tmp_path / "images", 40)
    assert classes == ("thing",) and not split.problems
    np.testing.assert_allclose(split.targets[0].xyxy, [[4, 8, 24, 18]])
