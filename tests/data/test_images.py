import os
import re
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from convscope import DataError
from convscope.data.images import open_image, sample_photo, to_array


def test_exif_orientation_is_applied(tmp_path):
    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: the camera was turned; viewers rotate 90° clockwise
    Image.new("RGB", (40, 20), "red").save(path, exif=exif)
    assert open_image(path).size == (20, 40)


def test_truncated_files_are_errors_not_grey_fill(tmp_path):
    whole = tmp_path / "whole.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(whole)
    cut = tmp_path / "cut.png"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(DataError, match=r"cut\.png: damaged or truncated image"):
        open_image(cut)


@pytest.mark.parametrize("limit", [3000, 500])  # 64×64 = 4096 pixels: over the limit (warning), over twice it (error)
def test_decompression_bombs_are_refused(tmp_path, monkeypatch, limit):
    path = tmp_path / "big.png"
    Image.new("L", (64, 64)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)
    with pytest.raises(DataError, match=r"big\.png: refused, too many pixels"):
        open_image(path)


def test_formats_outside_the_allowlist_are_refused(tmp_path):
    path = tmp_path / "drawing.eps"
    path.write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n")
    with pytest.raises(DataError, match="not an image in an allowed format"):
        open_image(path)


def test_sixteen_bit_images_are_scaled_not_clipped(tmp_path):
    path = tmp_path / "deep.png"
    Image.fromarray(np.array([[0, 257 * 100, 65535]], dtype=np.uint16)).save(path)
    assert to_array(open_image(path), channels=1)[0, :, 0].tolist() == [0, 100, 255]


def test_channel_conversion_drops_alpha_and_repeats_gray(tmp_path):
    rgba = Image.new("RGBA", (2, 1), (10, 20, 30, 0))
    assert to_array(rgba, 3).tolist() == [[[10, 20, 30], [10, 20, 30]]]
    gray = Image.new("L", (1, 1), 77)
    assert to_array(gray, 3).tolist() == [[[77, 77, 77]]]
    assert to_array(Image.open(sample_photo("chelsea")), 1).shape == (300, 451, 1)


CASES = Path(__file__).resolve().parents[3] / "shared" / "cases" / "images"


def _case(name: str) -> Path:
    path = CASES / name
    if not path.is_file():
        pytest.skip(f"{path} is not on this machine")
    return path


@pytest.mark.parametrize(
    ("name", "background", "square"),
    [
        ("float01.tif", 13, 242),  # float32 0.05 / 0.95: × 255, rounded
        ("int32_8bitvals.tif", 20, 220),  # int32 holding 8-bit levels: as they are
    ],
)
def test_float_and_32_bit_tiffs_keep_their_bright_square(name, background, square):
    img = open_image(_case(name))
    gray = to_array(img, channels=1)[:, :, 0]
    inside = np.zeros(gray.shape, dtype=bool)
    inside[8:24, 8:24] = True  # the 16×16 square of both files
    assert np.unique(gray[inside]).tolist() == [square]
    assert np.unique(gray[~inside]).tolist() == [background]
    assert to_array(img, channels=3)[12, 12].tolist() == [square] * 3


@pytest.mark.parametrize(
    ("values", "mode", "expected"),
    [
        ([0.0, 0.5, 1.0], "F", [0, 128, 255]),  # 0–1: × 255
        ([0.0, 100.0, 255.0], "F", [0, 100, 255]),  # 0–255: as they are
        ([-1.0, 0.0, 1.0], "F", [0, 128, 255]),  # anything else: min → 0, max → 255
        ([1000.0, 3000.0, 5000.0], "F", [0, 128, 255]),
        ([20, 120, 220], "I", [20, 120, 220]),  # 8-bit levels in 32 bits
        ([0, 25700, 65535], "I", [0, 100, 255]),  # 16-bit levels in 32 bits: / 257
        ([-100, 0, 100_000], "I", [0, 0, 255]),  # stretched
        ([1000, 1000, 1000], "I", [4, 4, 4]),  # in 0–65535: 16-bit levels, / 257
        ([70_000, 70_000, 70_000], "I", [255, 255, 255]),  # one value, nothing to stretch: clipped
        ([-7.0, -7.0, -7.0], "F", [0, 0, 0]),
    ],
)
def test_wide_images_are_scaled_by_their_value_range(values, mode, expected):
    dtype = np.float32 if mode == "F" else np.int32
    img = Image.fromarray(np.array([values], dtype=dtype), mode=mode)
    assert to_array(img, channels=1)[0, :, 0].tolist() == expected


def test_float_images_with_nan_or_infinity_are_refused(tmp_path):
    values = np.full((4, 4), 0.5, dtype=np.float32)
    values[1, 2], values[3, 3] = np.nan, np.inf
    path = tmp_path / "nan.tif"
    Image.fromarray(values, mode="F").save(path)
    message = f"{path}: float image with 2 NaN or infinite value(s) among its 16 pixels; expected finite numbers"
    with pytest.raises(DataError, match=re.escape(message)):
        open_image(path)
    with pytest.raises(DataError, match="float image with 2 NaN or infinite value"):
        to_array(Image.fromarray(values, mode="F"), channels=1)


def test_a_named_pipe_is_refused_without_waiting_on_it(tmp_path):
    os.mkfifo(tmp_path / "pipe.png")
    failed = []
    thread = threading.Thread(target=lambda: failed.append(_error_of(open_image, tmp_path / "pipe.png")), daemon=True)
    thread.start()
    thread.join(timeout=10)
    assert failed == [
        f"{tmp_path / 'pipe.png'}: is a named pipe (FIFO), not a regular file; expected an image file "
        "(it was not opened)"
    ]


def test_a_link_to_an_image_is_read(tmp_path):
    Image.new("L", (3, 2), 90).save(tmp_path / "real.png")
    (tmp_path / "link.png").symlink_to(tmp_path / "real.png")
    assert to_array(open_image(tmp_path / "link.png"), 1)[:, :, 0].tolist() == [[90, 90, 90], [90, 90, 90]]


def test_no_pillow_warning_escapes_while_threads_decode_bombs(tmp_path, monkeypatch):
    Image.new("L", (64, 64)).save(tmp_path / "big.png")  # 4096 pixels: Pillow warns (over 3000, under 6000)
    Image.new("L", (40, 40), 7).save(tmp_path / "small.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 3000)
    before = list(warnings.filters)
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        with ThreadPoolExecutor(4) as pool:
            outcomes = list(
                pool.map(lambda p: _error_of(open_image, p), [tmp_path / "big.png", tmp_path / "small.png"] * 20)
            )
    assert [str(w.message) for w in shown] == []
    assert all(o.startswith(f"{tmp_path / 'big.png'}: refused, too many pixels") for o in outcomes[::2])
    assert outcomes[1::2] == [""] * 20
    assert warnings.filters == before


def _error_of(function, *args) -> str:
    try:
        function(*args)
    except DataError as err:
        return str(err)
    return ""
