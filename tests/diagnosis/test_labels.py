"""The doctor's label check with a trained run (convscope.diagnosis.labels): swapped labels on a tiny trained run are
found and ranked first, the test score with and without a leaked test image, which images count as trained on (as
training split them), the run's class-activation maps, a run of other classes or of the other task refused, and a
detector's missed and unlabelled boxes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import yaml
from PIL import Image

from convscope.config import TrainConfig
from convscope.data.detection.boxes import Boxes
from convscope.data.folder import load_folder
from convscope.diagnosis.doctor import diagnose
from convscope.diagnosis.labels_detection import MISSED_SCORE, Predicted, compare, iou
from convscope.diagnosis.labels_predict import _roles, cross_validate
from convscope.diagnosis.listing import Item, list_data
from convscope.errors import DataError
from convscope.tasks.train import train

LEVELS = {"dark": 45, "light": 210, "mid": 128}  # mean gray level of each class (sorted names: classes 0, 1, 2)
# (file, the class folder it is moved to): each a clear image of its own class given the wrong label
SWAPS = {
    "train/dark/001.png": "light",
    "train/light/002.png": "mid",
    "train/mid/003.png": "dark",
    "test/dark/004.png": "mid",
    "test/light/005.png": "dark",
    "test/mid/006.png": "light",
}
LEAK = ("train/mid/010.png", "test/mid/leak.png")  # a training image copied into test, with its own label


def noisy(rng, level: int, size: int = 28) -> Image.Image:
    return Image.fromarray(np.clip(rng.normal(level, 22, (size, size)), 0, 255).astype(np.uint8))


def make_data(root: Path, train: int = 40, test: int = 15) -> Path:
    """Three classes told apart by brightness (28×28 gray PNGs: lenet5's own input, nothing resized), with SWAPS
    and LEAK planted."""
    rng = np.random.default_rng(0)
    for split, count in (("train", train), ("test", test)):
        for name, level in LEVELS.items():
            (root / split / name).mkdir(parents=True)
            for i in range(count):
                noisy(rng, level).save(root / split / name / f"{i:03}.png")
    for name, to in SWAPS.items():
        source = root / name
        shutil.move(source, source.parent.parent / to / f"swapped-{source.name}")
    shutil.copy(root / LEAK[0], root / LEAK[1])
    return root


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("labels")
    data = make_data(root / "data")
    run = train(model="lenet5", data=str(data), epochs=6, batch_size=16, threads=1, out=str(root / "run"),
                precision="fp32", report=False)  # fmt: skip
    return data, run


@pytest.fixture(scope="module")
def diagnosis(trained):
    data, run = trained
    return diagnose(data, run=run.path)


def swapped_names() -> set[str]:
    return {str(Path(name).parent.parent / to / f"swapped-{Path(name).name}") for name, to in SWAPS.items()}


def test_the_swapped_labels_are_found_and_ranked_first(diagnosis):
    found = diagnosis.finding("suspicious-label")
    assert found is not None and found.serious and found.check == "labels"
    names = [example.name for example in found.examples]
    assert set(names[: len(SWAPS)]) == swapped_names()  # all six, before anything else
    assert found.count == len(found.examples) >= len(SWAPS)
    scores = [example.score for example in found.examples]
    assert scores == sorted(scores)  # worst first: the lowest probability of the given class
    first = {example.name: example for example in found.examples}["train/light/swapped-001.png"]
    assert first.label == "light" and first.split == "train"
    assert first.why.startswith("labelled light, the network says dark (")
    assert first.why.endswith(", cross-validated")  # a training image: judged by the cross-validated regression
    test_one = {example.name: example for example in found.examples}["test/mid/swapped-004.png"]
    assert test_one.why.startswith("labelled mid, the network says dark (") and "cross" not in test_one.why
    assert found.title.startswith(f"{found.count} image(s) whose label the network confidently disagrees with (")


def test_the_test_accuracy_is_the_runs_own_and_without_the_leaked_image(trained, diagnosis):
    data, run = trained
    recorded = json.loads((run.path / "results.json").read_text())["test_acc"]
    scores = diagnosis.scores
    assert scores["test accuracy"] == pytest.approx(recorded, abs=1e-6)  # the same decode, network and test images
    assert diagnosis.count("leak") == 1
    key = "test accuracy without the 1 images that have a twin in train"
    # the leaked image is a training image: right, so leaving it out of the 46 test images lowers the score
    right = round(scores["test accuracy"] * 46)
    assert scores[key] == pytest.approx((right - 1) / 45)
    assert any("1 of 46 test images have a twin in train" in note for note in diagnosis.notes)


def test_the_worst_examples_get_their_class_activation_maps(diagnosis):
    found = diagnosis.finding("suspicious-label")
    assert set(diagnosis.pictures) == {example.name for example in found.examples[:24]}
    picture = diagnosis.pictures["train/light/swapped-001.png"]
    # two 28×28 maps, 4 px apart, enlarged 5× to reach 128 px
    assert picture.dtype == np.uint8 and picture.shape == (140, (28 + 4 + 28) * 5, 3)
    assert (picture[:, 28 * 5 : 32 * 5] == 255).all()  # the white gap
    assert not (picture[:, : 28 * 5] == 255).all()


def test_training_images_are_told_apart_as_training_split_them(trained):
    """The rows cross-validated are exactly the images training trained on: train/ less its seeded val hold-out."""
    data, run = trained
    listing = list_data(data)
    kept = np.array([i for i, item in enumerate(listing.items) if item.split == "train"])
    rows, test = _roles(run, listing, "train", kept, same=True)
    assert len(test) == 0
    loaded = load_folder(data, (28, 28), 1, val_fraction=run.config.val_fraction, seed=run.config.seed)
    assert len(rows) == len(loaded.train) == 108  # 120 less a tenth for validation
    own = {np.asarray(Image.open(listing.items[row].path)).tobytes() for row in rows}
    assert own == {image[:, :, 0].tobytes() for image in loaded.train.images}


def test_a_folder_that_training_splits_itself_gives_the_same_train_and_test(tmp_path):
    """A flat folder (root/<class>/): the test and val hold-outs are reproduced with training's seeds."""
    rng = np.random.default_rng(3)
    for name, level in LEVELS.items():
        (tmp_path / "flat" / name).mkdir(parents=True)
        for i in range(23):
            noisy(rng, level, 8).save(tmp_path / "flat" / name / f"{i:02}.png")
    listing = list_data(tmp_path / "flat")
    run = SimpleNamespace(config=TrainConfig(data=str(tmp_path / "flat"), seed=5, val_fraction=0.2))
    rows, test = _roles(run, listing, "all", np.arange(len(listing.items)), same=True)
    loaded = load_folder(tmp_path / "flat", (8, 8), 1, val_fraction=0.2, seed=5)

    def pixels(chosen):
        return sorted(np.asarray(Image.open(listing.items[row].path)).tobytes() for row in chosen)

    assert pixels(rows) == sorted(image[:, :, 0].tobytes() for image in loaded.train.images)
    assert pixels(test) == sorted(image[:, :, 0].tobytes() for image in loaded.test.images)
    assert (len(rows), len(test)) == (len(loaded.train), len(loaded.test)) == (48, 6)


def test_cross_validation_gives_out_of_fold_probabilities():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 30)
    features = rng.normal(0, 1, (90, 8)).astype(np.float32)
    features[np.arange(90), labels] += 4  # each class lifts its own feature
    labels[[0, 31]] = [2, 0]  # two wrong labels: the other folds' regressions still say their true class
    probs = cross_validate(features, labels, 3, folds=5, seed=0)
    assert probs.shape == (90, 3) and np.allclose(probs.sum(1), 1, atol=1e-5)
    assert (probs.argmax(1) == np.repeat(np.arange(3), 30)).mean() > 0.95
    assert probs[0].argmax() == 0 and probs[31].argmax() == 1


