import hashlib
import logging
import os
import re
import threading

import numpy as np
import pytest
from PIL import Image

from convscope import DataError
from convscope.data.dataset import skipped_results
from convscope.data.folder import image_files, load_folder

SIZE = (8, 6)  # H, W


def save_gray(path, value, size=(10, 12), mode="L"):
    """A uniform image of `value` (so it can be told apart after resizing) in `mode`, `size` = (W, H) as Pillow says."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", size, value).convert(mode).save(path)
    return path


def make_flat(root, classes=("cat", "dog", "owl"), per_class=10):
    """root/<class>/<i>.png, every image a different grey so splits can be compared by pixel value."""
    for c, name in enumerate(classes):
        for i in range(per_class):
            save_gray(root / name / f"{i:02d}.png", value=c * 80 + i * 5, size=(10 + i, 12))
    return root


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_flat_layout_split_is_seeded_and_stratified(tmp_path):
    root = make_flat(tmp_path / "pets")
    a = load_folder(root, SIZE, channels=1, val_fraction=0.2, test_fraction=0.2, seed=0)
    assert a.name == "pets" and a.classes == ("cat", "dog", "owl") and a.source == str(root) and a.skipped == ()
    assert a.image_shape == (8, 6, 1) and a.train.images.dtype == np.uint8
    # 10 per class: test = 20 % = 2, val = 20 % of all = 25 % of the remaining 8 = 2, train = 6.
    assert np.bincount(a.test.labels).tolist() == [2, 2, 2]
    assert np.bincount(a.val.labels).tolist() == [2, 2, 2]
    assert np.bincount(a.train.labels).tolist() == [6, 6, 6]
    # Every image lands in exactly one split, with the label of its folder (grey value c*80 + i*5).
    values = np.concatenate([s.images[:, 0, 0, 0] for s in (a.train, a.val, a.test)])
    labels = np.concatenate([s.labels for s in (a.train, a.val, a.test)])
    assert sorted(values.tolist()) == sorted(c * 80 + i * 5 for c in range(3) for i in range(10))
    assert (values // 80 == labels).all()

    same = load_folder(root, SIZE, channels=1, val_fraction=0.2, test_fraction=0.2, seed=0)
    other = load_folder(root, SIZE, channels=1, val_fraction=0.2, test_fraction=0.2, seed=1)
    for name in ("train", "val", "test"):
        assert np.array_equal(getattr(a, name).images, getattr(same, name).images)
    assert not np.array_equal(a.test.images, other.test.images)


def test_explicit_layout_is_respected(tmp_path):
    root = tmp_path / "flowers"
    for split, count in (("train", 4), ("valid", 2), ("test", 3)):
        for c, name in enumerate(("daisy", "rose")):
            for i in range(count):
                save_gray(root / split / name / f"{i}.png", value=100 * c + 10 * i)
    data = load_folder(root, SIZE, channels=3)
    assert data.classes == ("daisy", "rose")
    assert (len(data.train), len(data.val), len(data.test)) == (8, 4, 6)
    assert data.test.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert data.test.images[:, 0, 0, 0].tolist() == [0, 10, 20, 100, 110, 120]

    # Without a val folder, val is a seeded fraction of train; test stays what is on disk.
    (root / "valid").rename(tmp_path / "elsewhere")
    data = load_folder(root, SIZE, channels=3, val_fraction=0.5)
    assert (len(data.train), len(data.val), len(data.test)) == (4, 4, 6)
    assert load_folder(root, SIZE, channels=3, val_fraction=0).val is None


def test_modes_exif_and_channels(tmp_path):
    root = tmp_path / "mixed"
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    Image.new("RGB", (30, 20), (200, 100, 50)).save(root / "a" / "rgb.png")
    save_gray(root / "a" / "gray.png", 77, size=(5, 9))
    Image.new("RGBA", (16, 16), (10, 20, 30, 0)).save(root / "a" / "rgba.png")
    Image.new("P", (7, 7), 3).save(root / "b" / "palette.gif")
    Image.fromarray(np.full((6, 6), 257 * 100, dtype=np.uint16)).save(root / "b" / "deep.png")  # mode I;16
    # Top half white, bottom half black, stored 40 wide × 20 high; EXIF orientation 6 turns it 90° clockwise,
    # so upright it is 20 wide × 40 high with the white half on the right.
    stored = np.zeros((20, 40), dtype=np.uint8)
    stored[:10] = 255
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(root / "b" / "turned.jpg", exif=exif, quality=95)

    gray = load_folder(root, (8, 8), channels=1, val_fraction=0, test_fraction=0.2)
    rgb = load_folder(root, (8, 8), channels=3, val_fraction=0, test_fraction=0.2)
    assert gray.image_shape == (8, 8, 1) and rgb.image_shape == (8, 8, 3) and gray.skipped == ()
    images = {}
    for split in (rgb.train, rgb.test):
        for image in split.images:
            images[tuple(image[4, 4])] = image
    assert (200, 100, 50) in images  # RGB
    assert (77, 77, 77) in images  # gray → 3 equal channels
    assert (10, 20, 30) in images  # alpha dropped
    assert (100, 100, 100) in images  # 16-bit scaled to 0–255
    gray_values = {int(image[4, 4, 0]) for split in (gray.train, gray.test) for image in split.images}
    assert {124, 77, 100} <= gray_values  # RGB (200, 100, 50) → luma 0.299·200 + 0.587·100 + 0.114·50 ≈ 124
    # The only image that is not uniform is the EXIF-rotated one: white on the right, black on the left, top = bottom.
    (turned,) = [image[:, :, 0] for split in (gray.train, gray.test) for image in split.images if image.std() > 0]
    assert turned[:, -3:].min() > 215 and turned[:, :3].max() < 40


def test_unreadable_files_are_skipped_reported_and_untouched(tmp_path, caplog):
    root = make_flat(tmp_path / "pets", classes=("cat", "dog"), per_class=5)
    whole = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    whole.save(tmp_path / "whole.jpg")
    whole.save(tmp_path / "whole.png")
    bad = {
        root / "cat" / "cut.jpg": (tmp_path / "whole.jpg").read_bytes()[:600],
        root / "dog" / "cut.png": (tmp_path / "whole.png").read_bytes()[:3000],
        root / "dog" / "notes.png": b"this is not a picture\n",
    }
    for path, data in bad.items():
        path.write_bytes(data)
    before = {path: sha256(path) for path in bad}

    with caplog.at_level(logging.WARNING, logger="convscope.data.folder"):
        data = load_folder(root, SIZE, channels=3, val_fraction=0, test_fraction=0.2)

    reasons = {s.path: s.reason for s in data.skipped}
    assert set(reasons) == {str(p) for p in bad}
    assert "truncated" in reasons[str(root / "cat" / "cut.jpg")]
    assert "truncated" in reasons[str(root / "dog" / "cut.png")]
    assert "not an image in an allowed format" in reasons[str(root / "dog" / "notes.png")]
    assert len(data.train) + len(data.test) == 10  # the rest still load
    assert {path: sha256(path) for path in bad} == before
    messages = [r.getMessage() for r in caplog.records]
    assert sum("notes.png" in m for m in messages) == 1 and any("3 unreadable file(s)" in m for m in messages)


def test_decompression_bomb_is_skipped_while_other_threads_decode(tmp_path, monkeypatch):
    root = make_flat(tmp_path / "pets", classes=("cat", "dog"), per_class=30)
    save_gray(root / "dog" / "huge.png", 9, size=(60, 60))  # 3600 pixels: over the limit, under twice it
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 3000)
    data = load_folder(root, SIZE, channels=1)
    assert [(s.path, s.reason.split(",")[0]) for s in data.skipped] == [(str(root / "dog" / "huge.png"), "refused")]


def test_non_image_and_hidden_files_are_ignored_silently(tmp_path, caplog):
    root = make_flat(tmp_path / "pets", classes=("cat", "dog"), per_class=5)
    (root / "README.txt").write_text("pets")
    (root / "cat" / "README.txt").write_text("cats")
    (root / "cat" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (root / ".cache").mkdir()
    save_gray(root / "dog" / ".hidden" / "x.png", 3)
    save_gray(root / "dog" / "more" / "Y.JPG", 3)  # subfolders of a class count, suffixes in any case
    with caplog.at_level(logging.WARNING):
        data = load_folder(root, SIZE, channels=1)
    assert data.classes == ("cat", "dog") and data.skipped == () and caplog.records == []
    assert len(data.train) + len(data.val) + len(data.test) == 11
    assert [p.name for p in image_files(root / "dog")] == [f"{i:02d}.png" for i in range(5)]
    assert [p.name for p in image_files(root / "dog", recursive=True)][-1] == "Y.JPG"


def test_a_class_with_no_readable_training_image_is_an_error(tmp_path):
    root = make_flat(tmp_path / "pets", classes=("cat", "dog"), per_class=3)
    for i in range(2):
        (root / "owl" / f"{i}.png").parent.mkdir(exist_ok=True)
        (root / "owl" / f"{i}.png").write_bytes(b"nope")
    with pytest.raises(DataError, match=r"owl.* no readable training image"):
        load_folder(root, SIZE, channels=1)


def test_a_split_with_no_readable_image_names_folder_and_reasons(tmp_path):
    root = tmp_path / "pets"
    make_flat(root / "train", classes=("cat", "dog"), per_class=3)
    (root / "test" / "cat").mkdir(parents=True)
    (root / "test" / "cat" / "a.png").write_bytes(b"nope")
    with pytest.raises(DataError, match=r"test: .*no readable image, all 1 skipped \(a\.png: not an image"):
        load_folder(root, SIZE, channels=1)


def test_a_class_folder_only_in_test_is_an_error(tmp_path):
    root = tmp_path / "pets"
    make_flat(root / "train", classes=("cat", "dog"), per_class=3)
    make_flat(root / "test", classes=("cat", "dog", "eel"), per_class=1)
    with pytest.raises(DataError, match=r"test: class folder\(s\) 'eel' not in the training classes"):
        load_folder(root, SIZE, channels=1)


def test_a_single_class_is_an_error(tmp_path):
    root = make_flat(tmp_path / "pets", classes=("cat",), per_class=3)
    with pytest.raises(DataError, match=r"at least 2\. Received: 1 \(cat\)"):
        load_folder(root, SIZE, channels=1)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"channels": 4}, "1 \\(gray\\) or 3 \\(RGB\\) channels. Received: 4"),
        ({"image_size": (0, 8)}, "image_size must be"),
        ({"val_fraction": 0.6, "test_fraction": 0.5}, "sum < 1"),
    ],
)
def test_bad_settings_are_errors(tmp_path, kwargs, message):
    root = make_flat(tmp_path / "pets", classes=("cat", "dog"), per_class=2)
    with pytest.raises(DataError, match=message):
        load_folder(root, **{"image_size": SIZE, "channels": 1, **kwargs})


def test_a_named_pipe_in_a_class_folder_is_skipped_not_waited_on(tmp_path):
    root = make_flat(tmp_path / "pets", classes=("cat", "dog"), per_class=5)
    os.mkfifo(root / "dog" / "pipe.png")
    loaded = []
    load = lambda: loaded.append(load_folder(root, SIZE, channels=1, val_fraction=0, test_fraction=0.2))  # noqa: E731
    thread = threading.Thread(target=load, daemon=True)
    thread.start()
    thread.join(timeout=30)
    (data,) = loaded
    assert data.skipped == (
        (
            str(root / "dog" / "pipe.png"),
            "is a named pipe (FIFO), not a regular file; expected an image file (it was not opened)",
        ),
    )
    assert len(data.train) + len(data.test) == 10
    assert skipped_results(data.skipped) == {
        "skipped_count": 1,
        "skipped_files": [{"path": str(root / "dog" / "pipe.png"), "reason": data.skipped[0].reason}],
    }


def test_training_images_that_all_have_one_value_are_an_error(tmp_path):
    for name in ("cat", "dog"):
        for i in range(5):
            save_gray(tmp_path / "blank" / name / f"{i}.png", 0)
    message = f"{tmp_path / 'blank'}: all images have the same value (0 of 255 in every pixel): there is nothing"
    with pytest.raises(DataError, match=re.escape(message)):
        load_folder(tmp_path / "blank", SIZE, channels=3)


def test_a_folder_of_float_tiffs_loads_with_its_contrast(tmp_path):
    for label, name in enumerate(("dark", "light")):
        for i in range(5):
            values = np.full((6, 8), 0.2 + 0.6 * label, dtype=np.float32)  # 0.2 → 51 and 0.8 → 204 of 255
            path = tmp_path / "floats" / name / f"{i}.tif"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(values, mode="F").save(path)
    data = load_folder(tmp_path / "floats", SIZE, channels=1, val_fraction=0, test_fraction=0.2)
    assert sorted(np.unique(data.train.images).tolist()) == [51, 204]
    assert data.skipped == ()
