import re
from pathlib import Path

import numpy as np
import pytest

from convscope import DataError
from convscope.data.cifar import load_cifar

CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def pixels(n: int, seed: int) -> np.ndarray:
    """n×32×32×3 uint8 images (H×W×C, what the loader must return)."""
    return np.random.default_rng(seed).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)


def records(labels: list[list[int]], images: np.ndarray) -> bytes:
    """The binary format written out plainly: label bytes, then the R, G and B planes (32×32 each, row-major)."""
    out = bytearray()
    for label_bytes, image in zip(labels, images, strict=True):
        out += bytes(label_bytes)
        for channel in range(3):
            out += image[:, :, channel].tobytes()
    return bytes(out)


def make_cifar10(folder: Path, per_batch: int = 4) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate([*(f"data_batch_{b}.bin" for b in range(1, 6)), "test_batch.bin"]):
        labels = [[(i + j) % 10] for j in range(per_batch)]
        (folder / name).write_bytes(records(labels, pixels(per_batch, seed=i)))
    (folder / "batches.meta.txt").write_text("\n".join(CIFAR10_NAMES) + "\n\n")  # the real file ends in blank lines
    return folder


def make_cifar100(folder: Path, n: int = 6) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(["train.bin", "test.bin"]):
        labels = [[j % 20, (7 * j + i) % 100] for j in range(n)]  # (coarse, fine)
        (folder / name).write_bytes(records(labels, pixels(n, seed=10 + i)))
    (folder / "fine_label_names.txt").write_text("\n".join(f"class{k}" for k in range(100)) + "\n")
    return folder


def test_reads_cifar10(tmp_path):
    folder = make_cifar10(tmp_path / "c")
    data = load_cifar(folder)
    assert data.name == "cifar10" and data.classes == tuple(CIFAR10_NAMES) and data.source == str(folder)
    assert data.train.images.shape == (20, 32, 32, 3) and data.test.images.shape == (4, 32, 32, 3)
    assert data.train.images.flags.c_contiguous and data.val is None
    assert data.train.labels.dtype == np.int64
    assert data.train.labels.tolist() == [(i + j) % 10 for i in range(5) for j in range(4)]
    np.testing.assert_array_equal(data.train.images, np.concatenate([pixels(4, seed=i) for i in range(5)]))
    np.testing.assert_array_equal(data.test.images, pixels(4, seed=5))


def test_channel_planes_become_the_last_axis(tmp_path):
    folder = make_cifar10(tmp_path / "c", per_batch=1)
    record = bytearray(1 + 3072)
    record[1 + 0 * 1024 + 1 * 32 + 2] = 200  # R plane, row 1, column 2
    record[1 + 2 * 1024 + 31 * 32 + 0] = 77  # B plane, row 31, column 0
    (folder / "test_batch.bin").write_bytes(bytes(record))
    image = load_cifar(folder).test.images[0]
    assert image[1, 2, 0] == 200 and image[31, 0, 2] == 77 and int(image.sum()) == 277


def test_the_usual_subfolder_is_found(tmp_path):
    make_cifar10(tmp_path / "cifar-10-batches-bin")
    data = load_cifar(tmp_path)
    assert data.source == str(tmp_path / "cifar-10-batches-bin") and len(data.train) == 20


@pytest.mark.parametrize("sub", ["", "cifar-100-binary"])
def test_reads_cifar100_with_the_fine_label(tmp_path, sub):
    make_cifar100(tmp_path / sub if sub else tmp_path)
    data = load_cifar(tmp_path, which=100)
    assert data.name == "cifar100" and len(data.classes) == 100 and data.classes[42] == "class42"
    assert data.train.images.shape == (6, 32, 32, 3) and len(data.test) == 6
    assert data.train.labels.tolist() == [(7 * j) % 100 for j in range(6)]
    assert data.test.labels.tolist() == [(7 * j + 1) % 100 for j in range(6)]
    np.testing.assert_array_equal(data.test.images, pixels(6, seed=11))


def test_a_length_not_a_multiple_of_the_record_is_an_error(tmp_path):
    folder = make_cifar10(tmp_path / "c")
    path = folder / "data_batch_3.bin"
    path.write_bytes(path.read_bytes() + b"\0")
    message = f"{path}: expected a multiple of 3073 bytes (1 label byte + 3×32×32 pixels per record), found 12293 bytes"
    with pytest.raises(DataError, match=re.escape(message)):
        load_cifar(folder)


