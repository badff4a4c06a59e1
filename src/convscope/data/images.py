"""Safe image decoding: a format allowlist, EXIF orientation applied, decompression bombs and truncated files refused.

Files are only read, never modified. Every failure is a DataError naming the file.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

import numpy as np
import PIL
from PIL import Image, ImageOps, UnidentifiedImageError

from convscope.errors import DataError
from convscope.files import check_regular_file, reader_warnings

# Formats people keep photos and datasets in; anything else (EPS, which runs Ghostscript, ...) is refused.
ALLOWED_FORMATS = ("PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP", "PPM")

# Public-domain photos that ship in scikit-image's data folder (no download needed).
SAMPLE_PHOTOS = {
    "chelsea": "chelsea.png",  # a cat
    "coffee": "coffee.png",  # a cup of espresso
    "astronaut": "astronaut.png",  # Eileen Collins
    "camera": "camera.png",  # the cameraman, grayscale
    "rocket": "rocket.jpg",
}


def sample_photo(name: str) -> Path:
    """Path of one of SAMPLE_PHOTOS (found without importing scikit-image)."""
    if name not in SAMPLE_PHOTOS:
        raise DataError(f"unknown sample photo {name!r}. Samples: {', '.join(SAMPLE_PHOTOS)}")
    found = importlib.util.find_spec("skimage")
    if found is None or not found.submodule_search_locations:
        raise DataError("sample photos come with scikit-image, which is not installed (pip install scikit-image)")
    path = Path(next(iter(found.submodule_search_locations))) / "data" / SAMPLE_PHOTOS[name]
    if not path.is_file():
        raise DataError(f"{path}: sample photo {name!r} is missing from the scikit-image installation")
    return path


def resolve_image(name_or_path: str) -> Path:
    """A sample photo name ('chelsea') or a file path."""
    if name_or_path in SAMPLE_PHOTOS and not Path(name_or_path).exists():
        return sample_photo(name_or_path)
    return Path(name_or_path)


def open_image(path: str | Path, header_check: Callable[[Image.Image], None] | None = None) -> Image.Image:
    """Decode `path` fully and return it upright (EXIF orientation applied). `header_check`, when given, is called
    with the image once its header is read, before its pixels are decoded (it raises to refuse it: its size, say).

    Raises DataError naming the file when it is missing or not a regular file (a named pipe or device is refused
    without being opened), is not in ALLOWED_FORMATS, has more than Image.MAX_IMAGE_PIXELS pixels, is damaged or
    truncated, or is a float image holding NaN or infinite values. Pillow's own warnings about the file (the
    decompression-bomb one, damaged metadata) never reach the terminal: the first is this refusal, the others are
    logged (INFO) with the file's name (see files.reader_warnings).
    """
    path = check_regular_file(path, "image file")
    try:
        # Pillow *warns* (DecompressionBombWarning) between MAX_IMAGE_PIXELS and twice that, inside Image.open before
        # a caller sees the size; here it is an error. Image.open reads only the header (quick, under the warnings
        # lock); the pixels are decoded outside it, in parallel when a folder is read with threads.
        with reader_warnings(path, PIL, errors=(Image.DecompressionBombWarning,)):
            img = Image.open(path, formats=ALLOWED_FORMATS)
        with img:
            if header_check is not None:
                header_check(img)
            img.load()  # decode now: a truncated file fails here instead of later
            if img.mode == "F":
                _check_finite(np.asarray(img))
            with reader_warnings(path, PIL):  # EXIF parsing warns about damaged tags
                return ImageOps.exif_transpose(img)
    except FileNotFoundError:  # removed since it was checked
        raise DataError(f"{path}: no such image file") from None
    except UnidentifiedImageError:
        raise DataError(f"{path}: not an image in an allowed format ({', '.join(ALLOWED_FORMATS)})") from None
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as err:
        raise DataError(f"{path}: refused, too many pixels for an image ({err})") from None
    except DataError as err:
        raise DataError(f"{path}: {err}") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise DataError(f"{path}: damaged or truncated image ({err})") from None


def _check_finite(values: np.ndarray) -> None:
    bad = int(values.size - np.count_nonzero(np.isfinite(values)))
    if bad:
        raise DataError(
            f"float image with {bad:,} NaN or infinite value(s) among its {values.size:,} pixels; expected finite "
            "numbers (there is no brightness to give them)"
        )


def to_array(img: Image.Image, channels: int) -> np.ndarray:
    """uint8 H×W×channels (1 = gray, 3 = RGB). Alpha is dropped.

    Images with more than 8 bits per value are scaled by the range their values are stored in, so that nothing
    becomes all black or all white by clipping (the first rule that fits applies; values are then rounded):

        16-bit (modes I;16*)                          value / 257          0–65535 → 0–255
        float (mode F), every value in 0–1            value × 255          0–1 → 0–255
        float or 32-bit integer, all in 0–255         as they are          8-bit levels stored wide
        32-bit integer (mode I), all in 0–65535       value / 257          16-bit levels stored wide
        anything else (negative or larger values)     min → 0, max → 255   stretched to this image's own range

    An image of one value outside 0–255 (nothing to stretch) is clipped to 0 or 255. Raises DataError when
    `channels` is not 1 or 3, or a float image holds NaN or infinite values.
    """
    if channels not in (1, 3):
        raise DataError(f"images can be read with 1 (gray) or 3 (RGB) channels. Received: {channels}")
    if img.mode.startswith("I") or img.mode == "F":  # I;16*, I (int32), F (float32): one channel, wider than 8 bits
        img = Image.fromarray(_eight_bit(np.asarray(img, dtype=np.float64), img.mode), mode="L")
    if img.mode == "P" or img.mode == "PA":
        img = img.convert("RGBA")
    img = img.convert("L" if channels == 1 else "RGB")
    array = np.asarray(img, dtype=np.uint8)
    return array[:, :, None] if channels == 1 else array


def _eight_bit(values: np.ndarray, mode: str) -> np.ndarray:
    """uint8 H×W of a float64 H×W holding the values of a `mode` image, by the rules in `to_array`."""
    _check_finite(values)
    lo, hi = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if mode.startswith("I;16"):
        scaled = values / 257
    elif mode == "F" and lo >= 0 and hi <= 1:
        scaled = values * 255
    elif lo >= 0 and hi <= 255:
        scaled = values
    elif mode == "I" and lo >= 0 and hi <= 65535:
        scaled = values / 257
    elif hi > lo:
        scaled = (values - lo) * (255 / (hi - lo))
    else:
        scaled = values
    return np.round(np.clip(scaled, 0, 255)).astype(np.uint8)


def describe(img: Image.Image) -> str:
    """'RGB 451×300' (width×height, as image viewers say it)."""
    return f"{img.mode} {img.width}×{img.height}"
