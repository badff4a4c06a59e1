"""The detection readers' bounds, at and past each: boxes per image (YOLO rows, COCO annotations, VOC objects), VOC XML
nesting, COCO JSON nesting, label file size and line length. Past a bound the file's image is skipped with one problem
that names the file (or the whole file is refused in one line), never a traceback or minutes of work."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

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
