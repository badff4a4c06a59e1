"""`convscope detect evaluate RUN --data OTHER` scores another dataset without touching the run's own test results:
its curves go to RUN/pr_curves-NAME.png, the CLI says so, and pr_curves.png, detection.json and coco_eval.txt stay
as training wrote them (a missing pr_curves.png is drawn again from the saved metrics)."""

from __future__ import annotations

import os

import pytest

from convscope.cli import main
from convscope.data.detection.scenes import make_scenes
from convscope.detect.evaluate import pr_curves_path
from convscope.files import written_by_convscope
from convscope.spec import NetSpec
from convscope.tasks.train import train

pytest.importorskip("pycocotools")
FASHION = "/usr/share/datasets/fashion-mnist"
if not os.path.isdir(FASHION):
    pytest.skip("Fashion-MNIST (Debian package dataset-fashion-mnist) is not installed", allow_module_level=True)

TINY = {"name": "tiny-det", "input": "64x64x3",
        "layers": [{"conv": {"filters": 8, "size": 3, "stride": 2, "padding": "same"}},
                   {"conv": {"filters": 8, "size": 3, "stride": 2, "padding": "same"}},
                   {"detect": {"classes": 10, "channels": 8}}]}  # fmt: skip
OWN = ("pr_curves.png", "detection.json", "coco_eval.txt", "results.json")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("own")
    scenes = make_scenes(root / "scenes", 40, seed=1, size=64, min_side=10, max_side=28)
    spec = root / "tiny-det.yaml"
    spec.write_text(NetSpec.from_dict(TINY).to_yaml())
    return train(model=str(spec), data=str(scenes), epochs=1, batch_size=8, threads=1, out=str(root / "run"))


def test_other_data_gets_its_own_picture_and_leaves_the_runs_results(run, tmp_path, capsys):
    other = make_scenes(tmp_path / "other scenes", 30, seed=7, size=64, min_side=10, max_side=28)
    before = {name: (run.path / name).read_bytes() for name in OWN}
    assert main(["detect", "evaluate", str(run.path), "--data", str(other)]) == 0
    out = capsys.readouterr().out
    picture = run.path / "pr_curves-other_scenes.png"
    assert pr_curves_path(run, str(other)) == picture
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert written_by_convscope(picture)  # so the folder is still only a run's (run.py: a convscope file)
    assert f"precision–recall curves: {picture} (on {other}" in out.replace("\n", "")
    assert {name: (run.path / name).read_bytes() for name in OWN} == before  # the run's own results untouched
    assert "on 3 images" in out  # other's test split (a tenth of 30), not the run's 4 test images

    # the plain evaluation reads the saved metrics back and names the run's own picture
    assert main(["detect", "evaluate", str(run.path)]) == 0
    assert f"precision–recall curves: {run.path / 'pr_curves.png'}" in capsys.readouterr().out.replace("\n", "")
    assert {name: (run.path / name).read_bytes() for name in OWN} == before


def test_a_missing_pr_curves_png_is_drawn_again_from_the_saved_metrics(run, capsys):
    (run.path / "pr_curves.png").unlink()
    assert main(["detect", "evaluate", str(run.path)]) == 0
    assert (run.path / "pr_curves.png").read_bytes()[:4] == b"\x89PNG"
    assert "mAP@0.5" in capsys.readouterr().out


def test_the_python_progress_names_the_detectors_augmentation(run, capsys):
    from convscope.api.progress import EpochBars, augmentation_of

    assert augmentation_of(run) == ("flip,scale", True)  # the detector's default, as its report says
    EpochBars(verbose=0).on_start(run, 1, 1, 0)
    out = capsys.readouterr().out
    assert "augmentation: flip,scale, test images averaged with their mirror images" in out
    assert "translate" not in out


def test_without_a_test_split_the_notes_and_the_last_line_say_the_score_is_on_val(tmp_path, capsys):
    """A dataset with train and val only: detect train prints (and train.log keeps) the note that the test score
    is on the validation images, results.json says which split was scored, the last line names it."""
    import json
    import shutil

    scenes = make_scenes(tmp_path / "scenes", 30, seed=3, size=64, min_side=10, max_side=28)
    shutil.rmtree(scenes / "images" / "test")
    shutil.rmtree(scenes / "labels" / "test")
    yaml = (scenes / "data.yaml").read_text()
    (scenes / "data.yaml").write_text("\n".join(line for line in yaml.splitlines() if not line.startswith("test")))
    spec = tmp_path / "tiny-det.yaml"
    spec.write_text(NetSpec.from_dict(TINY).to_yaml())
    out = tmp_path / "run"
    flags = ["--model", str(spec), "--data", str(scenes), "--epochs", "1", "--batch-size", "8", "--threads", "1"]
    assert main(["detect", "train", *flags, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    note = "no test split: the test score will be on the 3 validation image(s)"
    assert note in " ".join(printed.split()) and note in (out / "train.log").read_text()
    results = json.loads((out / "results.json").read_text())
    assert results["test_split"] == "val" and results["test_images"] == 3
    assert "on 3 validation images (no test split) after 1 epoch" in " ".join(printed.split())
