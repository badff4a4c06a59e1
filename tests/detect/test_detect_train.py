"""The detector end to end: the detect layer in specs and shapes, training on fashion-scenes into an ordinary run
folder (exact resume included), COCO evaluation, and predictions drawn on image files."""

from __future__ import annotations

import io
import json
import os

import numpy as np
import pytest
import torch
from helpers import StopAt
from PIL import Image
from safetensors.torch import load_file

from convscope.builder import build
from convscope.cli import main
from convscope.data.detection.scenes import make_scenes
from convscope.detect.evaluate import evaluate_detector
from convscope.detect.predict import detect_images
from convscope.errors import SpecError
from convscope.presets import get_preset
from convscope.shapes import infer
from convscope.spec import NetSpec
from convscope.tasks.train import Interrupted, train

pytest.importorskip("pycocotools")
FASHION = "/usr/share/datasets/fashion-mnist"
if not os.path.isdir(FASHION):
    pytest.skip("Fashion-MNIST (Debian package dataset-fashion-mnist) is not installed", allow_module_level=True)

SMALL = {"input": "64x64x3", "layers": [{"conv": {"filters": 8, "size": 3, "stride": 2, "padding": "same"}},
                                        {"conv": {"filters": 16, "size": 3, "stride": 2, "padding": "same"}},
                                        {"conv": {"filters": 16, "size": 3, "stride": 2, "padding": "same"}},
                                        {"detect": {"classes": 10, "channels": 8}}]}  # fmt: skip


def test_detect_layer_shapes_and_params_match_the_module():
    spec = get_preset("scenes-det")
    report = infer(spec)
    assert report.output_shape == (32, 32, 14)  # 128 / 4 positions, 10 class heatmaps + width, height, 2 offsets
    model = build(spec)
    assert sum(p.numel() for p in model.parameters()) == report.params
    assert tuple(model(torch.zeros(1, 3, 128, 128)).shape) == (1, 14, 32, 32)


def test_detect_needs_a_stride_it_can_upsample_to_four():
    bad = {"input": "60x60x3", "layers": [{"conv": {"filters": 8, "size": 3, "stride": 3, "padding": "same"}},
                                          {"detect": {"classes": 2}}]}  # fmt: skip
    with pytest.raises(SpecError, match=r"layer 2 \(detect 2 classes, stride 4\): detect upsamples its input"):
        infer(NetSpec.from_dict(bad))


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    return make_scenes(tmp_path_factory.mktemp("scenes"), 60, seed=1, size=64, min_side=10, max_side=28)


@pytest.fixture(scope="module")
def spec_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("spec") / "tiny-det.yaml"
    path.write_text(NetSpec.from_dict({"name": "tiny-det", **SMALL}).to_yaml())
    return path


def _train(scenes, spec_file, out, **kw):
    settings = dict(model=str(spec_file), data=str(scenes), epochs=2, batch_size=8, threads=1, out=str(out))
    return train(**{**settings, **kw})


@pytest.fixture(scope="module")
def run(scenes, spec_file, tmp_path_factory):
    return _train(scenes, spec_file, tmp_path_factory.mktemp("runs") / "det")


def test_a_detection_run_folder_has_everything(run):
    names = {p.name for p in run.path.iterdir()}
    assert {"config.yaml", "spec.yaml", "metrics.csv", "results.json", "report.html", "pr_curves.png"} <= names
    assert {"curves.png", "predictions.png", "coco_eval.txt", "weights", "checkpoint.safetensors"} <= names
    header = (run.path / "metrics.csv").read_text().splitlines()[0]
    assert header == "epoch,train_loss,val_loss,val_map50,val_map50_95,lr,seconds"
    results = json.loads((run.path / "results.json").read_text())
    assert 0 <= results["test_map50_95"] <= results["test_map50"] <= 1 and results["test_images"] == 6
    assert set(results["per_class_ap50"]) == set(run.data.classes) and len(run.data.classes) == 10


def test_evaluate_reproduces_the_test_numbers(run):
    metrics = evaluate_detector(run.path)
    assert metrics.map50 == pytest.approx(run.results()["test_map50"])
    assert metrics.map50_95 == pytest.approx(run.results()["test_map50_95"])


def test_detect_evaluate_and_the_report_read_the_metrics_training_saved(run, monkeypatch, capsys):
    from convscope.detect import evaluate as detection

    assert main(["detect", "evaluate", str(run.path)]) == 0
    scored = capsys.readouterr().out
    computed = evaluate_detector(run.path)  # scored again, and saved again
    saved = detection.saved_detection(run)
    assert saved.map50 == pytest.approx(run.results()["test_map50"]) and saved.images == run.results()["test_images"]
    assert saved.per_class_ap50.keys() == computed.per_class_ap50.keys() and saved.summary == computed.summary
    curves = computed.precision[..., 0, -1]  # T×R×K: the precision–recall data the report draws
    np.testing.assert_allclose(saved.precision[..., 0, -1], curves, atol=1e-5)

    def refuse(*args, **kwargs):
        raise AssertionError("the test split was scored again")

    monkeypatch.setattr(detection, "split_metrics", refuse)
    assert main(["detect", "evaluate", str(run.path)]) == 0
    assert capsys.readouterr().out == scored
    assert main(["report", str(run.path)]) == 0 and "mAP@0.5" in (run.path / "report.html").read_text()
    (run.path / "detection.json").write_text(json.dumps({"weights_sha256": "0" * 64}))  # other weights: scored
    with pytest.raises(AssertionError, match="scored again"):
        detection.detection_of(run)
    monkeypatch.undo()
    assert detection.detection_of(run).map50 == saved.map50 and detection.saved_detection(run) is not None


