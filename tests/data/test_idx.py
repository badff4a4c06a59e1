import gzip
import re
import struct
from pathlib import Path

import numpy as np
import pytest

from convscope import DataError
from convscope.data.idx import FASHION_CLASSES, MNIST_CLASSES, load_idx_dataset, read_idx

SYSTEM_FASHION = Path("/usr/share/datasets/fashion-mnist")


def idx_bytes(array: np.ndarray, type_code: int = 0x08) -> bytes:
    """An IDX file as published: 0, 0, type code, ndim, big-endian uint32 sizes, then the items."""
    header = struct.pack(f">BBBB{array.ndim}I", 0, 0, type_code, array.ndim, *array.shape)
    return header + array.tobytes()


def write(path: Path, data: bytes, gz: bool = False) -> Path:
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def write_idx(path: Path, array: np.ndarray) -> Path:
    return write(path, idx_bytes(array), gz=path.suffix == ".gz")


def images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 28, 28), dtype=np.uint8)


def fake_folder(folder: Path, train: int = 5, test: int = 3, gz: bool = True) -> Path:
    folder.mkdir(exist_ok=True)
    suffix = ".gz" if gz else ""
    for prefix, n in (("train", train), ("t10k", test)):
        write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", images(n))
        write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", np.arange(n, dtype=np.uint8) % 10)
    return folder


# --- read_idx ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["items-idx3-ubyte", "items-idx3-ubyte.gz"])
def test_reads_raw_and_gzip_files(tmp_path, name):
    array = np.random.default_rng(1).integers(0, 256, (3, 4, 5), dtype=np.uint8)
    got = read_idx(write_idx(tmp_path / name, array))
    assert got.dtype == np.uint8 and got.shape == (3, 4, 5)
    np.testing.assert_array_equal(got, array)
    assert got.flags.writeable  # torch.from_numpy warns about read-only arrays


def test_gzip_is_recognised_by_content_not_by_name(tmp_path):
    labels = np.array([3, 1, 4], dtype=np.uint8)
    path = write(tmp_path / "labels-idx1-ubyte", idx_bytes(labels), gz=True)
    np.testing.assert_array_equal(read_idx(path), labels)


def test_bad_magic_is_refused(tmp_path):
    path = write(tmp_path / "x", b"\x01\x02" + idx_bytes(np.zeros(4, np.uint8))[2:])
    message = f"{path}: not an IDX file: expected the magic number to start with two zero bytes, found 01 02"
    with pytest.raises(DataError, match=re.escape(message)):
        read_idx(path)


def test_other_type_codes_are_refused(tmp_path):
    path = write(tmp_path / "x", idx_bytes(np.zeros(4, np.float32), type_code=0x0D))
    message = f"{path}: expected type code 0x08 (unsigned byte), found 0x0D (float32); only uint8 IDX files are read"
    with pytest.raises(DataError, match=re.escape(message)):
        read_idx(path)


def test_zero_dimensions_are_refused(tmp_path):
    path = write(tmp_path / "x", b"\0\0\x08\0")
    with pytest.raises(DataError, match=re.escape(f"{path}: expected at least 1 dimension in the IDX header, found 0")):
        read_idx(path)


def test_a_cut_header_is_an_error(tmp_path):
    path = write(tmp_path / "x", idx_bytes(np.zeros((2, 3, 4), np.uint8))[:9])
    with pytest.raises(DataError, match=re.escape(f"{path}: expected a 16-byte header (3 dimension sizes), found 9")):
        read_idx(path)


def test_an_empty_file_is_an_error(tmp_path):
    path = write(tmp_path / "x", b"")
    with pytest.raises(DataError, match=re.escape(f"{path}: expected an IDX header of at least 4 bytes, found 0")):
        read_idx(path)


@pytest.mark.parametrize("gz", [False, True])
def test_truncated_files_are_errors(tmp_path, gz):
    data = idx_bytes(np.zeros((3, 4, 5), np.uint8))  # 16 + 60 = 76 bytes
    path = write(tmp_path / "images-idx3-ubyte", data[:50], gz=gz)
    with pytest.raises(DataError, match=re.escape(f"{path}: expected 76 bytes (header 16 + 3×4×5), found 50")):
        read_idx(path)


def test_too_long_raw_files_are_errors(tmp_path):
    path = write(tmp_path / "x", idx_bytes(np.zeros((3, 4, 5), np.uint8)) + b"\0" * 4)
    with pytest.raises(DataError, match=re.escape(f"{path}: expected 76 bytes (header 16 + 3×4×5), found 80")):
        read_idx(path)


def test_too_long_gzip_files_are_errors(tmp_path):
    path = write(tmp_path / "x.gz", idx_bytes(np.zeros((3, 4, 5), np.uint8)) + b"\0" * 4, gz=True)
    with pytest.raises(DataError, match=re.escape(f"{path}: expected 76 bytes (header 16 + 3×4×5), found more")):
        read_idx(path)


def test_a_header_promising_more_than_gzip_can_hold_is_refused_before_reading(tmp_path):
    header = struct.pack(">BBBB3I", 0, 0, 8, 3, 100_000, 100_000, 100_000)  # 10^15 bytes: never allocated
    path = write(tmp_path / "x.gz", header, gz=True)
    with pytest.raises(DataError, match=r"expected 1000000000000016 bytes .* cannot hold that many"):
        read_idx(path)