def test_cifar100_records_have_two_label_bytes(tmp_path):
    folder = make_cifar100(tmp_path / "c")
    path = folder / "test.bin"
    path.write_bytes(path.read_bytes()[:-1])
    message = f"{path}: expected a multiple of 3074 bytes (2 label bytes + 3×32×32 pixels per record), found 18443"
    with pytest.raises(DataError, match=re.escape(message)):
        load_cifar(folder, which=100)


def test_an_empty_batch_is_an_error(tmp_path):
    folder = make_cifar10(tmp_path / "c")
    (folder / "test_batch.bin").write_bytes(b"")
    with pytest.raises(DataError, match=r"test_batch\.bin: expected a multiple of 3073 bytes .*found 0 bytes"):
        load_cifar(folder)


def test_labels_out_of_range_are_errors(tmp_path):
    folder = make_cifar10(tmp_path / "c")
    path = folder / "test_batch.bin"
    path.write_bytes(records([[1], [10], [3]], pixels(3, seed=0)))
    message = f"{path}: expected labels 0..9 in byte 0 of each record, found 10 in record 1 (1 out of range)"
    with pytest.raises(DataError, match=re.escape(message)):
        load_cifar(folder)


@pytest.mark.parametrize(
    ("label", "message"), [([20, 5], "labels 0..19 in byte 0"), ([3, 100], "labels 0..99 in byte 1")]
)
def test_cifar100_coarse_and_fine_labels_are_checked(tmp_path, label, message):
    folder = make_cifar100(tmp_path / "c")
    (folder / "train.bin").write_bytes(records([[0, 0], label], pixels(2, seed=0)))
    with pytest.raises(DataError, match=re.escape(f"{folder / 'train.bin'}: expected {message} of each record")):
        load_cifar(folder, which=100)


@pytest.mark.parametrize(
    ("files", "sub"),
    [
        (["data_batch_1", "test_batch", "batches.meta"], ""),  # the python version extracted in place
        (["data_batch_1", "batches.meta"], "cifar-10-batches-py"),  # ... or in its own subfolder
        (["cifar10_train.pkl"], ""),  # a re-pickled copy
    ],
)
def test_the_pickle_version_is_refused_with_directions(tmp_path, files, sub):
    folder = tmp_path / sub if sub else tmp_path
    folder.mkdir(exist_ok=True)
    for name in files:
        (folder / name).write_bytes(b"\x80\x04not a real pickle, and it is never opened")
    with pytest.raises(DataError) as caught:
        load_cifar(tmp_path)
    message = str(caught.value)
    assert message.startswith(f"{folder}: found {files[0]}")
    assert "the python (pickle) version of CIFAR-10, which is never read" in message
    assert "only the binary version is read: get https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz" in message


def test_the_cifar100_pickle_version_is_refused(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    for name in ("train", "test", "meta"):
        (folder / name).write_bytes(b"\x80\x04")
    pattern = r"found train, test, meta, the python \(pickle\) version of CIFAR-100.*cifar-100-binary\.tar\.gz"
    with pytest.raises(DataError, match=pattern):
        load_cifar(tmp_path, which=100)


def test_an_empty_folder_says_what_is_missing(tmp_path):
    message = f"{tmp_path}: missing test_batch.bin (looked in {tmp_path} and {tmp_path / 'cifar-10-batches-bin'})"
    with pytest.raises(DataError, match=re.escape(message)):
        load_cifar(tmp_path)


def test_a_missing_folder_is_an_error(tmp_path):
    with pytest.raises(DataError, match=r"nope: no such folder \(expected the extracted cifar-10-binary\.tar\.gz\)"):
        load_cifar(tmp_path / "nope")


def test_a_missing_batch_is_an_error(tmp_path):
    folder = make_cifar10(tmp_path / "c")
    (folder / "data_batch_4.bin").unlink()
    message = f"{folder / 'data_batch_4.bin'}: missing (part of cifar-10-binary.tar.gz)"
    with pytest.raises(DataError, match=re.escape(message)):
        load_cifar(folder)


def test_class_names_are_checked(tmp_path):
    folder = make_cifar10(tmp_path / "c")
    names = folder / "batches.meta.txt"
    names.write_text("airplane\nautomobile\n")
    with pytest.raises(DataError, match=re.escape(f"{names}: expected 10 class names, one per line, found 2")):
        load_cifar(folder)
    names.unlink()
    with pytest.raises(DataError, match=re.escape(f"{names}: missing (expected 10 class names, one per line)")):
        load_cifar(folder)


def test_only_10_and_100_exist(tmp_path):
    with pytest.raises(DataError, match=r"CIFAR version: expected 10 or 100, received 20"):
        load_cifar(tmp_path, which=20)