def test_a_run_of_other_classes_is_refused_naming_both(trained, tmp_path):
    _, run = trained
    other = tmp_path / "two"
    rng = np.random.default_rng(1)
    for split in ("train", "test"):
        for name in ("dark", "light"):
            (other / split / name).mkdir(parents=True)
            for i in range(3):
                noisy(rng, LEVELS[name]).save(other / split / name / f"{i}.png")
    with pytest.raises(DataError, match=r"trained on the classes \(dark, light, mid\), but .*two has \(dark, light\)"):
        diagnose(other, run=run.path)


def test_a_detectors_run_on_a_class_folder_is_refused(trained, tmp_path):
    data, run = trained
    fake = tmp_path / "detector"
    shutil.copytree(run.path, fake)  # the classifier's record, its network made a detector's
    spec = yaml.safe_load((fake / "spec.yaml").read_text())
    spec["layers"] = [{"conv": {"filters": 4, "size": 3, "stride": 2, "padding": "same"}}, {"detect": {"classes": 3}}]
    (fake / "spec.yaml").write_text(yaml.safe_dump(spec))
    with pytest.raises(DataError, match=r"a detection run \(convscope detect train\) cannot judge the labels of .*"
                                        r"a classification data set"):  # fmt: skip
        diagnose(data, run=fake)