def test_a_cut_gzip_stream_is_an_error(tmp_path):
    whole = gzip.compress(idx_bytes(images(20)))
    path = write(tmp_path / "x.gz", whole[: len(whole) // 2])
    with pytest.raises(DataError, match=re.escape(f"{path}: corrupt gzip stream")):
        read_idx(path)


def test_a_gzip_crc_mismatch_is_an_error(tmp_path):
    whole = bytearray(gzip.compress(idx_bytes(images(2))))
    whole[-8] ^= 0xFF  # first byte of the CRC-32 in the trailer
    path = write(tmp_path / "x.gz", bytes(whole))
    with pytest.raises(DataError, match=re.escape(f"{path}: corrupt gzip stream (CRC check failed")):
        read_idx(path)


def test_missing_files_are_errors(tmp_path):
    with pytest.raises(DataError, match=re.escape(f"{tmp_path / 'nope'}: no such IDX file")):
        read_idx(tmp_path / "nope")


# --- load_idx_dataset -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [True, False])
def test_loads_a_folder_as_a_dataset(tmp_path, gz):
    folder = fake_folder(tmp_path / "fashion", gz=gz)
    data = load_idx_dataset(folder)
    assert data.name == "fashion-mnist" and data.classes == FASHION_CLASSES and data.source == str(folder)
    assert data.train.images.shape == (5, 28, 28, 1) and data.test.images.shape == (3, 28, 28, 1)
    assert data.train.labels.dtype == np.int64 and data.train.labels.tolist() == [0, 1, 2, 3, 4]
    np.testing.assert_array_equal(data.train.images[..., 0], images(5))
    assert data.val is None and data.image_shape == (28, 28, 1)


def test_mnist_has_digit_classes(tmp_path):
    data = load_idx_dataset(fake_folder(tmp_path / "m"), name="mnist")
    assert data.name == "mnist" and data.classes == MNIST_CLASSES == tuple("0123456789")


def test_image_and_label_counts_must_agree(tmp_path):
    folder = fake_folder(tmp_path / "f")
    labels = write_idx(folder / "train-labels-idx1-ubyte.gz", np.zeros(4, np.uint8))
    message = f"{folder / 'train-images-idx3-ubyte.gz'} holds 5 images but {labels} holds 4 labels; expected equal"
    with pytest.raises(DataError, match=re.escape(message)):
        load_idx_dataset(folder)


def test_labels_must_be_below_10(tmp_path):
    folder = fake_folder(tmp_path / "f")
    labels = write_idx(folder / "t10k-labels-idx1-ubyte.gz", np.array([0, 9, 12], np.uint8))
    message = f"{labels}: expected labels 0..9, found 12 at item 2 (1 out of range)"
    with pytest.raises(DataError, match=re.escape(message)):
        load_idx_dataset(folder)


def test_images_must_have_three_dimensions(tmp_path):
    folder = fake_folder(tmp_path / "f")
    path = write_idx(folder / "train-images-idx3-ubyte.gz", np.zeros((5, 784), np.uint8))
    with pytest.raises(DataError, match=re.escape(f"{path}: expected images N×H×W (3 dimensions), found shape 5×784")):
        load_idx_dataset(folder)


FASHION_HOW = (
    "install it with `sudo apt-get install dataset-fashion-mnist` or download it with "
    "`convscope data get fashion-mnist --to DIR`"
)


@pytest.mark.parametrize(
    ("name", "how"),
    [("fashion-mnist", FASHION_HOW), ("mnist", "download it with `convscope data get mnist --to DIR`")],
)
def test_a_missing_file_says_which_and_how_to_get_it(tmp_path, name, how):
    folder = fake_folder(tmp_path / "f")
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    message = f"{folder}: missing t10k-labels-idx1-ubyte.gz (or t10k-labels-idx1-ubyte); {how}"
    with pytest.raises(DataError, match=re.escape(message)):
        load_idx_dataset(folder, name=name)


def test_a_missing_folder_says_how_to_get_it(tmp_path):
    with pytest.raises(DataError, match=r"nope: no such folder .*sudo apt-get install dataset-fashion-mnist"):
        load_idx_dataset(tmp_path / "nope")


def test_mnist_needs_a_folder():
    with pytest.raises(DataError, match=r"mnist has no system copy, so a folder is needed; download it with `convs"):
        load_idx_dataset(name="mnist")


def test_unknown_names_are_refused(tmp_path):
    with pytest.raises(DataError, match=r"unknown IDX dataset 'kmnist': expected one of fashion-mnist, mnist"):
        load_idx_dataset(tmp_path, name="kmnist")


@pytest.mark.skipif(
    not SYSTEM_FASHION.is_dir(),
    reason=f"{SYSTEM_FASHION} missing: install the Debian package dataset-fashion-mnist to run this test",
)
def test_the_real_fashion_mnist():
    data = load_idx_dataset()  # the default folder is the Debian package's
    assert data.source == str(SYSTEM_FASHION)
    assert len(data.train) == 60000 and len(data.test) == 10000
    assert data.image_shape == (28, 28, 1) and data.test.images.shape == (10000, 28, 28, 1)
    assert np.bincount(data.train.labels).tolist() == [6000] * 10
    assert np.bincount(data.test.labels).tolist() == [1000] * 10
    assert data.train.labels[0] == 9 and data.classes[9] == "Ankle boot"
