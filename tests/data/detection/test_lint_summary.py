"""What `convscope detect lint` says it read: images, boxes, boxes per class and images without boxes per split,
exact on small YOLO and VOC folders; the warnings (a class with fewer than 20 training boxes, a class missing from a
split); images two splits share (the same file, or the same bytes under another name) as problems that exit 1; the
--json round trip; and the same summary at the start of a detection run's train.log."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from convscope.cli import main
from convscope.data.detection.boxes import Boxes, DetectionDataset, DetectionSplit
from convscope.data.detection.load import load_detection
from convscope.data.detection.summary import DataSummary, SplitSummary, lint_dataset, summarise_dataset

SHADES = iter(range(10_000))  # every image a test writes differs from the others, unless copied on purpose


def _image(path: Path, width: int = 64, height: int = 48) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(next(SHADES))
    Image.fromarray(rng.integers(0, 255, (height, width, 3), np.uint8)).save(path)


def _yolo(root: Path, splits: dict[str, dict[str, list[int]]], names=("cat", "dog")) -> Path:
    """A YOLO folder: split → {image stem: the class of each box (at most 50, on a grid: none overlap)}; an empty
    list writes an empty label file."""
    (root / "images").mkdir(parents=True)
    entries = "".join(f"{split}: images/{split}\n" for split in splits)
    (root / "data.yaml").write_text(f"{entries}names: [{', '.join(names)}]\n")
    for split, images in splits.items():
        (root / "labels" / split).mkdir(parents=True)
        for stem, classes in images.items():
            _image(root / "images" / split / f"{stem}.png")
            grid = [(0.05 + 0.09 * (i % 10), 0.1 + 0.2 * (i // 10)) for i in range(len(classes))]
            rows = "".join(f"{c} {x:.2f} {y:.2f} 0.05 0.1\n" for c, (x, y) in zip(classes, grid, strict=True))
            (root / "labels" / split / f"{stem}.txt").write_text(rows)
    return root


def _voc(root: Path, files: dict[str, list[tuple]], sets: dict[str, list[str]]) -> Path:
    """Annotations/STEM.xml + JPEGImages/STEM.png (64×48); objects are (name, difficult); ImageSets/Main from `sets`."""
    (root / "Annotations").mkdir(parents=True)
    (root / "ImageSets" / "Main").mkdir(parents=True)
    for stem, objects in files.items():
        _image(root / "JPEGImages" / f"{stem}.png")
        body = "".join(
            f"<object><name>{name}</name><difficult>{difficult}</difficult><bndbox><xmin>{1 + 6 * i}</xmin>"
            f"<ymin>2</ymin><xmax>{5 + 6 * i}</xmax><ymax>20</ymax></bndbox></object>"
            for i, (name, difficult) in enumerate(objects)
        )
        xml = f"<annotation><filename>{stem}.png</filename><size><width>64</width><height>48</height></size>{body}"
        (root / "Annotations" / f"{stem}.xml").write_text(xml + "</annotation>\n")
    for name, stems in sets.items():
        (root / "ImageSets" / "Main" / f"{name}.txt").write_text("".join(f"{s}\n" for s in stems))
    return root


def _counts(summary: DataSummary) -> dict:
    return {s.name: (s.images, s.boxes, s.per_class, s.without_boxes, s.ignore, s.repeated) for s in summary.splits}


# ── counts ────────────────────────────────────────────────────────────────────────────────────────────────────────
def test_yolo_counts_per_split_and_class_are_exact(tmp_path):
    root = _yolo(
        tmp_path / "pets",
        {
            "train": {"a": [0] * 12 + [1] * 20, "b": [0] * 9, "c": []},  # 21 cats, 20 dogs; c: a background image
            "val": {"d": [0, 1, 1]},
            "test": {"e": [1], "f": []},
        },
    )
    summary, problems = lint_dataset(root)
    assert problems == []
    assert (summary.name, summary.format, summary.classes) == ("pets", "YOLO", ("cat", "dog"))
    assert _counts(summary) == {
        "train": (3, 41, (21, 20), 1, 0, 0),
        "val": (1, 3, (1, 2), 0, 0, 0),
        "test": (2, 1, (0, 1), 1, 0, 0),
    }
    assert summary.lines() == [
        "pets (YOLO): 2 classes",
        "  train  3 images, 41 boxes (cat 21, dog 20), 1 without boxes",
        "  val    1 image, 3 boxes (cat 1, dog 2), 0 without boxes",
        "  test   2 images, 1 box (cat 0, dog 1), 1 without boxes",
        "warning: class cat has no box in test, which has 1 box of other classes: its AP cannot be measured on test",
    ]


def test_voc_counts_difficult_objects_as_ignore_regions(tmp_path):
    files = {
        "a": [("RBC", 0)] * 5 + [("WBC", 1)],
        "b": [("WBC", 0), ("RBC", 1), ("RBC", 1)],
        "c": [("RBC", 0), ("WBC", 0)],
        "d": [],
    }
    root = _voc(tmp_path / "cells", files, {"train": ["a", "b"], "test": ["c", "d"]})
    summary, problems = lint_dataset(root)
    assert problems == [] and summary.format == "Pascal VOC" and summary.classes == ("RBC", "WBC")
    assert _counts(summary) == {"train": (2, 6, (5, 1), 0, 3, 0), "test": (2, 2, (1, 1), 1, 0, 0)}
    assert summary.lines()[1] == "  train  2 images, 6 boxes (RBC 5, WBC 1), 0 without boxes, 3 ignore regions"


def test_a_class_with_fewer_than_20_training_boxes_is_warned_about(tmp_path):
    root = _yolo(tmp_path / "ds", {"train": {"a": [0] * 7 + [1] * 20}, "val": {"b": [0, 1]}})
    summary, _ = lint_dataset(root)
    assert summary.warnings == ("class cat has 7 training boxes: a detector needs more (≥ 20)",)
    assert summary.lines()[-1] == "warning: class cat has 7 training boxes: a detector needs more (≥ 20)"


def test_the_summary_of_a_loaded_dataset_counts_as_the_lint_does(tmp_path):
    root = _yolo(tmp_path / "ds", {"train": {"a": [0, 0, 1], "b": []}, "val": {"c": [1]}, "test": {"d": [0]}})
    lint, _ = lint_dataset(root)
    loaded, shared = summarise_dataset(load_detection(str(root), None, 32, 0.1, 0))
    assert shared == [] and loaded.format == "" and loaded.name == lint.name == "ds"
    assert (
        _counts(loaded)
        == _counts(lint)
        == {
            "train": (2, 3, (2, 1), 1, 0, 0),
            "val": (1, 1, (0, 1), 0, 0, 0),
            "test": (1, 1, (1, 0), 0, 0, 0),
        }
    )


def test_one_held_out_split_serving_as_val_and_test_is_counted_once():
    image = np.zeros((1, 8, 8, 3), np.uint8)
    train = DetectionSplit(image, (Boxes(np.array([[1, 1, 4, 4]], np.float32), np.array([0])),), ("a.png",))
    held = DetectionSplit(image + 1, (Boxes.empty(),), ("b.png",))
    summary, shared = summarise_dataset(DetectionDataset("x", ("cat",), train, held, held, "x.json"))
    assert shared == [] and [s.name for s in summary.splits] == ["train", "val/test"]


# ── images two splits share ───────────────────────────────────────────────────────────────────────────────────────
def _lint(root: Path, *flags: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "convscope", "detect", "lint", str(root), *flags]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def test_a_copied_image_in_train_and_test_is_a_problem_naming_both_paths(tmp_path):
    root = _yolo(tmp_path / "ds", {"train": {"a": [0], "b": [1]}, "test": {"c": [0, 1]}})
    shutil.copyfile(root / "images" / "train" / "b.png", root / "images" / "test" / "b-copy.png")
    (root / "labels" / "test" / "b-copy.txt").write_text("1 0.5 0.5 0.1 0.1\n")
    done = _lint(root)
    assert done.returncode == 1
    assert (
        "images/test/b-copy.png: in test, same bytes as images/train/b.png in train: an image in two splits inflates "
        "the test score"
    ) in done.stdout.splitlines()
    assert done.stderr == "convscope: 1 label problem(s): 1 image in two splits\n"


def test_identical_bytes_under_another_name_and_the_same_file_in_two_image_sets_are_found(tmp_path):
    files = {"a": [("cat", 0)], "b": [("cat", 0)], "c": [("cat", 0)]}
    root = _voc(tmp_path / "ds", files, {"train": ["a", "b"], "val": ["b"], "test": ["c"]})
    shutil.copyfile(root / "JPEGImages" / "a.png", root / "JPEGImages" / "c.png")  # c: a's bytes under its own name
    summary, problems = lint_dataset(root)
    assert [(p.path, p.kind, p.message) for p in problems] == [
        (
            "JPEGImages/b.png",
            "leak",
            "the same image is in train and val: an image in two splits inflates the validation score",
        ),
        ("JPEGImages/c.png", "leak", "in test, same bytes as JPEGImages/a.png in train: an image in two splits "
                                     "inflates the test score"),
    ]  # fmt: skip
    assert main(["detect", "lint", str(root)]) == 1


def test_an_image_repeated_within_a_split_is_counted_not_a_problem(tmp_path, capsys):
    root = _yolo(tmp_path / "ds", {"train": {"a": [0] * 20 + [1] * 20, "b": [1]}})
    shutil.copyfile(root / "images" / "train" / "a.png", root / "images" / "train" / "a2.png")
    (root / "labels" / "train" / "a2.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    assert main(["detect", "lint", str(root)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "ds (YOLO): 2 classes",
        "  train  3 images, 42 boxes (cat 21, dog 21), 0 without boxes, 1 repeated image",
        "  note: no val or test split: `detect train` holds out a seeded 10% of the training images (--val-fraction, "
        "--seed) for validation and reports its test score on them (optimistic)",
        "no problems found",
    ]


def test_a_clean_folder_prints_the_summary_and_exits_0(tmp_path):
    root = _yolo(tmp_path / "ds", {"train": {"a": [0] * 20, "b": [1] * 20}, "val": {"c": [0, 1]}})
    done = _lint(root)
    assert done.returncode == 0 and done.stderr == ""
    assert done.stdout.splitlines() == [
        "ds (YOLO): 2 classes",
        "  train  2 images, 40 boxes (cat 20, dog 20), 0 without boxes",
        "  val    1 image, 2 boxes (cat 1, dog 1), 0 without boxes",
        "  note: no test split: `detect train` reports its test score on the validation images (optimistic)",
        "no problems found",
    ]


def test_json_round_trip(tmp_path, capsys):
    root = _yolo(tmp_path / "ds", {"train": {"a": [0, 0, 1], "b": []}, "test": {"c": [1], "d": [0]}})
    shutil.copyfile(root / "images" / "train" / "a.png", root / "images" / "test" / "d.png")
    (root / "labels" / "train" / "b.txt").write_text("5 0.5 0.5 0.1 0.1\n")  # a bad class id
    assert main(["detect", "lint", str(root), "--json"]) == 1
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    summary, problems = lint_dataset(root)
    assert DataSummary.from_dict(doc["summary"]) == summary
    assert doc["summary"]["splits"]["train"] == {
        "images": 2,
        "boxes": 3,
        "boxes_per_class": [2, 1],
        "without_boxes": 1,
        "ignore": 0,
        "repeated": 0,
    }
    assert doc["summary"]["warnings"] == list(summary.warnings) and len(summary.warnings) == 2
    assert [(p["path"], p["line"], p["kind"]) for p in doc["problems"]] == [
        ("labels/train/b.txt", 1, "class"),
        ("images/test/d.png", None, "leak"),
    ]
    assert [p["message"] for p in doc["problems"]] == [p.message for p in problems] and doc["notes"] == []
    assert captured.err == "convscope: 2 label problem(s): 1 bad class id, 1 image in two splits\n"


def test_compact_lines_cut_a_long_class_list_and_the_warnings():
    split = SplitSummary("train", 1_234, 5_000, tuple(range(500, 1500, 100)), 3)
    classes = [f"c{i}" for i in range(10)]
    few = DataSummary("x", "", tuple(classes), (SplitSummary("train", 1, 10, (1,) * 10, 0),))
    assert len(few.warnings) == 10 and len(few.lines()) == 12
    assert few.lines(most=2)[2:] == [
        "warning: class c0 has 1 training box: a detector needs more (≥ 20)",
        "warning: class c1 has 1 training box: a detector needs more (≥ 20)",
        "warning: … 8 more (the run's train.log has them all)",
    ]
    assert (
        split.line(classes, 5, 5, most=2)
        == "train  1,234 images, 5,000 boxes (c0 500, c1 600, … 8 more), 3 without boxes"
    )


# ── at the start of training ──────────────────────────────────────────────────────────────────────────────────────
TINY = {"name": "tiny-det", "input": "32x32x3",
        "layers": [{"conv": {"filters": 4, "size": 3, "stride": 2, "padding": "same"}},
                   {"conv": {"filters": 4, "size": 3, "stride": 2, "padding": "same"}},
                   {"detect": {"classes": 2, "channels": 4}}]}  # fmt: skip


def test_train_log_starts_with_the_summary_and_counts_shared_images_as_problems(tmp_path):
    pytest.importorskip("pycocotools")
    from convscope.spec import NetSpec
    from convscope.tasks.train import train

    root = _yolo(tmp_path / "ds", {"train": {"a": [0, 1], "b": [0]}, "val": {"c": [1]}, "test": {"d": [0]}})
    shutil.copyfile(root / "images" / "train" / "a.png", root / "images" / "test" / "d.png")
    spec = tmp_path / "tiny-det.yaml"
    spec.write_text(NetSpec.from_dict(TINY).to_yaml())
    settings = dict(model=str(spec), data=str(root), epochs=1, batch_size=4, threads=1, augment="none")
    run = train(**settings, out=str(tmp_path / "run"), report=False)
    log = (run.path / "train.log").read_text()
    lines = [
        "ds: 2 classes",
        "  train  2 images, 3 boxes (cat 2, dog 1), 0 without boxes",
        "  val    1 image, 1 box (cat 0, dog 1), 0 without boxes",
        "  test   1 image, 1 box (cat 1, dog 0), 0 without boxes",
        "warning: class cat has 2 training boxes: a detector needs more (≥ 20)",
    ]
    assert all(log.count(f"{line}\n") == 1 for line in lines), log
    assert log.index(lines[0]) < log.index(lines[-1]) < log.index("epoch 1/1")
    assert "1 label problem(s) while loading (paths relative to the dataset folder): 1 image in two splits" in log
    assert (
        "label problem: images/test/d.png: in test, same pixels as images/train/a.png in train: an image in two "
        "splits inflates the test score\n"
    ) in log
