"""The dataset doctor on folders with one planted problem each: every problem found with the right count, and a clean
folder reported clean (convscope.diagnosis.doctor.diagnose)."""

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import PHOTO_CLASSES as CLASSES
from helpers import photo_folder as clean_folder
from helpers import smooth_photo as smooth
from PIL import Image

from convscope.diagnosis.doctor import diagnose
from convscope.diagnosis.model import Diagnosis
from convscope.errors import DataError


def test_a_clean_folder_reports_nothing(tmp_path):
    diagnosis = diagnose(clean_folder(tmp_path / "d"))
    assert diagnosis.findings == ()
    assert diagnosis.exit_code == 0
    assert [(s.name, s.files, s.readable) for s in diagnosis.splits] == [("train", 36, 36), ("test", 12, 12)]
    assert diagnosis.splits[0].per_class == dict.fromkeys(CLASSES, 12)
    assert diagnosis.properties.modes == {"RGB": 48}
    assert diagnosis.lines()[-1].startswith("nothing found")


def test_a_copy_of_a_training_image_in_test_is_a_leak(tmp_path):
    root = clean_folder(tmp_path / "d")
    shutil.copy(root / "train/bear/003.jpg", root / "test/bear/copy.jpg")
    diagnosis = diagnose(root)
    leak = diagnosis.finding("leak")
    assert leak.count == 1 and leak.serious and diagnosis.exit_code == 1
    (example,) = leak.examples
    assert (example.name, example.split, example.other, example.other_split) == (
        "test/bear/copy.jpg",
        "test",
        "train/bear/003.jpg",
        "train",
    )
    assert diagnosis.count("near-leak") == 0  # the same pair is not counted twice


def test_a_resized_reencoded_copy_in_test_is_a_near_leak(tmp_path):
    root = clean_folder(tmp_path / "d")
    with Image.open(root / "train/apple/005.jpg") as img:
        img.resize((40, 40), Image.Resampling.BILINEAR).save(root / "test/apple/near.jpg", quality=70)
    diagnosis = diagnose(root)
    assert diagnosis.count("leak") == 0
    near = diagnosis.finding("near-leak")
    assert near.count == 1
    assert (near.examples[0].name, near.examples[0].other) == ("test/apple/near.jpg", "train/apple/005.jpg")


def test_duplicates_within_a_split_are_warnings_unless_training_splits_the_folder(tmp_path):
    root = clean_folder(tmp_path / "d")
    shutil.copy(root / "train/cloud/001.jpg", root / "train/cloud/again.jpg")
    diagnosis = diagnose(root)
    assert diagnosis.count("duplicate") == 1 and diagnosis.exit_code == 0
    flat = tmp_path / "flat"
    shutil.copytree(root / "train", flat)  # one folder per class: training draws val and test from it
    diagnosis = diagnose(flat)
    duplicate = diagnosis.finding("duplicate")
    assert duplicate.count == 1 and duplicate.serious and "seeded split" in duplicate.title
    assert diagnosis.splits[0].name == "all"


