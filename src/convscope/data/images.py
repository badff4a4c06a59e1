"""Safe image decoding: a format allowlist, EXIF orientation applied, decompression bombs and truncated files refused.

Files are only read, never modified. Every failure is a DataError naming the file.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from convscope.errors import DataError

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


def open_image(path: str | Path) -> Image.Image:
    """Decode `path` fully and return it upright (EXIF orientation applied)."""
    path = Path(path)
    try:
        with Image.open(path, formats=ALLOWED_FORMATS) as img:
            # Pillow only warns between MAX_IMAGE_PIXELS and twice that; here it is an error. (Checked directly, not
            # with a warnings filter: those are process-wide and not thread-safe, and folders decode in threads.)
            if Image.MAX_IMAGE_PIXELS and img.width * img.height > Image.MAX_IMAGE_PIXELS:
                raise Image.DecompressionBombError(
                    f"{img.width}×{img.height} = {img.width * img.height:,} pixels, more than the "
                    f"{Image.MAX_IMAGE_PIXELS:,} allowed"
                )
            img.load()  # decode now: a truncated file fails here instead of later
            return ImageOps.exif_transpose(img)
    except FileNotFoundError:
        raise DataError(f"{path}: no such image file") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder, expected an image file") from None
    except UnidentifiedImageError:
        raise DataError(f"{path}: not an image in an allowed format ({', '.join(ALLOWED_FORMATS)})") from None
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as err:
        raise DataError(f"{path}: refused, too many pixels for an image ({err})") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise DataError(f"{path}: damaged or truncated image ({err})") from None


def to_array(img: Image.Image, channels: int) -> np.ndarray:
    """uint8 H×W×channels (1 = gray, 3 = RGB). Alpha is dropped; 16-bit values are scaled to 0–255, not clipped."""
    if channels not in (1, 3):
        raise DataError(f"images can be read with 1 (gray) or 3 (RGB) channels. Received: {channels}")
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        wide = np.asarray(img, dtype=np.float64)
        top = 65535.0 if wide.max(initial=0) <= 65535 else float(wide.max())
        gray = np.round(np.clip(wide, 0, None) / top * 255).astype(np.uint8)
        img = Image.fromarray(gray, mode="L")
    if img.mode == "P" or img.mode == "PA":
        img = img.convert("RGBA")
    img = img.convert("L" if channels == 1 else "RGB")
    array = np.asarray(img, dtype=np.uint8)
    return array[:, :, None] if channels == 1 else array


def describe(img: Image.Image) -> str:
    """'RGB 451×300' (width×height, as image viewers say it)."""
    return f"{img.mode} {img.width}×{img.height}"
