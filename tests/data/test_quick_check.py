"""The cheap data checks every classification training runs (data/checks.py): planted leaks, repeats, missing
classes, unreadable files and imbalance counted exactly, in memory and streamed; a clean folder finds nothing."""

import shutil

import numpy as np
import pytest
from PIL import Image

from convscope.data.checks import quick_check
from convscope.data.dataset import Dataset, Skipped, Split
from convscope.data.folder import load_folder


def _folder(root, counts: dict[str, dict[str, int]], seed: int = 0):
    """root/{split}/{class}/NNN.png: distinct random 8×8 RGB images, `counts[split][class]` of each."""
    rng = np.random.default_rng(seed)
    for split, classes in counts.items():
        for name, n in classes.items():
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(folder / f"{i:03}.png")
    return root


def _load(root, streamed=False):
    # memory_budget=1 byte: every split a FileSplit, as for a folder larger than memory
    return load_folder(root, (8, 8), 3, val_fraction=0, memory_budget=1 if streamed else None)


TWO = {"train": {"cat": 10, "dog": 10}, "test": {"cat": 4, "dog": 4}}


@pytest.mark.parametrize("streamed", [False, True])
def test_a_clean_folder_says_nothing_is_wrong(tmp_path, streamed):
    check = quick_check(_load(_folder(tmp_path, TWO), streamed), "data")
    assert check.sizes == {"train": 20, "test": 8}
    assert check.leaks == {"test": 0} and check.repeats == 0 and check.unreadable == 0
    assert check.missing == {"test": ()} and check.class_counts == {"cat": 10, "dog": 10}
    assert not check.serious and check.findings() == []
    assert check.line() == (
        "data check: 20 train / 8 test images, 2 classes, 10 training images per class; no leaks, repeats or "
        "unreadable files found"
    )


@pytest.mark.parametrize("streamed", [False, True])
def test_training_images_copied_into_test_are_a_leak(tmp_path, streamed):
    root = _folder(tmp_path, TWO)
    shutil.copy(root / "train/cat/003.png", root / "test/cat/copy.png")
    shutil.copy(root / "train/dog/007.png", root / "test/cat/copy2.png")  # a leak even under another class
    shutil.copy(root / "train/dog/001.png", root / "train/cat/again.png")  # a repeat within train
    check = quick_check(_load(root, streamed), "data")
    assert check.leaks == {"test": 2} and check.repeats == 1 and check.by_bytes == streamed
    assert check.serious
    same = "file" if streamed else "image"
    assert f"2 test {same}s identical to training {same}s (a leak), 1 repeated training image" in check.line()
    assert check.line().endswith("— `convscope doctor data` looks deeper")


def test_val_and_test_leaks_are_counted_apart(tmp_path):
    root = _folder(tmp_path, {**TWO, "val": {"cat": 3, "dog": 3}})
    for i in range(3):
        shutil.copy(root / f"train/dog/00{i}.png", root / f"val/dog/copy{i}.png")
    shutil.copy(root / "train/cat/000.png", root / "test/dog/copy.png")
    check = quick_check(_load(root))
    assert check.leaks == {"val": 3, "test": 1} and check.sizes == {"train": 20, "val": 9, "test": 9}
    assert "3 val images identical to training images (a leak), 1 test image identical to" in check.line()


def test_a_class_missing_from_test_is_named(tmp_path):
    root = _folder(tmp_path, {"train": {"a": 5, "b": 5, "c": 5}, "test": {"a": 2, "b": 2, "c": 1}})
    (root / "test/c/000.png").unlink()
    check = quick_check(_load(root), "my data")
    assert check.line().endswith("— `convscope doctor 'my data'` looks deeper")
    assert check.missing == {"test": ("c",)} and check.leaks == {"test": 0}
    assert check.serious and "no test image of class 'c'" in check.line()


def test_an_unreadable_file_is_counted_not_serious(tmp_path):
    root = _folder(tmp_path, TWO)
    (root / "train/dog/broken.png").write_text("not an image")
    check = quick_check(_load(root), "data")
    assert check.unreadable == 1 and check.class_counts == {"cat": 10, "dog": 10}
    assert not check.serious and "1 unreadable file left out" in check.line()


def _split(pixels: list[int], labels: list[int]) -> Split:
    """Images of one grey level each (1×1×1), so equal levels are equal images."""
    return Split(np.array(pixels, dtype=np.uint8).reshape(-1, 1, 1, 1), np.array(labels, dtype=np.int64))


def test_a_tenth_of_the_largest_class_is_imbalance():
    train = _split(list(range(33)), [0] * 30 + [1] * 3)
    data = Dataset("arrays", ("big", "small"), train, _split([200, 201], [0, 1]))
    check = quick_check(data, "/home/me/arrays.npz")
    assert check.class_counts == {"big": 30, "small": 3} and check.imbalanced and check.serious
    assert check.line() == (  # arrays (an .npz file): the doctor does not read them, so it is not named
        "data check: 33 train / 2 test images, 2 classes, 3–30 training images per class; class 'small' has 3 "
        "training images"
    )
    balanced = Dataset("arrays", ("big", "small"), _split(list(range(8)), [0] * 4 + [1] * 4), data.test)
    assert not quick_check(balanced).serious


def test_arrays_whose_test_is_their_validation_data_are_said_once():
    val = _split([1, 2, 50], [0, 1, 1])  # 1 and 2 are training images
    data = Dataset("arrays", ("a", "b"), _split([1, 2, 3, 3], [0, 1, 0, 1]), test=val, val=val, skipped=())
    check = quick_check(data)
    assert check.sizes == {"train": 4, "test": 3} and check.leaks == {"test": 2} and check.repeats == 1


def test_skipped_files_are_counted():
    skipped = (Skipped("a.png", "empty file"), Skipped("b.png", "empty file"))
    data = Dataset("x", ("a",), _split([1, 2], [0, 0]), _split([3], [0]), skipped=skipped)
    assert "2 unreadable files left out" in quick_check(data).line()