def _truncated(root: Path) -> None:
    data = (root / "train/apple/000.jpg").read_bytes()
    (root / "train/apple/cut.jpg").write_bytes(data[: len(data) // 2])


def _zero(root: Path) -> None:
    (root / "train/apple/empty.jpg").write_bytes(b"")


def _text(root: Path) -> None:
    (root / "train/apple/notes.png").write_text("not an image\n")


def _loop(root: Path) -> None:
    os.symlink("loop.jpg", root / "train/apple/loop.jpg")


def _bomb(root: Path) -> None:
    # 14,000² = 196 million pixels, over Pillow's 178,956,970 limit: refused from the header, never decoded
    Image.new("1", (14_000, 14_000)).save(root / "train/apple/bomb.png")


@pytest.mark.parametrize(
    ("plant", "name", "reason"),
    [
        (_truncated, "cut.jpg", "damaged or truncated"),
        (_zero, "empty.jpg", "zero bytes"),
        (_text, "notes.png", "not an image"),
        (_loop, "loop.jpg", "symbolic link loop"),
        (_bomb, "bomb.png", "decompression bomb"),
    ],
)
def test_each_unreadable_file_is_named_with_its_reason(tmp_path, plant, name, reason):
    root = clean_folder(tmp_path / "d")
    before = sorted((p.name, p.stat().st_size) for p in (root / "train/apple").iterdir() if not p.is_symlink())
    plant(root)
    planted = sorted((p.name, p.lstat().st_size) for p in (root / "train/apple").iterdir())
    diagnosis = diagnose(root)
    unreadable = diagnosis.finding("unreadable")
    assert unreadable.count == 1 and unreadable.serious
    (example,) = unreadable.examples
    assert example.name == f"train/apple/{name}" and reason in example.why, example.why
    assert diagnosis.splits[0].files == 37 and diagnosis.splits[0].readable == 36
    assert sorted((p.name, p.lstat().st_size) for p in (root / "train/apple").iterdir()) == planted  # untouched
    assert len(before) == 12


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_a_file_without_read_permission_is_named(tmp_path):
    root = clean_folder(tmp_path / "d")
    locked = root / "train/apple/000.jpg"
    locked.chmod(0)
    try:
        example = diagnose(root).finding("unreadable").examples[0]
    finally:
        locked.chmod(0o644)
    assert example.name == "train/apple/000.jpg" and "permission" in example.why


def test_a_gray_image_among_rgb_a_tiny_one_and_an_exif_rotated_one(tmp_path):
    root = clean_folder(tmp_path / "d")
    rng = np.random.default_rng(7)
    smooth(rng).convert("L").save(root / "train/bear/gray.jpg")
    smooth(rng, size=4).save(root / "train/bear/tiny.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to view"
    smooth(rng).resize((64, 48)).save(root / "train/bear/turned.jpg", exif=exif)
    diagnosis = diagnose(root)
    assert [e.name for e in diagnosis.finding("mode").examples] == ["train/bear/gray.jpg"]
    assert "gray (L) among RGB" in diagnosis.finding("mode").examples[0].why
    assert [e.name for e in diagnosis.finding("tiny").examples] == ["train/bear/tiny.png"]
    (turned,) = diagnosis.finding("exif").examples
    assert turned.name == "train/bear/turned.jpg" and "orientation 6" in turned.why
    assert diagnosis.properties.exif_rotated == 1
    assert diagnosis.properties.modes == {"RGB": 50, "L": 1}
    assert diagnosis.exit_code == 0  # odd images are warnings


def test_a_near_blank_image(tmp_path):
    root = clean_folder(tmp_path / "d")
    Image.new("RGB", (48, 48), (90, 90, 90)).save(root / "train/cloud/flat.png")
    (example,) = diagnose(root).finding("near-blank").examples
    assert example.name == "train/cloud/flat.png" and "flat colour" in example.why


def test_a_class_of_three_images_and_a_class_missing_from_test(tmp_path):
    root = clean_folder(tmp_path / "d", train=40)
    for path in sorted((root / "train/cloud").iterdir())[3:]:
        path.unlink()
    shutil.rmtree(root / "test/bear")
    diagnosis = diagnose(root)
    imbalance = diagnosis.finding("imbalance")
    assert imbalance.count == 1 and not imbalance.serious
    assert imbalance.examples[0].label == "cloud" and imbalance.examples[0].why.startswith("3 training images")
    missing = diagnosis.finding("missing-class")
    assert missing.count == 1 and missing.serious
    assert (missing.examples[0].label, missing.examples[0].split) == ("bear", "test")
    assert diagnosis.splits[1].per_class == {"apple": 4, "bear": 0, "cloud": 4}


def test_the_diagnosis_round_trips_through_json(tmp_path):
    root = clean_folder(tmp_path / "d")
    shutil.copy(root / "train/bear/003.jpg", root / "test/bear/copy.jpg")
    _zero(root)
    diagnosis = diagnose(root)
    back = Diagnosis.from_dict(json.loads(json.dumps(diagnosis.as_dict())))
    assert back.findings == diagnosis.findings and back.splits == diagnosis.splits
    assert back.properties == diagnosis.properties and back.lines() == diagnosis.lines()
    assert diagnosis.as_dict()["exit_code"] == 1


def test_an_example_shows_its_pixels(tmp_path):
    root = clean_folder(tmp_path / "d")
    shutil.copy(root / "train/bear/003.jpg", root / "test/bear/copy.jpg")
    diagnosis = diagnose(root)
    example = diagnosis.finding("leak").examples[0]
    pixels = diagnosis.image(example.name, example.split)
    assert pixels.shape == (48, 48, 3) and pixels.dtype == np.uint8
    assert np.array_equal(pixels, diagnosis.image(example.other, example.other_split))


def test_many_images_are_scanned_by_worker_processes_with_the_same_result(tmp_path):
    from convscope.diagnosis import scan

    root = clean_folder(tmp_path / "d", train=10)
    paths = sorted(root.rglob("*.jpg"))
    alone = scan.scan_files(paths, workers=1)
    spread = scan.scan_files(paths, workers=2, chunk=8)
    assert alone.sha256 == spread.sha256 and np.array_equal(alone.phash, spread.phash)
    assert np.array_equal(alone.thumbs, spread.thumbs) and alone.reasons == spread.reasons


def test_data_that_cannot_be_read_is_one_error(tmp_path):
    with pytest.raises(DataError, match="no such file or folder"):
        diagnose(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no subfolder"):
        diagnose(tmp_path / "empty")


def test_an_empty_class_is_one_line_and_other_files_and_folder_links_are_noted(tmp_path):
    root = clean_folder(tmp_path / "d")
    for split in ("train", "test"):
        (root / split / "dragon").mkdir()
    (root / "train/apple/IMG_0001.HEIC").write_bytes(b"ftypheic")
    (root / "train/apple/labels.txt").write_text("apple\n")
    (root / "train/apple/.DS_Store").write_bytes(b"\0")  # hidden: not worth a word
    outside = tmp_path / "more"
    outside.mkdir()
    os.symlink(outside, root / "train/bear/more")
    diagnosis = diagnose(root)
    (missing,) = diagnosis.finding("missing-class").examples
    assert missing.why == (
        "class dragon has no readable images in any split (its folders are empty or hold only unreadable files)"
    )
    assert "dragon in every split" in diagnosis.finding("missing-class").title
    assert (
        "2 file(s) in class folders are not read, their suffix not an image format convscope reads (.heic 1, .txt 1): "
        "convert them (e.g. HEIC to JPEG) or move them out" in diagnosis.notes
    )
    assert "1 link(s) to folders not followed, their images not read (train/bear/more)" in diagnosis.notes


def test_a_thin_panorama_is_an_aspect_outlier_not_tiny(tmp_path):
    root = clean_folder(tmp_path / "d")
    smooth(np.random.default_rng(3)).resize((1200, 60)).save(root / "train/cloud/panorama.jpg")
    diagnosis = diagnose(root)
    assert diagnosis.count("tiny") == 0
    assert [e.name for e in diagnosis.finding("aspect").examples] == ["train/cloud/panorama.jpg"]


def test_a_mirrored_copy_in_test_is_a_near_leak(tmp_path):
    root = clean_folder(tmp_path / "d")
    with Image.open(root / "train/cloud/002.jpg") as img:
        img.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(root / "test/cloud/mirrored.jpg", quality=85)
    near = diagnose(root).finding("near-leak")
    assert near.count == 1
    (example,) = near.examples
    assert (example.name, example.other) == ("test/cloud/mirrored.jpg", "train/cloud/002.jpg")
    assert example.why.startswith("mirrored, pHash ")


def test_a_built_in_data_set_is_examined_from_its_arrays(tmp_path):
    import gzip
    import struct

    def write_idx(path, array):
        header = struct.pack(f">BBBB{array.ndim}I", 0, 0, 0x08, array.ndim, *array.shape)
        path.write_bytes(gzip.compress(header + array.tobytes()))

    rng = np.random.default_rng(0)
    train = rng.integers(0, 256, (20, 28, 28), dtype=np.uint8)
    test = rng.integers(0, 256, (5, 28, 28), dtype=np.uint8)
    test[2] = train[7]  # the published test sets hold a few such copies
    for prefix, images in (("train", train), ("t10k", test)):
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", np.arange(len(images), dtype=np.uint8) % 10)
    diagnosis = diagnose("fashion-mnist", data_dir=tmp_path)
    assert diagnosis.layout == "built-in fashion-mnist" and len(diagnosis.classes) == 10
    assert [(s.name, s.files, s.readable) for s in diagnosis.splits] == [("train", 20, 20), ("test", 5, 5)]
    (leak,) = diagnosis.finding("leak").examples
    assert (leak.name, leak.other, leak.index, leak.other_index) == ("test[2]", "train[7]", 2, 7)
    pixels = diagnosis.image(leak.name, leak.split, leak.index)
    assert pixels.shape == (28, 28, 3) and np.array_equal(pixels[:, :, 0], train[7])
    assert diagnosis.properties.modes == {"L": 25} and diagnosis.properties.formats == {"array": 25}


def test_near_copies_are_judged_closer_where_the_labels_say_the_images_merely_look_alike():
    from convscope.diagnosis.listing import Item, Listing
    from convscope.diagnosis.twins import NEAR_BITS, near_bits

    items = [Item("train", f"train/{i}.png", None, i % 2 if i >= 80 else 0, i) for i in range(160)]
    listing = Listing("x", "image folders", "classification", ("a", "b"), items, {"train": "train/"})
    same = [(2 * k, 2 * k + 1, 6) for k in range(40)]  # both images of each pair labelled "a"
    assert near_bits(listing, same) == (NEAR_BITS, [])
    alike = same[:30] + [(80 + 2 * k, 81 + 2 * k, 6) for k in range(10)]  # 10 of 40 pairs across the labels
    bits, (note,) = near_bits(listing, alike)
    assert bits == 5 and note.startswith("near copies: pHash within 5 bits, not 10: at 10, 25% of the 40 candidate")
    identical = [(i, j, 0) for i, j, _ in alike]
    bits, (note,) = near_bits(listing, identical)
    assert bits == -1 and note.startswith("near copies not judged: even identical pHashes pair images of different")


def test_a_split_without_a_readable_image_and_a_data_set_without_any(tmp_path):
    root = clean_folder(tmp_path / "d")
    for path in (root / "test").rglob("*.jpg"):
        path.write_bytes(b"")  # every test file emptied
    missing = diagnose(root).finding("missing-class")
    assert [(e.split, e.label, e.why) for e in missing.examples] == [("test", None, "no readable image in test")]
    assert "every class in test (no readable image)" in missing.title
    for path in (root / "train").rglob("*.jpg"):
        path.write_text("not an image")
    with pytest.raises(DataError, match=r"none of its 48 image file\(s\) can be read \(train/apple/000.jpg: not an"):
        diagnose(root)


def test_exact_copies_under_two_labels_are_a_label_problem(tmp_path):
    root = clean_folder(tmp_path / "d")
    shutil.copy(root / "train/apple/004.jpg", root / "train/bear/apple-again.jpg")
    diagnosis = diagnose(root)
    (example,) = diagnosis.finding("conflicting-labels").examples
    assert (example.name, example.label, example.other, example.other_label) == (
        "train/bear/apple-again.jpg",
        "bear",
        "train/apple/004.jpg",
        "apple",
    )
    assert diagnosis.finding("conflicting-labels").serious and diagnosis.exit_code == 1
    with pytest.raises(ValueError, match="no finding is of kind 'leaks'; the kinds: unreadable, leak, near-leak"):
        diagnosis.finding("leaks")


def test_a_run_that_is_not_one_fails_before_the_scan(tmp_path, monkeypatch):
    from convscope.diagnosis import doctor
    from convscope.errors import ConvscopeError

    monkeypatch.setattr(doctor, "_scan", lambda *args: pytest.fail("scanned before the run was checked"))
    with pytest.raises(ConvscopeError, match="nowhere"):
        diagnose(clean_folder(tmp_path / "d"), run=tmp_path / "nowhere")


def test_arrays_are_scanned_by_worker_processes_with_the_same_result():
    from convscope.diagnosis import scan

    images = np.random.default_rng(0).integers(0, 256, (23, 28, 28, 1), dtype=np.uint8)
    alone = scan.scan_arrays(images, workers=1)
    spread = scan.scan_arrays(images, workers=2, chunk=5)
    assert alone.sha256 == spread.sha256 and np.array_equal(alone.phash, spread.phash) and len(spread) == 23
    assert np.array_equal(alone.thumbs, spread.thumbs) and spread.modes == ["L"] * 23
