"""`detect train` writes every label problem found while the data loaded, with file and line, to the run's train.log
(the data is read before the run folder exists, so the trainer writes them when training starts)."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from convscope.data.detection.yolo import load_yolo
from convscope.spec import NetSpec
from convscope.tasks.train import train

pytest.importorskip("pycocotools")

TINY = {"name": "tiny-det", "input": "32x32x3",
        "layers": [{"conv": {"filters": 4, "size": 3, "stride": 2, "padding": "same"}},
                   {"conv": {"filters": 4, "size": 3, "stride": 2, "padding": "same"}},
                   {"detect": {"classes": 2, "channels": 4}}]}  # fmt: skip

LABELS = {
    ("train", "a"): "0 0.5 0.5 0.4 0.4\n7 0.5 0.5 0.2 0.2\n1 0.3 0.3 0.2\n",
    ("train", "b"): "1 0.2 0.2 0.6 0.2 0.4 0.7\n0 0.95 0.5 0.2 0.2\n",
    ("train", "c"): "0 0.3 0.3 0.2 0.2\n0 0.3 0.3 0.2 0.2\n",
    ("val", "d"): "1 0.5 0.5 0.3 0.3\n1 0.5 0.5 abc 0.3\n",
}


def _dataset(root: Path) -> Path:
    rng = np.random.default_rng(0)
    (root / "data.yaml").parent.mkdir(parents=True)
    (root / "data.yaml").write_text("train: images/train\nval: images/val\nnames: [cat, dog]\n")
    for (split, name), text in LABELS.items():
        for kind in ("images", "labels"):
            (root / kind / split).mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), np.uint8)).save(root / "images" / split / f"{name}.png")
        (root / "labels" / split / f"{name}.txt").write_text(text)
    return root


def test_train_log_lists_every_dropped_row_with_file_and_line(tmp_path):
    root = _dataset(tmp_path / "ds")
    spec = tmp_path / "tiny-det.yaml"
    spec.write_text(NetSpec.from_dict(TINY).to_yaml())
    settings = dict(model=str(spec), data=str(root), epochs=1, batch_size=4, threads=1, augment="none")
    run = train(**settings, out=str(tmp_path / "run"), report=False)
    log = (run.path / "train.log").read_text()
    problems = load_yolo(root, 32).problems
    assert [(p.path, p.line) for p in problems if not p.is_note] == [
        ("labels/train/a.txt", 2),
        ("labels/train/a.txt", 3),
        ("labels/train/b.txt", 2),
        ("labels/train/c.txt", 2),
        ("labels/val/d.txt", 2),
    ]
    for problem in problems:
        assert log.count(f": {problem}\n") == 1, problem
    assert "labels/train/a.txt, line 2: class 7 out of range (0–1)\n" in log
    assert "labels/val/d.txt, line 2: expected a number, found 'abc'\n" in log
    assert "5 label problem(s) while loading (paths relative to the dataset folder): " in log
    assert log.count("note: data.yaml: 1 polygon row(s)") == 1
    # Written when training starts: before the first epoch's line.
    assert log.index("labels/val/d.txt, line 2") < log.index("epoch 1/1")