# -- detection ------------------------------------------------------------------------------------------------------
def _item(xyxy, classes) -> Item:
    boxes = Boxes(np.array(xyxy, np.float32).reshape(-1, 4), np.array(classes, np.int64))
    return Item("train", "images/a.jpg", None, None, 7, boxes)


def test_boxes_without_a_prediction_near_them_and_predictions_without_a_box():
    item = _item([[0, 0, 10, 10], [50, 50, 70, 70], [100, 100, 120, 120]], [0, 1, 0])
    found = Predicted(
        boxes=np.array([[1, 1, 11, 11], [52, 48, 69, 72], [200, 200, 230, 220], [300, 0, 310, 5]], np.float64),
        scores=np.array([0.9, 0.2, 0.81, 0.45]),
        classes=np.array([1, 1, 1, 0]),
    )
    missed, unlabelled = compare(item, found, ("RBC", "WBC"))
    # box 0 has a prediction (of another class: matching ignores it); box 1 only a weak one; box 2 none at all
    assert [(e.why, e.box, e.label, e.score) for e in missed] == [
        ("WBC box with no prediction near it (best 0.20)", (50.0, 50.0, 70.0, 70.0), "WBC", 0.2),
        ("RBC box with no prediction near it", (100.0, 100.0, 120.0, 120.0), "RBC", 0.0),
    ]
    # only the confident prediction far from every box (0.45 is under the 0.5 it takes)
    assert [(e.why, e.box, e.index) for e in unlabelled] == [
        ("the network sees a WBC (0.81) where no box is", (200.0, 200.0, 230.0, 220.0), 7)
    ]
    assert MISSED_SCORE == 0.3


def test_iou_of_every_pair():
    a = np.array([[0, 0, 10, 10], [0, 0, 0, 0]])
    b = np.array([[5, 0, 15, 10], [0, 0, 10, 10], [20, 20, 30, 30]])
    assert np.allclose(iou(a, b), [[50 / 150, 1, 0], [0, 0, 0]])
    assert iou(a, np.zeros((0, 4))).shape == (2, 0)


TINY_DETECTOR = {"name": "tiny-det", "input": "64x64x3",
                 "layers": [{"conv": {"filters": 8, "size": 3, "stride": 2, "padding": "same"}},
                            {"conv": {"filters": 8, "size": 3, "stride": 2, "padding": "same"}},
                            {"detect": {"classes": 10, "channels": 8}}]}  # fmt: skip