def test_the_package_verbs_know_both_kinds_of_run(run):
    import convscope

    with pytest.raises(SpecError, match=f"{run.path} is a detector: use convscope detect evaluate"):
        convscope.evaluate(run.path)
    assert convscope.write_report(run.path) == run.path / "report.html"


def test_a_coco_folder_from_convert_trains_and_evaluates_like_its_source(run, scenes, tmp_path, capsys):
    from convscope.data.detection.convert import convert
    from convscope.data.detection.load import load_detection

    convert(scenes, "coco", tmp_path / "coco")
    folder = load_detection(str(tmp_path / "coco"), None, 64, 0.1, 0)
    source = load_detection(str(scenes), None, 64, 0.1, 0)
    assert [len(s) for s in (folder.train, folder.val, folder.test)] == [len(s) for s in (source.train, source.val,
                                                                                          source.test)]  # fmt: skip
    # One COCO JSON given to evaluate is scored whole (not a held-out tenth of it), like the source's test split.
    whole = evaluate_detector(run.path, str(tmp_path / "coco" / "test.json"))
    assert whole.images == len(source.test) and whole.map50 == pytest.approx(run.results()["test_map50"])
    assert main(["detect", "lint", str(tmp_path / "coco")]) == 0 and "no problems found" in capsys.readouterr().out


def test_stopped_run_resumes_exactly(scenes, spec_file, run, tmp_path):
    out = tmp_path / "stopped"
    with pytest.raises(Interrupted):
        _train(scenes, spec_file, out, callbacks=[StopAt(1, 2)])
    train(resume=out, report=False)
    a, b = load_file(out / "weights" / "last.safetensors"), load_file(run.weights / "last.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_predict_maps_boxes_back_to_the_original_image(run, scenes, tmp_path):
    # A wide copy of a test scene: letterboxing pads it, and boxes must come back in the wide image's pixels.
    scene = np.asarray(Image.open(next((scenes / "images" / "test").iterdir())).convert("RGB"))
    wide = np.concatenate([scene, np.full_like(scene, 114)], axis=1)  # 64×128: the scene on the left
    Image.fromarray(wide).save(tmp_path / "wide.png")
    (tmp_path / "broken.png").write_bytes(b"not a png")
    found = detect_images(run.path, [str(tmp_path / "wide.png"), str(tmp_path / "broken.png")], 0.0, tmp_path / "out")
    assert found[1].error and found[0].error is None
    assert (
        len(found[0].boxes) > 0 and (found[0].boxes[:, [0, 2]] <= 128).all() and (found[0].boxes[:, 1::2] <= 64).all()
    )
    assert found[0].picture.exists() and Image.open(found[0].picture).size[0] >= 384  # enlarged so labels are readable


def test_the_python_run_of_a_detector_predicts_boxes_that_display(run, scenes):
    import convscope

    loaded = convscope.load_run(run.path)
    image = next((scenes / "images" / "test").iterdir())
    found = loaded.predict(image)
    assert found.error is None and found.classes == loaded.data.classes and loaded.loaded.model is not None
    picture = Image.open(io.BytesIO(found._repr_png_()))
    assert picture.mode == "RGB" and picture.size[0] >= 384  # drawn as the saved pictures are: enlarged
    assert [f.path for f in loaded.predict([image, image])] == [image, image]
    assert loaded.headline().startswith("test mAP@0.5")


def test_detect_cli_make_scenes_lint_and_predict(run, tmp_path, capsys):
    assert main(["detect", "make-scenes", "--out", str(tmp_path / "s"), "--n", "10", "--size", "64"]) == 0
    assert "fashion-scenes: 10 scenes" in capsys.readouterr().out
    label = next((tmp_path / "s" / "labels" / "train").iterdir())
    label.write_text(label.read_text() + "3 0.5 0.5 1.4 0.2\n")  # a box wider than the image
    assert main(["detect", "lint", str(tmp_path / "s")]) == 1  # problems found
    captured = capsys.readouterr()
    assert f"{label.name}, line" in captured.out and "coordinates outside [0, 1]" in captured.out
    assert captured.err == "convscope: 1 label problem(s): 1 box outside the image\n"
    image = next((tmp_path / "s" / "images" / "test").iterdir())
    assert main(["detect", "predict", str(run.path), str(image), "--json", "--min-score", "0"]) == 0
    [entry] = json.loads(capsys.readouterr().out)
    assert entry["image"] == str(image) and all(len(o["box"]) == 4 for o in entry["objects"])


def test_classifier_commands_point_a_detector_to_detect(run, capsys):
    assert main(["evaluate", str(run.path)]) == 2
    assert f"{run.path} is a detector: use convscope detect evaluate" in capsys.readouterr().err
    assert main(["report", str(run.path)]) == 0  # the report knows both kinds of run
    assert "mAP@0.5" in (run.path / "report.html").read_text()
