"""The decoded-folder cache: a second read of the same unchanged folder gives the same arrays without decoding; any
change to a file decodes again; it lives outside the user's folder, never unpickles, and stays within its bound."""

import os
import time

import numpy as np
import pytest
from PIL import Image

from convscope.data import cache, folder
from convscope.data.folder import load_folder

SIZE = (12, 12)


def make(root, per_class=6):
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        (root / "train" / name).mkdir(parents=True)
        (root / "validation" / name).mkdir(parents=True)
        for i in range(per_class):
            for split in ("train", "validation"):
                pixels = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / name / f"{i}.png")
    return root


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("CONVSCOPE_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def counting_decodes(monkeypatch):
    calls = []
    real = folder._decode_into

    def decode(out, index, path, channels):
        calls.append(path)
        return real(out, index, path, channels)

    monkeypatch.setattr(folder, "_decode_into", decode)
    return calls


def test_a_second_read_comes_from_the_cache_with_identical_arrays(tmp_path, cache_dir, monkeypatch):
    root = make(tmp_path / "data")
    calls = counting_decodes(monkeypatch)
    first = load_folder(root, SIZE, 3, seed=1)
    assert len(calls) == 24 and len(list(cache_dir.glob("*.npz"))) == 2  # train and validation (the test split)
    second = load_folder(root, SIZE, 3, seed=1)
    assert len(calls) == 24  # nothing decoded again
    for name in ("train", "val", "test"):
        a, b = getattr(first, name), getattr(second, name)
        assert np.array_equal(a.images, b.images) and np.array_equal(a.labels, b.labels), name
    assert not any(p.suffix == ".npz" for p in root.rglob("*"))  # nothing written in the user's folder


def test_a_changed_added_or_removed_file_is_decoded_again(tmp_path, cache_dir, monkeypatch):
    root = make(tmp_path / "data")
    load_folder(root, SIZE, 3)
    calls = counting_decodes(monkeypatch)
    changed = root / "train" / "a" / "0.png"
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(changed)
    os.utime(changed, ns=(time.time_ns(), time.time_ns() + 10**9))
    data = load_folder(root, SIZE, 3)
    assert len(calls) == 12  # train again; validation/ unchanged came from the cache
    assert (data.train.images == 0).all(axis=(1, 2, 3)).sum() + (data.val.images == 0).all(axis=(1, 2, 3)).sum() == 1
    (root / "train" / "b" / "5.png").unlink()
    load_folder(root, SIZE, 3)
    assert len(calls) == 23  # the 11 training images left, decoded again


def test_another_size_is_another_entry(tmp_path, cache_dir):
    root = make(tmp_path / "data")
    assert load_folder(root, SIZE, 3).train.images.shape[1:] == (12, 12, 3)
    assert load_folder(root, (8, 8), 1).train.images.shape[1:] == (8, 8, 1)
    assert len(list(cache_dir.glob("*.npz"))) == 4


def test_skipped_files_are_reported_again_from_the_cache(tmp_path, cache_dir):
    root = make(tmp_path / "data")
    (root / "train" / "a" / "broken.png").write_bytes(b"not a png")
    first = load_folder(root, SIZE, 3)
    second = load_folder(root, SIZE, 3)
    assert [s.path for s in first.skipped] == [s.path for s in second.skipped] == [str(root / "train/a/broken.png")]


def test_a_damaged_entry_is_removed_and_the_folder_decoded_again(tmp_path, cache_dir, monkeypatch):
    root = make(tmp_path / "data")
    first = load_folder(root, SIZE, 3)
    for entry in cache_dir.glob("*.npz"):
        entry.write_bytes(entry.read_bytes()[:100])
    calls = counting_decodes(monkeypatch)
    again = load_folder(root, SIZE, 3)
    assert len(calls) == 24 and np.array_equal(first.test.images, again.test.images)


def test_an_entry_holding_a_pickled_object_is_never_unpickled(tmp_path, cache_dir):
    cache_dir.mkdir()
    name = "f" * 32
    np.savez(cache_dir / f"{name}.npz", images=np.array([object()], dtype=object), labels=np.zeros(1), skipped=b"[]")
    assert cache.load(name) is None and not (cache_dir / f"{name}.npz").exists()


def test_the_cache_stays_within_its_bound_dropping_the_least_recently_used(tmp_path, cache_dir, monkeypatch):
    monkeypatch.setenv("CONVSCOPE_CACHE_MAX_GB", str(25_000 / 2**30))  # 25 kB: room for two 10 kB entries
    images = np.zeros((10, 10, 10, 10), np.uint8)  # 10,000 bytes
    for i, name in enumerate(("a" * 32, "b" * 32, "c" * 32)):
        cache.store(name, images, np.zeros(10, np.int64), [])
        os.utime(cache_dir / f"{name}.npz", (1000 + i, 1000 + i))
    assert cache.load("a" * 32) is None  # the oldest went when the third arrived
    assert cache.load("b" * 32) is not None and cache.load("c" * 32) is not None
    assert cache.store("d" * 32, np.zeros((30, 1000), np.uint8)[None], np.zeros(1, np.int64), []) is None  # too big


def test_caching_can_be_switched_off(tmp_path, monkeypatch):
    monkeypatch.setenv("CONVSCOPE_CACHE_DIR", "off")
    root = make(tmp_path / "data")
    calls = counting_decodes(monkeypatch)
    load_folder(root, SIZE, 3)
    load_folder(root, SIZE, 3)
    assert len(calls) == 48


def test_progress_counts_every_image_of_every_split(tmp_path, cache_dir):
    root = make(tmp_path / "data")
    seen = []
    load_folder(root, SIZE, 3, progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (24, 24) and all(t == 24 for _, t in seen) and seen == sorted(seen)
    seen.clear()
    load_folder(root, SIZE, 3, progress=lambda done, total: seen.append((done, total)))  # from the cache
    assert seen[-1] == (24, 24)


def test_validation_is_the_test_split_when_there_is_no_test_folder(tmp_path, cache_dir, caplog):
    root = make(tmp_path / "data")
    data = load_folder(root, SIZE, 3, val_fraction=0.25)
    assert len(data.test) == 12  # all of validation/, as the tutorials report accuracy on it
    assert len(data.train) + len(data.val) == 12 and len(data.val) == 4  # validation for early stopping: from train/
    assert "validation/ is the test split (no test/); validation images come from train/" in caplog.text
