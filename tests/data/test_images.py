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
