"""Uploaded images: a bounded request body, a random name on disk, convscope's own image reader.

- `UploadLimit` (ASGI middleware) answers 413 as soon as a request body passes the limit, whether or not it says
  its length, before the form parser has read the rest.
- `UploadStore.add` writes the bytes to a private temporary folder under a random token (the client's file name and
  content type are never used), decodes them with convscope's safe reader (data.images.open_image: a format
  allowlist, the decompression-bomb limit, truncation as an error) and keeps the newest few for the run page's
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

MAX_UPLOAD = 20 * 2**20  # bytes: a large phone photo; a convnet sees it at a few hundred pixels anyway
KEPT = 32  # uploads kept for follow-up questions; older ones are deleted


class UploadLimit:
    """ASGI middleware: 413 for a request body larger than `limit` bytes (Content-Length, or counted as it comes)."""

    def __init__(self, app, limit: int = MAX_UPLOAD) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            await self._refuse(send)
            return
        seen, started, refused = 0, False, False

        # Past the limit: answer 413 at once, then tell the app the client has gone (it stops reading), and drop
        # whatever it answers to that. An exception would not do: the form parser turns it into a 400.
        async def counted():
            nonlocal seen, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                refused = True
                if not started:
                    await self._refuse(send)
                return {"type": "http.disconnect"}
            return message

        async def sending(message):
            nonlocal started
            if not refused:
                started = True
                await send(message)

        await self.app(scope, counted, sending)

    async def _refuse(self, send) -> None:
        size = f"{self.limit // 2**20} MiB" if self.limit >= 2**20 else f"{self.limit // 1024} KiB"
        body = f'{{"detail": "the upload is larger than {size}"}}'.encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


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
            image = open_image(path)
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
        shutil.rmtree(self.folder, ignore_errors=True)
