"""NumPy arrays as training data (convscope.data.arrays): what keras.datasets' load_data() returns is accepted as
it is, and bad arrays are one DataError line naming the argument, its shape and dtype, never the values."""

import numpy as np
import pytest

from convscope.data.arrays import images_uint8, labels_int, load_arrays, save_arrays
from convscope.errors import DataError


def test_images_are_converted_as_the_tutorials_hold_them():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (4, 5, 6, 3), dtype=np.uint8)
    assert images_uint8(x, "x") is not None and images_uint8(x, "x").dtype == np.uint8
    np.testing.assert_array_equal(images_uint8(x / 255.0, "x"), x)  # float 0-1, as after `x / 255.0`
    np.testing.assert_array_equal(images_uint8(x.astype(np.float32), "x"), x)  # float 0-255
    gray = images_uint8(x[..., 0], "x")  # N×H×W
    assert gray.shape == (4, 5, 6, 1)
    np.testing.assert_array_equal(gray[..., 0], x[..., 0])


def test_labels_as_keras_gives_them():
    np.testing.assert_array_equal(labels_int(np.array([[3], [1]]), 2, "y"), [3, 1])  # CIFAR-10: N×1
    np.testing.assert_array_equal(labels_int(np.eye(4)[[2, 0, 3]], 3, "y"), [2, 0, 3])  # one-hot
    np.testing.assert_array_equal(labels_int(np.array([1.0, 0.0]), 2, "y"), [1, 0])  # whole floats


@pytest.mark.parametrize(
    ("x", "y", "expected"),
    [
        (np.zeros((4, 5, 6, 3, 1)), np.zeros(4, int), "data x: shape (4, 5, 6, 3, 1), dtype float64: expected N×H×W×C"),
        (np.zeros((4, 5, 6, 2)), np.zeros(4, int), "data x: shape (4, 5, 6, 2), dtype float64: expected N×H×W×C"),
        (np.full((4, 5, 6), np.nan), np.zeros(4, int), "data x: shape (4, 5, 6), dtype float64: holds NaN"),
        (np.full((4, 5, 6), -1.5), np.zeros(4, int), "values span -1.5 to -1.5; expected 0–1 or 0–255"),
        (np.zeros((4, 5, 6)), np.zeros(3, int), "data y: shape (3,), dtype int64: 3 labels for 4 images"),
        (np.zeros((4, 5, 6)), np.array([0, 1, -1, 0]), "class indices must be 0 to 99999; found -1 to 1"),
        (np.zeros((4, 5, 6)), np.array(["a"] * 4), "data y: shape (4,), dtype <U1: expected N integer class indices"),
    ],
)
def test_bad_arrays_are_one_line_naming_argument_shape_and_dtype(x, y, expected):
    with pytest.raises(DataError) as err:
        save_arrays((x, y))
    message = str(err.value)
    assert expected in message
    assert "\n" not in message and len(message) < 300  # never a dump of the values


def test_arrays_are_kept_once_and_read_back(tmp_path, monkeypatch):
    monkeypatch.setenv("CONVSCOPE_DATA_HOME", str(tmp_path))
    rng = np.random.default_rng(1)
    x, y = rng.integers(0, 256, (40, 8, 8, 3), dtype=np.uint8), np.arange(40) % 4
    xt, yt = x[:8], y[:8].reshape(-1, 1)
    path = save_arrays((x, y), val=(xt, yt), classes=["a", "b", "c", "d"])
    assert save_arrays((x, y), val=(xt, yt), classes=["a", "b", "c", "d"]) == path  # the same arrays: the same file
    assert list((tmp_path / "arrays").iterdir()) == [path]
    data = load_arrays(path)
    assert data.classes == ("a", "b", "c", "d")
    np.testing.assert_array_equal(data.train.images, x)
    np.testing.assert_array_equal(data.val.images, xt)
    np.testing.assert_array_equal(data.test.labels, yt[:, 0])  # no test_data: tested on the validation images
    alone = load_arrays(save_arrays((x, y)), seed=0, val_fraction=0.2)  # neither: a seeded fifth held out
    assert (len(alone.train), len(alone.test), alone.val) == (32, 8, None)  # 2 of each class
    assert alone.classes == ("0", "1", "2", "3")


def test_classes_must_name_every_label():
    x, y = np.zeros((4, 5, 6), np.uint8), np.array([0, 1, 2, 0])
    with pytest.raises(DataError, match="classes: 3 distinct names are needed for labels 0 to 2"):
        save_arrays((x, y), classes=["a", "b"])


def test_an_npz_that_is_not_one_is_refused(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(DataError, match="bad.npz: not a readable NumPy .npz file"):
        load_arrays(bad)
