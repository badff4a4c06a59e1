"""convscope.lint_detection and convert_detection from Python, the notebook display of a lint's summary, and the
notes loading makes about the splits (drawn, held out, no test split) carried in the summary that training prints
and writes to train.log."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import convscope
from convscope.data.detection.load import load_detection
from convscope.data.detection.summary import DataSummary, summarise_dataset


def _voc(root: Path, count: int, sets: dict[str, range] | None = None, extra: str = "") -> Path:
    """DIR/Annotations/ID.xml + DIR/JPEGImages/ID.jpg (200×100, one cat box each; `extra`: one more object's name
    in the first file), and ImageSets/Main when `sets` is given."""
    (root / "Annotations").mkdir(parents=True)
    (root / "JPEGImages").mkdir()
    for i in range(count):
        Image.fromarray(np.full((100, 200, 3), 40 + i, np.uint8)).save(root / "JPEGImages" / f"{i:02}.jpg")
        names = ["cat", extra] if extra and i == 0 else ["cat"]
        objects = "".join(f"<object><name>{n}</name><bndbox><xmin>11</xmin><ymin>11</ymin><xmax>60</xmax>"
                          f"<ymax>60</ymax></bndbox></object>" for n in names)  # fmt: skip
        (root / "Annotations" / f"{i:02}.xml").write_text(
            f"<annotation><filename>{i:02}.jpg</filename><size><width>200</width><height>100</height>"
            f"<depth>3</depth></size>{objects}</annotation>"
        )
    for name, ids in (sets or {}).items():
        (root / "ImageSets" / "Main").mkdir(parents=True, exist_ok=True)
        (root / "ImageSets" / "Main" / f"{name}.txt").write_text("".join(f"{i:02}\n" for i in ids))
    return root


def test_lint_detection_returns_the_summary_with_its_drawn_splits_and_displays_it(tmp_path):
    summary = convscope.lint_detection(_voc(tmp_path / "pets", 20))
    assert isinstance(summary, DataSummary) and summary.format == "Pascal VOC" and summary.classes == ("cat",)
    assert [(s.name, s.images, s.boxes) for s in summary.splits] == [("train", 16, 16), ("val", 2, 2), ("test", 2, 2)]
    assert summary.problem_count == 0 and summary.problems == ()
    drawn = [note for note in summary.notes if "were drawn for train/val/test (seed 0" in note]
    assert len(drawn) == 1 and any(line == f"  note: {drawn[0]}" for line in summary.lines())
    assert summary.as_dict()["notes"] == list(summary.notes)
    assert DataSummary.from_dict(summary.as_dict()).notes == summary.notes
    html = summary._repr_html_()
    assert "pets (Pascal VOC): 1 class" in html and "no label problems" in html
    assert '<td style="text-align:left">train</td><td style="text-align:right">16</td>' in html
    assert '<td style="text-align:left">cat</td><td style="text-align:right">16</td>' in html  # boxes of class
    assert "were drawn for train/val/test" in html and "warning: class cat has 16 training boxes" in html


def test_the_summary_counts_its_problems_and_shows_them(tmp_path):
    root = _voc(tmp_path / "pets", 6, {"train": range(4), "val": range(4, 6)}, extra="dog")
    (root / "classes.txt").write_text("cat\n")
    summary = convscope.lint_detection(root)
    assert summary.problem_count == 1 and summary.problems[0].path.endswith("00.xml")
    assert summary.problems[0].kind == "unknown-class"
    html = summary._repr_html_()
    assert "1 label problem(s): 1 unknown class name" in html and "&#x27;dog&#x27;" in html
    assert "1 label problem(s): 1 unknown class name" in repr(summary)


def test_lint_detection_raises_data_error_for_what_it_cannot_read(tmp_path):
    with pytest.raises(convscope.DataError):
        convscope.lint_detection(tmp_path / "nothing here")


def test_loading_without_a_test_split_says_where_the_test_score_comes_from(tmp_path):
    root = _voc(tmp_path / "pets", 8, {"train": range(6), "val": range(6, 8)})
    data = load_detection(str(root), None, 32, 0.1, 0)
    assert any("no test split: the test score will be on the 2 validation image(s)" in note for note in data.notes)
    lines = summarise_dataset(data)[0].lines(most=8)  # what DetectTask.data_lines prints and train.log keeps
    assert any(line.startswith("  note: ") and "no test split" in line for line in lines)
    held = load_detection(str(_voc(tmp_path / "one", 10, {"train": range(10)})), None, 32, 0.1, 0)
    assert any("no val split: 1 of 10 training images held out for validation (seed 0)" in n for n in held.notes)


def test_convert_detection_writes_the_target_and_refuses_a_full_folder(tmp_path):
    src = _voc(tmp_path / "pets", 6, {"train": range(4), "val": range(4, 6)})
    done = convscope.convert_detection(src, "yolo", tmp_path / "out")
    assert done.splits == {"train": (4, 4, 1), "val": (2, 2, 1)} and done.target == "yolo"
    assert (tmp_path / "out" / "data.yaml").is_file()
    assert convscope.lint_detection(tmp_path / "out").split("val").boxes == 2
    with pytest.raises(convscope.DataError, match="out: not an empty folder"):
        convscope.convert_detection(src, "coco", tmp_path / "out")
