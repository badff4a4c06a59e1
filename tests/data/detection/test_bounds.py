"""The detection readers' bounds, at and past each: boxes per image (YOLO rows, COCO annotations, VOC objects), VOC XML
nesting, COCO JSON nesting, label file size and line length. Past a bound the file's image is skipped with one problem
that names the file (or the whole file is refused in one line), never a traceback or minutes of work."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from convscope.cli import main
from convscope.data.detection.boxes import MAX_BOXES
from convscope.data.detection.coco import lint_coco
from convscope.data.detection.voc import lint_voc
from convscope.data.detection.yolo import lint_yolo
from convscope.errors import DataError


def _grid_rows(count: int) -> list[tuple[float, float]]:
    """`count` distinct box centres on a 100-wide grid (normalised), 0.004 apart: no two boxes are duplicates."""
    return [((i % 100 + 0.5) / 100, (i // 100 % 100 + 0.5) / 100 + (i // 10_000) * 0.004) for i in range(count)]


def _yolo(root: Path, labels: str) -> Path:
    for folder in ("images/train", "labels/train"):
        (root / folder).mkdir(parents=True)
    (root / "data.yaml").write_text("train: images/train\nnames: [cat]\n")
    Image.fromarray(np.full((400, 400, 3), 90, np.uint8)).save(root / "images/train/a.png")
    (root / "labels/train/a.txt").write_text(labels)
    return root


@pytest.mark.parametrize("count", [MAX_BOXES, MAX_BOXES + 1])
def test_yolo_label_rows_per_image(tmp_path, count):
    rows = "".join(f"0 {cx:.4f} {cy:.4f} 0.005 0.005\n" for cx, cy in _grid_rows(count))
    problems = lint_yolo(_yolo(tmp_path / "ds", rows))
    if count == MAX_BOXES:
        assert problems == []
        return
    assert [(p.path, p.kind) for p in problems] == [("labels/train/a.txt", "boxes"), ("data.yaml", "no-box")]
    assert str(problems[0]) == (
        "labels/train/a.txt: 10,001 label rows, more than the 10,000 an image may have; its image is skipped"
    )


def test_a_label_file_past_16_mib_or_with_a_line_too_long_skips_its_image(tmp_path):
    root = _yolo(tmp_path / "ds", "0 0.5 0.5 0.2 0.2" + " " * (100_000 - 17) + "\n")  # a line of 100,000 characters
    assert lint_yolo(root) == []
    (root / "labels/train/a.txt").write_text("0 0.5 0.5 0.2 0.2" + " " * (100_001 - 17) + "\n")
    problem = lint_yolo(root)[0]
    assert (problem.path, problem.kind) == ("labels/train/a.txt", "label-file")
    assert problem.message == (
        "cannot read the label file (line 1: refused: a line of 100,001 characters, more than the 100,000 a text "
        "file may have); its image is skipped"
    )
    with open(root / "labels/train/a.txt", "wb") as f:
        f.truncate(17 * 2**20)
    problem = lint_yolo(root)[0]
    assert str(problem) == (
        "labels/train/a.txt: cannot read the label file (refused: 17.0 MiB, more than the 16.0 MiB a text file may "
        "be); its image is skipped"
    )


def _coco(root: Path, count: int, nesting: int = 0) -> Path:
    (root / "images").mkdir(parents=True)
    Image.fromarray(np.full((400, 400, 3), 90, np.uint8)).save(root / "images/a.png")
    annotations = [
        {"id": i + 1, "image_id": 1, "category_id": 1, "bbox": [cx * 400 - 1, cy * 400 - 1, 2, 2]}
        for i, (cx, cy) in enumerate(_grid_rows(count))
    ]
    doc = {"images": [{"id": 1, "file_name": "a.png"}], "annotations": annotations, "categories": [{"id": 1}]}
    text = json.dumps(doc)
    if nesting:  # an "info" value nested so that the whole document has `nesting` levels
        text = text[:-1] + ', "info":\n' + "[" * (nesting - 1) + "]" * (nesting - 1) + "}"
    (root / "instances.json").write_text(text)
    return root / "instances.json"


@pytest.mark.parametrize("count", [MAX_BOXES, MAX_BOXES + 1])
def test_coco_annotations_per_image(tmp_path, count):
    path = _coco(tmp_path, count)
    problems = lint_coco(path, tmp_path / "images")
    if count == MAX_BOXES:
        assert problems == []
        return
    assert [p.kind for p in problems] == ["boxes", "no-box"]
    assert str(problems[0]) == (
        f"{tmp_path / 'images/a.png'}: 10,001 annotations, more than the 10,000 an image may have; its image is skipped"
    )


def test_coco_json_nested_100_levels_is_read_and_101_refused(tmp_path):
    path = _coco(tmp_path / "ok", 1, nesting=100)
    assert lint_coco(path, tmp_path / "ok/images") == []
    path = _coco(tmp_path / "deep", 1, nesting=101)
    with pytest.raises(DataError) as err:
        lint_coco(path, tmp_path / "deep/images")
    assert str(err.value) == f"{path}, line 2: refused: JSON nested more than 100 levels"


def _voc(root: Path, body: str) -> Path:
    (root / "Annotations").mkdir(parents=True)
    (root / "JPEGImages").mkdir()
    Image.fromarray(np.full((400, 400, 3), 90, np.uint8)).save(root / "JPEGImages/a.png")
    (root / "Annotations/a.xml").write_text(f"<annotation>\n<filename>a.png</filename>\n{body}</annotation>\n")
    return root


@pytest.mark.parametrize("count", [MAX_BOXES, MAX_BOXES + 1])
def test_voc_objects_per_file(tmp_path, count):
    objects = "".join(
        f"<object><name>cat</name><bndbox><xmin>{cx * 400:.1f}</xmin><ymin>{cy * 400:.1f}</ymin>"
        f"<xmax>{cx * 400 + 2:.1f}</xmax><ymax>{cy * 400 + 2:.1f}</ymax></bndbox></object>\n"
        for cx, cy in _grid_rows(count)
    )
    problems = lint_voc(_voc(tmp_path / "ds", objects), val_fraction=0)
    if count == MAX_BOXES:
        assert problems == []
        return
    assert [(p.path, p.line, p.kind) for p in problems[:1]] == [("Annotations/a.xml", MAX_BOXES + 3, "boxes")]
    assert problems[0].message == "more than 10,000 objects, more than an image may have; its image is skipped"


@pytest.mark.parametrize("levels", [100, 101])
def test_voc_xml_nesting(tmp_path, levels):
    # <annotation> is the first level; an <object> holds the rest.
    inner = "<name>cat</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>9</xmax><ymax>9</ymax></bndbox>"
    deep = "<x>" * (levels - 3) + "</x>" * (levels - 3)  # inside <object><pose>: levels in all
    body = f"<object>{inner}<pose>{deep}</pose></object>\n"
    problems = lint_voc(_voc(tmp_path / "ds", body), val_fraction=0)
    if levels == 100:
        assert problems == []
        return
    assert [(p.path, p.kind) for p in problems[:1]] == [("Annotations/a.xml", "xml")]
    assert problems[0].message == "refused: XML nested more than 100 levels; its image is skipped"


def test_a_scenes_manifest_nested_past_the_bound_is_one_line(tmp_path):
    from convscope.data.detection.scenes import MANIFEST, _previous_files

    (tmp_path / MANIFEST).write_text('{"generator": "fashion-scenes", "files": ["a.png"]}')
    assert _previous_files(tmp_path) == {"a.png"}
    (tmp_path / MANIFEST).write_text("[" * 3000)
    with pytest.raises(DataError) as err:
        _previous_files(tmp_path)
    assert str(err.value) == (
        f"{tmp_path}: expected an empty folder or a previous fashion-scenes output, found an unreadable "
        f"{MANIFEST} (line 1: refused: JSON nested more than 100 levels)"
    )


# ── huge numbers: within float's range a coordinate is a box (outside the image), past it a problem quoted short ──
FLOAT_MAX_DIGITS = "1" + "0" * 308  # 1e308: the float is finite
PAST_FLOAT = "9" * 309  # > 1.8e308: no float holds it


def _coco_with(root: Path, value: str, width: str = "400") -> Path:
    (root / "images").mkdir(parents=True)
    Image.fromarray(np.full((400, 400, 3), 90, np.uint8)).save(root / "images/a.png")
    text = (
        '{"images": [{"id": 1, "file_name": "a.png", "width": %s, "height": 400}],\n'
        ' "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 2, 30, 40]},\n'
        '   {"id": 2, "image_id": 1, "category_id": 1, "bbox": [10, 20, %s, 40]}],\n "categories": [{"id": 1}]}'
    )
    (root / "instances.json").write_text(text % (width, value))
    return root / "instances.json"


@pytest.mark.parametrize(
    ("value", "kind", "message"),
    [
        (FLOAT_MAX_DIGITS, "outside", "annotation 2: bbox [10, 20, 1e+308, 40] outside the 400×400 image"),
        (PAST_FLOAT, "number", "annotation 2: bbox [10, 20, 99999999999999999999… (309 characters), 40] is not a "),
        ("9" * 4300, "number", "annotation 2: bbox [10, 20, 99999999999999999999… (4,300 characters), 40] is not"),
    ],
)
def test_a_coco_bbox_of_hundreds_of_digits_is_a_problem_of_that_box(tmp_path, capsys, value, kind, message):
    path = _coco_with(tmp_path, value)
    problems = lint_coco(path, tmp_path / "images")
    assert [(p.kind, p.message[: len(message)]) for p in problems] == [(kind, message)]
    assert main(["detect", "lint", str(path)]) == 1
    out, err = capsys.readouterr()
    assert out.splitlines()[-1] == f"{path}: {problems[0].message}" and len(problems[0].message) < 120


def test_a_coco_number_past_4300_digits_refuses_the_file_in_one_line(tmp_path, capsys):
    path = _coco_with(tmp_path, "9" * 4301)
    assert main(["detect", "lint", str(path)]) == 2
    out, err = capsys.readouterr()
    assert (out, err) == ("", f"convscope: error: {path}, line 3: refused: a number of more than 4300 digits\n")


def test_a_coco_image_size_past_floats_range_is_a_size_problem(tmp_path):
    path = _coco_with(tmp_path, "3", width=PAST_FLOAT)
    problems = lint_coco(path, tmp_path / "images")
    assert [p.kind for p in problems] == ["image-size", "no-box"]
    assert problems[0].message == (
        "image 1 is 400×400 but the JSON says 99999999999999999999… (309 characters)×400; skipped"
    )


@pytest.mark.parametrize("digits", [308, 5000])
def test_a_yolo_coordinate_of_thousands_of_digits_is_quoted_short(tmp_path, digits):
    problems = lint_yolo(_yolo(tmp_path / "ds", f"0 0.5 0.5 0.1 0.1\n0 {'9' * digits} 0.5 0.1 0.1\n"))
    if digits == 308:  # 1e308 is a float: a box far outside
        assert [(p.line, p.kind) for p in problems] == [(2, "outside")]
        return
    assert [(p.line, p.kind, p.message) for p in problems] == [
        (2, "number", "expected a number, found '99999999999999999999…' (5,000 characters)")
    ]


def test_a_voc_coordinate_and_class_of_thousands_of_characters_are_quoted_short(tmp_path):
    box = "<bndbox><xmin>{}</xmin><ymin>1</ymin><xmax>9</xmax><ymax>9</ymax></bndbox>"
    body = (
        f"<object><name>cat</name>{box.format(1)}</object>\n<object><name>cat</name>{box.format('9' * 5000)}</object>"
        f"\n<object><name>{'d' * 5000}</name>{box.format(1)}</object>\n"
    )
    root = _voc(tmp_path / "ds", body)
    (root / "classes.txt").write_text("cat\n")
    problems = lint_voc(root, val_fraction=0)
    assert [(p.line, p.kind, p.message) for p in problems] == [
        (4, "number", "object 2 (cat): <xmin> is '99999999999999999999…' (5,000 characters), not a number"),
        (
            5,
            "unknown-class",
            "object 3 (dddddddddddddddddddddddddddddddddddddddd… (5,000 characters)): class "
            "'dddddddddddddddddddddddddddddddddddddddd…' (5,000 characters) is not in the class list (cat), skipped",
        ),
    ]


def test_a_yolo_class_id_of_hundreds_of_digits_is_quoted_short(tmp_path):
    problems = lint_yolo(_yolo(tmp_path / "ds", f"0 0.5 0.5 0.1 0.1\n{'9' * 300} 0.5 0.5 0.1 0.1\n"))
    assert [(p.line, p.kind) for p in problems] == [(2, "class")]
    assert problems[0].message == "class 99999999999999999999… (300 characters) out of range (0–0)"
