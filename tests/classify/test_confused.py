"""The most-confused pairs (convscope.classify.confused): counts planted in a test folder, the counts against
sklearn's confusion matrix of the same predictions, the order within a pair, and the class maps of a kept image."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from convscope.classify.confused import class_maps, confused_pairs, most_confused
from convscope.errors import DataError, SpecError

PLANTED = {("dark", "light"): 3, ("light", "dark"): 2}  # test images filed under the wrong class's folder


def _images(folder, shade: str, count: int, start: int, rng) -> None:
    """`count` 20×20 gray images, clearly dark (0–60) or light (195–255), into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    low = 0 if shade == "dark" else 195
    for i in range(count):
        pixels = rng.integers(low, low + 61, (20, 20)).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"{shade}-{start + i:03}.png")


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """A lenet5 trained on dark/light images, tested on a test/ folder where 3 light images are filed as dark and
    2 dark ones as light: a network that tells the shades apart makes exactly those mistakes."""
    from convscope.tasks.train import train

    root = tmp_path_factory.mktemp("confused")
    rng = np.random.default_rng(0)
    for shade in ("dark", "light"):
        _images(root / "data" / "train" / shade, shade, 40, 0, rng)
        _images(root / "data" / "test" / shade, shade, 10, 100, rng)
    _images(root / "data" / "test" / "dark", "light", PLANTED[("dark", "light")], 200, rng)
    _images(root / "data" / "test" / "light", "dark", PLANTED[("light", "dark")], 300, rng)
    run = train(model="lenet5", data=str(root / "data"), epochs=4, batch_size=16, threads=1, out=str(root / "run"))
    return run


def test_the_planted_pairs_are_found_with_their_counts(planted):
    found = most_confused(planted.path)
    assert found.tested == 25
    assert found.wrong == 5
    assert found.accuracy == pytest.approx(20 / 25)
    assert [(p.true, p.predicted, p.count) for p in found.pairs] == [("dark", "light", 3), ("light", "dark", 2)]
    for pair in found.pairs:
        assert len(pair.images) == pair.count
        shades = {int(found.images[image.index].mean() > 127) for image in pair.images}
        assert shades == {pair.predicted_index}  # every kept image really is of the shade it was predicted as
        assert all(image.predicted_probability > 0.5 > image.true_probability for image in pair.images)
    assert sorted(found.images) == sorted(i.index for p in found.pairs for i in p.images)  # only the kept images
    assert found.to_dict()["pairs"][0]["count"] == 3


def test_a_runs_most_confused_is_the_same_from_python(planted):
    from convscope import load_run

    found = load_run(planted.path).most_confused(per_pair=2)
    assert [(p.true, p.predicted, p.count, len(p.images)) for p in found.pairs] == [
        ("dark", "light", 3, 2),
        ("light", "dark", 2, 2),
    ]
    shown = found.figure()  # in a notebook: a row per pair, its images titled with the wrong class's probability
    titles = [ax.get_title() for ax in shown.axes if ax.get_title()]
    assert len(shown.axes) == 2 * 6 and len(titles) == 4 and all(t.endswith("% light") for t in titles[:2])
    assert found._repr_png_().startswith(b"\x89PNG")


def test_the_counts_are_the_saved_evaluations(planted):
    """The same predictions as `convscope evaluate`: its saved confusion matrix has the same off-diagonal cells."""
    from convscope.classify.evaluate import saved_evaluation

    saved = saved_evaluation(planted)
    assert saved is not None
    found = most_confused(planted.path)
    cells = {(p.true_index, p.predicted_index): p.count for p in found.pairs}
    off = saved.confusion.copy()
    np.fill_diagonal(off, 0)
    assert cells == {(int(t), int(p)): int(off[t, p]) for t, p in zip(*np.nonzero(off), strict=True)}