def test_a_detectors_findings_are_those_of_its_own_predictions(tmp_path):
    """End to end on fashion-scenes with a detector trained one epoch: every missed box and unlabelled object is what
    `detect predict` (convscope.detect.predict.detect_images) gives for the same images, box for box."""
    pytest.importorskip("pycocotools")
    if not Path("/usr/share/datasets/fashion-mnist").is_dir():
        pytest.skip("Fashion-MNIST (Debian package dataset-fashion-mnist) is not installed")
    from convscope.data.detection.scenes import make_scenes
    from convscope.detect.predict import detect_images
    from convscope.spec import NetSpec

    scenes = make_scenes(tmp_path / "scenes", 30, seed=1, size=64, min_side=10, max_side=28)
    spec = tmp_path / "tiny-det.yaml"
    spec.write_text(NetSpec.from_dict(TINY_DETECTOR).to_yaml())
    run = train(model=str(spec), data=str(scenes), epochs=1, batch_size=8, threads=1, out=str(tmp_path / "run"),
                report=False)  # fmt: skip
    diagnosis = diagnose(scenes, run=run.path)
    listing = diagnosis.listing
    paths = [str(item.path) for item in listing.items]
    weak = {str(f.path): f for f in detect_images(run, paths, min_score=0.3, all_classes=True)}
    sure = {str(f.path): f for f in detect_images(run, paths, min_score=0.5)}
    missed, unlabelled = set(), set()

    def shown(name, boxes):  # as the Examples give them: pixels rounded to 0.1
        return {(name, tuple(round(float(v), 1) for v in box)) for box in boxes}

    for item in listing.items:
        weak_boxes, sure_boxes = weak[str(item.path)].boxes, sure[str(item.path)].boxes
        missed |= shown(item.name, item.boxes.xyxy[~(iou(item.boxes.xyxy, weak_boxes) >= 0.1).any(1)])
        unlabelled |= shown(item.name, sure_boxes[~(iou(item.boxes.xyxy, sure_boxes) >= 0.1).any(0)])
    found = diagnosis.finding("missed-box")
    assert {(e.name, e.box) for e in (found.examples if found else ())} == missed
    found = diagnosis.finding("unlabelled-object")
    assert {(e.name, e.box) for e in (found.examples if found else ())} == unlabelled
    assert diagnosis.count("missed-box") == len(missed) > 0  # one epoch: a weak detector misses boxes
    assert any("score ≥ 0.3 at IoU ≥ 0.1" in note for note in diagnosis.notes)
    # the test mAP, computed here in the images' own pixels, is the run's own (64×64 scenes: no letterbox)
    assert list(diagnosis.scores) == ["test mAP@0.5"]
    assert diagnosis.scores["test mAP@0.5"] == pytest.approx(run.results()["test_map50"], abs=1e-6)


def test_a_run_near_chance_judges_no_label_and_says_why():
    from convscope.diagnosis.labels import suspicious
    from convscope.diagnosis.labels_predict import Probabilities
    from convscope.diagnosis.listing import Item, Listing

    rng = np.random.default_rng(0)
    n = 200
    items = [Item("test", f"test/{i}.png", None, i % 2, i) for i in range(n)]
    listing = Listing("x", "image folders", "classification", ("cat", "dog"), items, {"test": "test/"})
    values = rng.dirichlet((0.3, 0.3), n).astype(np.float32)  # confident, and right only by chance
    flags = [np.zeros(n, bool) for _ in range(4)]
    flags[0][:] = True  # judged
    notes = []
    assert suspicious(Probabilities(listing, values, *flags), listing, notes) == []
    (note,) = notes
    assert note.startswith("labels of 200 images not judged: their predictions (of the run) are ")
    assert "under the 75% needed" in note
    right = np.eye(2, dtype=np.float32)[[item.label for item in items]] * 0.9 + 0.05  # a strong run
    right[:3] = right[:3, ::-1]  # three labels it disagrees with
    assert [issue.row for issue in suspicious(Probabilities(listing, right, *flags), listing, [])] == [0, 1, 2]
