"""`convscope detect lint`: what it read first (tests/data/detection/test_lint_summary.py has the summary's own
tests), then the problems; its exit status says whether problems were found (0 clean, 1 problems, 2 unreadable)."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from convscope.cli import main

# what the lint says of a dataset with a train split only: what training will make of it
TRAIN_ONLY = (
    "  note: no val or test split: `detect train` holds out a seeded 10% of the training images (--val-fraction, "
    "--seed) for validation and reports its test score on them (optimistic)"
)


def _dataset(root: Path, labels: dict[str, str]) -> Path:
    (root / "images" / "train").mkdir(parents=True)
    (root / "labels" / "train").mkdir(parents=True)
    (root / "data.yaml").write_text("train: images/train\nnames: [cat, dog]\n")
    for shade, (name, text) in enumerate(labels.items()):  # images of different shades: no image repeated
        Image.fromarray(np.full((50, 50, 3), 90 + shade, np.uint8)).save(root / "images" / "train" / f"{name}.png")
        (root / "labels" / "train" / f"{name}.txt").write_text(text)
    return root


def _after_summary(out: str) -> list[str]:
    """The lines after the summary (the dataset's line, its split lines, its warnings): the problems and notes."""
    lines = out.splitlines()
    start = 1 + sum(1 for line in lines[1:] if line.startswith(("  ", "warning: ")))
    return lines[start:]


def test_clean_dataset_exits_0(tmp_path, capsys):
    root = _dataset(tmp_path / "ds", {"a": "0 0.5 0.5 0.2 0.2\n", "b": "1 0.3 0.3 0.2 0.2\n"})
    assert main(["detect", "lint", str(root)]) == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines() == [
        "ds (YOLO): 2 classes",
        "  train  2 images, 2 boxes (cat 1, dog 1), 0 without boxes",
        TRAIN_ONLY,
        "warning: class cat has 1 training box: a detector needs more (≥ 20)",
        "warning: class dog has 1 training box: a detector needs more (≥ 20)",
        "no problems found",
    ]
    assert captured.err == ""


def test_problems_exit_1_listed_on_stdout_with_the_summary_on_stderr(tmp_path, capsys):
    root = _dataset(tmp_path / "ds", {"a": "0 0.5 0.5 0.2 0.2\n7 0.5 0.5 0.2 0.2\n0 0.5 0.5 0.2\n"})
    assert main(["detect", "lint", str(root)]) == 1
    captured = capsys.readouterr()
    assert _after_summary(captured.out) == [
        "labels/train/a.txt, line 2: class 7 out of range (0–1)",
        "labels/train/a.txt, line 3: expected 5 columns (class cx cy w h) or a polygon (class x1 y1 x2 y2 x3 y3 …: "
        "an odd number of columns, at least 7), found 4",
    ]
    assert captured.err == "convscope: 2 label problem(s): 1 row with the wrong number of columns, 1 bad class id\n"


def test_polygon_rows_alone_are_a_note_and_exit_0(tmp_path, capsys):
    root = _dataset(tmp_path / "ds", {"a": "0 0.2 0.2 0.6 0.2 0.4 0.7\n"})
    assert main(["detect", "lint", str(root)]) == 0
    assert _after_summary(capsys.readouterr().out) == [
        "note: data.yaml: 1 polygon row(s) (YOLO segmentation format: class x1 y1 x2 y2 …) in 1 label file(s) "
        "read as their bounding boxes (first: labels/train/a.txt, line 1)",
        "no problems found",
    ]


@pytest.mark.parametrize("yaml_text", [None, "train: [images/train\n"])
def test_unreadable_dataset_exits_2_in_one_line(tmp_path, capsys, yaml_text):
    root = _dataset(tmp_path / "ds", {"a": "0 0.5 0.5 0.2 0.2\n"})
    if yaml_text is None:
        (root / "data.yaml").unlink()
    else:
        (root / "data.yaml").write_text(yaml_text)
    assert main(["detect", "lint", str(root)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("convscope: error: ") and err.count("\n") == 1 and "data.yaml" in err


def test_help_states_the_exit_status(capsys):
    with pytest.raises(SystemExit) as caught:
        main(["detect", "lint", "--help"])
    assert caught.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "exit status: 0 when no problems were found" in text and "1 when problems were found" in text
    assert "2 when the dataset cannot be read at all" in text


def test_a_training_split_without_any_box_is_a_problem(tmp_path, capsys):
    root = _dataset(tmp_path / "ds", {"a": "", "b": "\n"})  # background images only: training would be refused
    assert main(["detect", "lint", str(root)]) == 1
    captured = capsys.readouterr()
    assert captured.out.splitlines() == [
        "ds (YOLO): 2 classes",
        "  train  2 images, 0 boxes, 2 without boxes",
        TRAIN_ONLY,
        "warning: class cat has no training boxes: a detector needs more (≥ 20)",
        "warning: class dog has no training boxes: a detector needs more (≥ 20)",
        "data.yaml: no training image with a valid box: training would be refused",
    ]
    assert captured.err == "convscope: 1 label problem(s): 1 training split with no box\n"
