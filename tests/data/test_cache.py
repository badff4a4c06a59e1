"""The decoded-folder cache cannot lie: a second read of the same unchanged folder gives the same arrays without
decoding; any change to a file (even one that keeps names, sizes and modification times) decodes again; an entry
that is damaged or edited in any way is refused (one warning), deleted and rebuilt; nothing is ever unpickled; a
killed or refused write leaves no entry; and the clean-up touches only the cache's own files."""

import hashlib
import json
import logging
import os
import pickle
import shutil
import time

import numpy as np
import pytest
from fault_harness import tmpfs
from helpers import make_folder
from PIL import Image
from safetensors.torch import load_file

from convscope.config import TrainConfig
from convscope.data import cache, cache_entry, folder
from convscope.data.folder import load_folder
from convscope.errors import ConfigError
from convscope.tasks.train import train

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


def make_bmp(root, per_class=10):
    """Two classes, dark and bright, as BMP files: every file has the same size in bytes, whatever its pixels."""
    rng = np.random.default_rng(1)
    for label, name in enumerate(("cat", "dog")):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 60, (8, 8, 3)) + 190 * label
            Image.fromarray(pixels.astype(np.uint8)).save(root / name / f"{i}.bmp")
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


def entries(cache_dir):
    return sorted(p.name for p in cache_dir.iterdir()) if cache_dir.exists() else []


def cache_warnings(caplog):
    return [r.getMessage() for r in caplog.records if r.name == cache.__name__ and r.levelno == logging.WARNING]


