"""Uploaded images: a random name on disk, a bounded size, convscope's own image reader.

- The body is bounded before it is read (MAX_UPLOAD bytes, studio.guards.Guard: 413).
- `UploadStore.add` writes the bytes to a private temporary folder under a random token (the client's file name and
  content type are never used), decodes them with convscope's safe reader (data.images.open_image: a format
  allowlist, the decompression-bomb limit, truncation as an error), refusing an image over MAX_PIXELS from its
  header before its pixels are decoded (413), and keeps the newest few for the run page's
  follow-up questions (another class's Grad-CAM, another layer's feature maps). Everything is removed on shutdown.
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path

from PIL import Image

from convscope.data.images import open_image
from convscope.errors import DataError
from convscope.studio.guards import TooLarge

MAX_UPLOAD = 20 * 2**20  # bytes: a large phone photo; a convnet sees it at a few hundred pixels anyway
MAX_PIXELS = 40_000_000  # an image's width × height, read from its header: a 40-megapixel photo decodes in ~1 s
KEPT = 32  # uploads kept for follow-up questions; older ones are deleted


def check_pixels(image: Image.Image) -> None:
    """Raises TooLarge for an image (its header read, its pixels not decoded) of more than MAX_PIXELS pixels."""
    width, height = image.size
    if width * height > MAX_PIXELS:
        raise TooLarge(f"the image is {width}×{height} pixels ({width * height / 1e6:.1f} megapixels): the studio "
                       f"takes images of up to {MAX_PIXELS / 1e6:.0f} megapixels")  # fmt: skip


class UploadStore:
    """Uploaded images by token, newest KEPT kept (thread-safe: handlers run in a thread pool)."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="convscope-studio-"))
        self._paths: OrderedDict[str, Path] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, data: bytes) -> tuple[str, Image.Image]:
        """Decode `data` with convscope's reader; returns (token, the image decoded and upright), so that the request
        that uploads it decodes it once. Raises DataError (one line, without the temporary path) when it is not an
        image convscope reads."""
        token = secrets.token_urlsafe(16)
        path = self.folder / token
        path.write_bytes(data)
        try:
            image = open_image(path, header_check=check_pixels)
        except TooLarge:
            path.unlink(missing_ok=True)
            raise
        except DataError as err:
            path.unlink(missing_ok=True)
            reason = str(err).removeprefix(f"{path}: ")  # the temporary name means nothing to the user
            raise DataError(f"the upload is not an image convscope reads: {reason}") from None
        with self._lock:
            self._paths[token] = path
            while len(self._paths) > KEPT:
                _, old = self._paths.popitem(last=False)
                old.unlink(missing_ok=True)
        return token, image

    def path(self, token: str) -> Path:
        """The file of an upload. Raises KeyError for a token this store does not hold (expired, or made up)."""
        with self._lock:
            return self._paths[token]

    def close(self) -> None:
        """Remove the folder and every upload in it (at shutdown; safe to call more than once)."""
        shutil.rmtree(self.folder, ignore_errors=True)