def test_pairs_agree_with_sklearns_confusion_matrix():
    from sklearn.metrics import confusion_matrix

    rng = np.random.default_rng(3)
    classes = tuple("abcde")
    labels = rng.integers(0, 5, 400)
    logits = rng.normal(size=(400, 5)) + 1.5 * np.eye(5)[labels]
    probabilities = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    matrix = confusion_matrix(labels, probabilities.argmax(1), labels=range(5))
    pairs = confused_pairs(labels, probabilities, classes, per_pair=4)
    expected = sorted(
        ((classes[t], classes[p], int(matrix[t, p])) for t in range(5) for p in range(5) if t != p and matrix[t, p]),
        key=lambda row: -row[2],
    )
    assert [(p.true, p.predicted, p.count) for p in pairs] == expected  # ties in class order, as sorted() keeps them
    counts = [p.count for p in pairs]
    assert counts == sorted(counts, reverse=True) and sum(counts) == int((labels != probabilities.argmax(1)).sum())
    for pair in pairs:
        assert len(pair.images) == min(4, pair.count)
        confidence = [image.predicted_probability for image in pair.images]
        assert confidence == sorted(confidence, reverse=True)  # most confidently wrong first
        members = np.flatnonzero((labels == pair.true_index) & (probabilities.argmax(1) == pair.predicted_index))
        assert confidence[0] == pytest.approx(probabilities[members, pair.predicted_index].max())
        for image in pair.images:
            assert image.true_probability == pytest.approx(probabilities[image.index, pair.true_index])
    at_least = confused_pairs(labels, probabilities, classes, min_count=10, most=2)
    assert [(p.true, p.predicted, p.count) for p in at_least] == [row for row in expected if row[2] >= 10][:2]


def test_no_mistakes_gives_no_pairs_and_bad_arguments_are_refused():
    probabilities = np.eye(3)[[0, 1, 2, 1]]
    assert confused_pairs(np.array([0, 1, 2, 1]), probabilities, ("a", "b", "c")) == []
    with pytest.raises(DataError, match="min_count must be at least 1"):
        confused_pairs(np.array([0]), np.eye(3)[[0]], ("a", "b", "c"), min_count=0)
    with pytest.raises(DataError, match="must be 1×2"):
        confused_pairs(np.array([0]), np.eye(3)[[0]], ("a", "b"))


def test_class_maps_are_for_the_true_and_the_predicted_class(planted):
    from convscope.loaded import load

    found = most_confused(planted.path, per_pair=1)
    loaded = load(planted.path, "cpu")
    pair = found.pairs[0]
    image = found.images[pair.images[0].index]
    true_map, predicted_map = class_maps(loaded, image, pair)
    assert (true_map.class_name, predicted_map.class_name) == ("dark", "light")
    assert true_map.heatmap.shape == predicted_map.heatmap.shape == loaded.input[:2] == image.shape[:2]
    assert predicted_map.method == "hirescam"
    assert predicted_map.probability == pytest.approx(pair.images[0].predicted_probability, abs=1e-4)


def test_a_detector_is_refused(tmp_path):
    from convscope.data.detection.scenes import make_scenes
    from convscope.spec import NetSpec
    from convscope.tasks.train import train

    scenes = make_scenes(tmp_path / "scenes", 8, seed=1, size=32, min_side=8, max_side=16)
    spec = NetSpec.from_dict({"name": "tiny-det", "input": "32x32x3", "layers": [
        {"conv": {"filters": 4, "size": 3, "stride": 2, "padding": "same"}},
        {"conv": {"filters": 4, "size": 3, "stride": 2, "padding": "same"}},
        {"detect": {"classes": 10, "channels": 4}}]})  # fmt: skip
    (tmp_path / "det.yaml").write_text(spec.to_yaml())
    run = train(model=str(tmp_path / "det.yaml"), data=str(scenes), epochs=1, batch_size=4, threads=1,
                out=str(tmp_path / "boxes"), report=False)  # fmt: skip
    with pytest.raises(SpecError, match="most-confused pairs are for classifiers; tiny-det is a detector"):
        most_confused(run.path)