def stamps(root):
    """(size, mtime) of every file under root by relative path: what the key of format 1 was made of."""
    return {p.relative_to(root): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*.bmp")}


def fresh(root, monkeypatch, **kw):
    """The folder decoded with the cache off: the truth to compare with."""
    with monkeypatch.context() as m:
        m.setenv("CONVSCOPE_CACHE_DIR", "off")
        return load_folder(root, **kw)


def of_label(data, label):
    """The images of every split with that label."""
    return np.concatenate([s.images[s.labels == label] for s in (data.train, data.val, data.test)])


def same(a, b):
    return all(
        np.array_equal(getattr(a, s).images, getattr(b, s).images)
        and np.array_equal(getattr(a, s).labels, getattr(b, s).labels)
        for s in ("train", "val", "test")
    )


# -- hits and misses ------------------------------------------------------------------------------------------------
def test_a_second_read_comes_from_the_cache_with_identical_arrays(tmp_path, cache_dir, monkeypatch, caplog):
    root = make(tmp_path / "data")
    calls = counting_decodes(monkeypatch)
    caplog.set_level(logging.INFO, logger=cache.__name__)
    first = load_folder(root, SIZE, 3, seed=1)
    assert len(calls) == 24 and len(list(cache_dir.glob("*.npys"))) == 2  # train and validation (the test split)
    said = [r.getMessage() for r in caplog.records if r.name == cache.__name__]
    assert len(said) == 2 and all(" decoded images cached in " + str(cache_dir) in line for line in said)
    caplog.clear()
    second = load_folder(root, SIZE, 3, seed=1)
    assert len(calls) == 24  # nothing decoded again
    said = [r.getMessage() for r in caplog.records if r.name == cache.__name__]
    assert len(said) == 2 and all(" images read from the decoded cache (" + str(cache_dir) in line for line in said)
    assert same(first, second) and cache_warnings(caplog) == []
    assert not any(p.suffix == ".npys" for p in root.rglob("*"))  # nothing written in the user's folder


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


def test_two_class_folders_swapped_keeping_names_sizes_and_mtimes_are_read_anew(tmp_path, cache_dir, monkeypatch):
    root = make_bmp(tmp_path / "data")
    before = load_folder(root, (8, 8), 3)
    assert of_label(before, 0).max() < 60  # cat/ is dark
    old = stamps(root)
    # What unpacking an archive whose class folders were swapped does: the same names, sizes and mtimes.
    os.rename(root / "cat", root / "tmp")
    os.rename(root / "dog", root / "cat")
    os.rename(root / "tmp", root / "dog")
    for rel, (_, mtime) in old.items():
        os.utime(root / rel, ns=(mtime, mtime))
    assert stamps(root) == old  # the key of format 1 (path, label, size, mtime) would not have changed
    calls = counting_decodes(monkeypatch)
    after = load_folder(root, (8, 8), 3)
    assert len(calls) == 20 and of_label(after, 0).min() >= 190  # cat/ is bright now
    assert same(after, fresh(root, monkeypatch, image_size=(8, 8), channels=3))


def _rewrite_keeping_size_and_mtime(path, pixels):
    old = path.stat()
    while True:  # a ctime within the same clock tick as the file's last change cannot be told apart: wait for a tick
        Image.fromarray(pixels).save(path)  # in place: opened for writing, truncated, the same inode
        os.utime(path, ns=(old.st_atime_ns, old.st_mtime_ns))
        if path.stat().st_ctime_ns != old.st_ctime_ns:
            break
        time.sleep(0.002)
    assert (path.stat().st_size, path.stat().st_mtime_ns, path.stat().st_ino) == (
        old.st_size,
        old.st_mtime_ns,
        old.st_ino,
    )


def test_a_file_rewritten_in_place_with_its_size_and_mtime_kept_is_read_anew(tmp_path, cache_dir, monkeypatch):
    root = make_bmp(tmp_path / "data")
    load_folder(root, (8, 8), 3)
    target = root / "cat" / "0.bmp"
    _rewrite_keeping_size_and_mtime(target, np.full((8, 8, 3), 77, np.uint8))
    calls = counting_decodes(monkeypatch)
    after = load_folder(root, (8, 8), 3)
    assert len(calls) == 20 and (of_label(after, 0) == 77).all(axis=(1, 2, 3)).sum() == 1


def test_another_size_is_another_entry(tmp_path, cache_dir):
    root = make(tmp_path / "data")
    assert load_folder(root, SIZE, 3).train.images.shape[1:] == (12, 12, 3)
    assert load_folder(root, (8, 8), 1).train.images.shape[1:] == (8, 8, 1)
    assert len(list(cache_dir.glob("*.npys"))) == 4


def test_skipped_files_are_reported_again_from_the_cache(tmp_path, cache_dir):
    root = make(tmp_path / "data")
    (root / "train" / "a" / "broken.png").write_bytes(b"not a png")
    first = load_folder(root, SIZE, 3)
    second = load_folder(root, SIZE, 3)
    assert [s.path for s in first.skipped] == [s.path for s in second.skipped] == [str(root / "train/a/broken.png")]


# -- damaged and edited entries -------------------------------------------------------------------------------------
def _flat(tmp_path, cache_dir):
    """A flat folder read once: (root, its one entry, the Key, the data)."""
    root = make_bmp(tmp_path / "data")
    (root / "cat" / "broken.bmp").write_bytes(b"BM nothing")  # a skipped file, so the entry lists one
    data = load_folder(root, (8, 8), 3)
    files = [(p, label) for label, name in enumerate(("cat", "dog")) for p in folder.image_files(root / name, True)]
    k = cache.key(files, (8, 8), 3)
    [entry] = cache_dir.glob("*.npys")
    assert entry.name == k.filename
    return root, entry, k, data


def _read(entry, k):
    with open(entry, "rb") as f:
        return cache_entry.read(f, cache.FORMAT, k.digest, k.shape, list(k.files))


def forge(entry, k, images, labels, skipped, **meta):
    """Write `entry` as cache_entry.write would, but with any arrays (any dtype, pickles allowed) and meta: what an
    edit, a bug or another program could leave. The checksum is recomputed, so only the other checks can refuse."""
    text = np.frombuffer(json.dumps([list(s) for s in skipped]).encode(), np.uint8)
    digest = hashlib.sha256()
    for part in (text, labels, images):
        digest.update(part.tobytes() if part.dtype != object else b"")
    fields = {"format": cache.FORMAT, "key": k.digest, "files": len(k.files), "shape": list(images.shape)}
    fields |= {"skipped_bytes": len(text), "sha256": digest.hexdigest(), **meta}
    with open(entry, "wb") as f:
        raw = json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()
        for part in (np.frombuffer(raw, np.uint8), text, labels, images):
            np.lib.format.write_array(f, part, version=(1, 0), allow_pickle=True)


def _edit_bytes(entry, change):
    data = bytearray(entry.read_bytes())
    change(data)
    entry.write_bytes(bytes(data))


def _label_byte(data):  # the last label's lowest byte, just before the images' header
    at = bytes(data).rfind(b"\x93NUMPY")
    data[at - 8] ^= 1


DAMAGE = {
    "empty": lambda e, k, x, y, s: e.write_bytes(b""),
    "truncated": lambda e, k, x, y, s: e.write_bytes(e.read_bytes()[:-50]),
    "extended": lambda e, k, x, y, s: e.write_bytes(e.read_bytes() + b"\0"),
    "label bytes edited": lambda e, k, x, y, s: _edit_bytes(e, _label_byte),
    "labels edited, checksum too": lambda e, k, x, y, s: forge(e, k, x, y[::-1].copy(), s),
    "a negative label": lambda e, k, x, y, s: forge(e, k, x, np.r_[-1, y[1:]], s),
    "a label out of range": lambda e, k, x, y, s: forge(e, k, x, np.r_[y[:-1], 7], s),
    "a skipped file not listed": lambda e, k, x, y, s: forge(e, k, x, y, [("/elsewhere.bmp", "x")]),
    "shape edited": lambda e, k, x, y, s: forge(e, k, x.reshape(len(x), 8, 4, 6), y, s),
    "shape edited in meta only": lambda e, k, x, y, s: forge(e, k, x, y, s, shape=[len(x), 8, 8, 1]),
    "count edited": lambda e, k, x, y, s: forge(e, k, x[:-1], y[:-1], s),
    "dtype edited": lambda e, k, x, y, s: forge(e, k, x.astype(np.uint16), y, s),
    "labels' dtype edited": lambda e, k, x, y, s: forge(e, k, x, y.astype(np.int32), s),
    "fortran order": lambda e, k, x, y, s: forge(e, k, np.asfortranarray(x), y, s),
    "an object array": lambda e, k, x, y, s: forge(e, k, np.array([object()] * len(x), dtype=object), y, s),
    "wrong key": lambda e, k, x, y, s: forge(e, k, x, y, s, key="0" * 64),
    "stale version": lambda e, k, x, y, s: forge(e, k, x, y, s, format="convscope.decoded-folder/1"),
    "meta not canonical": lambda e, k, x, y, s: _edit_bytes(e, lambda d: d.__setitem__(slice(d.find(b"{")), b"")),
    "a format-1 zip": lambda e, k, x, y, s: np.savez(e.open("wb"), images=x, labels=y, skipped=b"[]"),
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_or_edited_entry_is_refused_deleted_and_rebuilt(tmp_path, cache_dir, monkeypatch, caplog, damage):
    root, entry, k, first = _flat(tmp_path, cache_dir)
    images, labels, skipped = _read(entry, k)
    DAMAGE[damage](entry, k, images, labels, skipped)
    monkeypatch.setattr(pickle, "loads", lambda *a, **kw: pytest.fail("unpickled"))
    monkeypatch.setattr(pickle, "load", lambda *a, **kw: pytest.fail("unpickled"))
    deleted = []
    real_unlink = os.unlink
    monkeypatch.setattr(os, "unlink", lambda p, *a, **kw: (deleted.append(str(p)), real_unlink(p, *a, **kw))[1])
    calls = counting_decodes(monkeypatch)
    again = load_folder(root, (8, 8), 3)
    [warning] = cache_warnings(caplog)
    assert str(entry) in warning and "refused" in warning and "\n" not in warning
    assert str(entry) in deleted and len(calls) == 21  # deleted, then every file decoded again
    assert same(first, again) and [s.path for s in again.skipped] == [str(root / "cat" / "broken.bmp")]
    assert np.array_equal(_read(entry, k)[1], labels)  # rebuilt, and right
    load_folder(root, (8, 8), 3)
    assert len(calls) == 21 and len(cache_warnings(caplog)) == 1  # the rebuilt entry is used, without a word


def test_any_few_flipped_bits_are_refused(tmp_path, cache_dir, caplog):
    """Every byte of an entry is checked (headers byte for byte, canonical meta, size, SHA-256 of the arrays)."""
    _, entry, k, _ = _flat(tmp_path, cache_dir)
    good = entry.read_bytes()
    rng = np.random.default_rng(2024)
    for trial in range(300):
        flips = rng.choice(len(good) * 8, size=int(rng.integers(1, 4)), replace=False)
        data = np.frombuffer(good, np.uint8).copy()
        np.bitwise_xor.at(data, flips // 8, (1 << (flips % 8)).astype(np.uint8))
        entry.write_bytes(data.tobytes())
        assert cache.load(k) is None, f"trial {trial}: bits {sorted(flips.tolist())} flipped, yet read"
        assert not entry.exists() and len(cache_warnings(caplog)) == trial + 1
    entry.write_bytes(good)
    assert cache.load(k) is not None


def test_an_entry_that_is_a_link_or_a_folder_is_not_followed(tmp_path, cache_dir, caplog):
    _, entry, k, _ = _flat(tmp_path, cache_dir)
    elsewhere = tmp_path / "elsewhere.npys"
    shutil.move(entry, elsewhere)
    entry.symlink_to(elsewhere)
    assert cache.load(k) is None and not entry.is_symlink() and elsewhere.exists()  # the link went, not its target
    entry.mkdir()
    assert cache.load(k) is None and entry.is_dir() and len(cache_warnings(caplog)) == 2


# -- writes ---------------------------------------------------------------------------------------------------------
def test_a_write_killed_midway_leaves_no_entry(tmp_path, cache_dir, monkeypatch):
    root = make_bmp(tmp_path / "data")
    real = cache_entry._write_array

    def dies_at_the_images(f, array):
        if array.ndim == 4:
            f.write(b"\x93NUMPY partial")
            raise KeyboardInterrupt
        real(f, array)

    monkeypatch.setattr(cache_entry, "_write_array", dies_at_the_images)
    with pytest.raises(KeyboardInterrupt):
        load_folder(root, (8, 8), 3)
    assert entries(cache_dir) == []  # neither an entry nor a temporary file
    monkeypatch.setattr(cache_entry, "_write_array", real)
    load_folder(root, (8, 8), 3)
    assert len(list(cache_dir.glob("*.npys"))) == 1


def test_a_disk_that_refuses_the_write_is_one_warning_and_the_data_is_right(tmp_path, cache_dir, monkeypatch, caplog):
    root = make_bmp(tmp_path / "data")

    def full(f, array):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cache_entry, "_write_array", full)
    data = load_folder(root, (8, 8), 3)
    [warning] = cache_warnings(caplog)
    assert "No space left on device" in warning and str(cache_dir) in warning
    assert entries(cache_dir) == [] and same(data, fresh(root, monkeypatch, image_size=(8, 8), channels=3))


@pytest.mark.parametrize("value", ["inf", "nan", "-1", "abc", "1e7", "4GB"])
def test_a_wrong_bound_is_one_config_error_naming_the_variable(tmp_path, cache_dir, monkeypatch, value):
    root = make_bmp(tmp_path / "data")
    monkeypatch.setenv("CONVSCOPE_CACHE_MAX_GB", value)
    with pytest.raises(ConfigError) as err:
        load_folder(root, (8, 8), 3)
    assert f"CONVSCOPE_CACHE_MAX_GB={value!r}" in str(err.value) and "\n" not in str(err.value)
    assert entries(cache_dir) == []  # refused before anything was decoded or written


@pytest.mark.parametrize(("value", "expected"), [("relative/cache", "expected an absolute folder path, or off"),
                                                ("FILE", "is a file, expected a folder (or off)")])  # fmt: skip
def test_a_cache_folder_that_is_relative_or_a_file_is_one_config_error(tmp_path, monkeypatch, value, expected):
    root = make_bmp(tmp_path / "data")
    (tmp_path / "FILE").write_text("a user's file")
    value = str(tmp_path / "FILE") if value == "FILE" else value
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CONVSCOPE_CACHE_DIR", value)
    with pytest.raises(ConfigError) as err:
        load_folder(root, (8, 8), 3)
    assert str(err.value) == f"CONVSCOPE_CACHE_DIR={value!r}: {expected}"
    assert not (tmp_path / "relative").exists() and (tmp_path / "FILE").read_text() == "a user's file"


def test_an_empty_bound_is_the_default_like_an_empty_folder_setting(monkeypatch):
    monkeypatch.setenv("CONVSCOPE_CACHE_MAX_GB", "")
    assert cache.max_bytes() == 4 * 2**30


def test_the_cache_stays_within_its_bound_dropping_the_least_recently_used(tmp_path, cache_dir, monkeypatch):
    monkeypatch.setenv("CONVSCOPE_CACHE_MAX_GB", str(25_000 / 2**30))  # 25 kB: room for two ~10 kB entries
    images = np.zeros((10, 10, 10, 10), np.uint8)  # 10,000 bytes
    keys = [cache.Key(c * 64, (10, 10, 10), tuple((f"{i}.png", 0) for i in range(10))) for c in "abc"]
    for i, k in enumerate(keys):
        cache.store(k, images, np.zeros(10, np.int64), [])
        os.utime(cache_dir / k.filename, (1000 + i, 1000 + i))
    assert cache.load(keys[0]) is None  # the oldest went when the third arrived
    assert cache.load(keys[1]) is not None and cache.load(keys[2]) is not None
    big = cache.Key("d" * 64, (30, 1000, 1), (("x.png", 0),))
    assert cache.store(big, np.zeros((1, 30, 1000, 1), np.uint8), np.zeros(1, np.int64), []) is None  # too big


def test_the_clean_up_removes_only_the_caches_own_files(tmp_path):
    own = ["a" * 32 + ".npys", "b" * 32 + ".npz", "." + "c" * 32 + ".npys.abcd1234.tmp"]
    theirs = ["notes.npz", "photo.npys", "d" * 32 + ".txt", "." + "e" * 32 + ".npys.tmp", ".x.abcd1234.tmp"]
    fresh_temp = "." + "f" * 32 + ".npys.zzzz9999.tmp"  # a write under way in another process
    for name in [*own, *theirs, fresh_temp]:
        (tmp_path / name).write_bytes(b"x" * 100)
        if name != fresh_temp:
            os.utime(tmp_path / name, (1000, 1000))
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / own[0]).write_bytes(b"x")
    (tmp_path / ("9" * 32 + ".npys")).symlink_to(tmp_path / "notes.npz")
    removed = cache.trim(tmp_path, 0)
    assert sorted(p.name for p in removed) == sorted(own)
    left = {p.name for p in tmp_path.iterdir()}
    assert left == {*theirs, fresh_temp, "sub", "9" * 32 + ".npys"} and (tmp_path / "sub" / own[0]).exists()


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


# -- training with and without the cache ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return make_folder(tmp_path_factory.mktemp("images"), per_class=48)


def _weights(images, out, cache_at, monkeypatch):
    monkeypatch.setenv("CONVSCOPE_CACHE_DIR", str(cache_at))
    config = TrainConfig(model="lenet5", data=str(images), epochs=1, batch_size=16, out=str(out), threads=1)
    run = train(config, report=False)
    return load_file(run.path / "weights" / "last.safetensors")


def _equal(a, b):
    return a.keys() == b.keys() and all((a[name] == b[name]).all() for name in a)


@pytest.fixture(scope="module")
def weights_without_cache(images, tmp_path_factory):
    with pytest.MonkeyPatch.context() as m:
        return _weights(images, tmp_path_factory.mktemp("runs") / "off", "off", m)


def test_training_gives_the_same_weights_with_the_cache_cold_warm_and_off(images, weights_without_cache, tmp_path):
    with pytest.MonkeyPatch.context() as m:
        cold = _weights(images, tmp_path / "cold", tmp_path / "cache", m)
        assert len(list((tmp_path / "cache").glob("*.npys"))) == 1
        calls = counting_decodes(m)
        warm = _weights(images, tmp_path / "warm", tmp_path / "cache", m)
    assert calls == [] and _equal(cold, weights_without_cache) and _equal(warm, weights_without_cache)


def test_training_on_a_full_disk_is_one_warning_and_the_same_weights(images, weights_without_cache, tmp_path, caplog):
    with tmpfs(tmp_path / "full", "64k") as full, pytest.MonkeyPatch.context() as m:
        weights = _weights(images, tmp_path / "run", full, m)  # 96 images of 28×28: 75 kB, past its 64 kB
        [warning] = cache_warnings(caplog)
        assert "No space left on device" in warning and list(full.iterdir()) == []
        assert _equal(weights, weights_without_cache)
