"""Download MNIST or Fashion-MNIST (the four official `.gz` IDX files), each checked against a built-in SHA-256.

Nothing reaches its final name before it is verified: every file is streamed into a temp file in the destination
folder, hashed on the way, fsynced and only then renamed over the final name (`os.replace`), so an interrupted or
tampered download never leaves a file that looks complete. Files already there with the right checksum are kept.
Only the standard library is used (urllib); progress goes to `logging` and an optional callback, never to stdout.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from convscope.errors import DataError

log = logging.getLogger(__name__)

CHUNK = 1 << 20  # bytes per read: big enough to be fast, small enough to report progress


@dataclass(frozen=True)
class Resource:
    filename: str
    size: int  # bytes of the .gz file
    sha256: str  # of the .gz file as published


@dataclass(frozen=True)
class Source:
    mirrors: tuple[str, ...]  # tried in order; each ends with '/'
    files: tuple[Resource, ...]


# The published MD5 of each file (Fashion-MNIST README, torchvision `datasets/mnist.py`) is in the comment; the
# SHA-256 and size are of the same bytes. Fashion-MNIST: checked against Debian's copies, whose gzip headers were
# normalised by strip-nondeterminism (name and mtime dropped) but whose deflate streams are the originals; putting
# the original header back gives files matching both the MD5 and these SHA-256 values byte for byte.
# MNIST: the widely published SHA-256 of the files whose MD5 torchvision checks (no local copy to check against).
SOURCES = {
    "fashion-mnist": Source(
        mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),  # torchvision's mirror
        files=(
            # md5 8d4fb7e6c68d591d4c3dfef9ec88bf0d
            Resource(
                "train-images-idx3-ubyte.gz",
                26421880,
                "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
            ),
            # md5 25c81989df183df01b3e8a0aad5dffbe
            Resource(
                "train-labels-idx1-ubyte.gz", 29515, "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845"
            ),
            # md5 bef4ecab320f06d8554ea6380940ec79
            Resource(
                "t10k-images-idx3-ubyte.gz", 4422102, "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073"
            ),
            # md5 bb300cfdad3c16e7a12a480ee83cd310
            Resource(
                "t10k-labels-idx1-ubyte.gz", 5148, "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5"
            ),
        ),
    ),
    "mnist": Source(
        # torchvision's mirrors; yann.lecun.com often refuses downloads now, so the S3 copy comes first.
        mirrors=("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"),
        files=(
            # md5 f68b3c2dcbeaaa9fbdd348bbdeb94873
            Resource(
                "train-images-idx3-ubyte.gz",
                9912422,
                "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
            ),
            # md5 d53e105ee54ea40749a09fcbcd1e9432
            Resource(
                "train-labels-idx1-ubyte.gz", 28881, "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"
            ),
            # md5 9fb629c4189551a2d022fa330f9573f3
            Resource(
                "t10k-images-idx3-ubyte.gz", 1648877, "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"
            ),
            # md5 ec29112dd5afa0611ce80d1b7f02629c
            Resource(
                "t10k-labels-idx1-ubyte.gz", 4542, "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"
            ),
        ),
    ),
}

Progress = Callable[[str, int, int], None]  # (file name, bytes so far, bytes in all)


def download_dataset(
    name: str, to: str | Path, base_url: str | None = None, timeout: float = 60, progress: Progress | None = None
) -> Path:
    """Download the four `.gz` files of `name` ("fashion-mnist" or "mnist") into folder `to`; returns `to`.

    `base_url` replaces the built-in mirrors (a folder URL holding the four files). `timeout` is in seconds without
    an answer from the server. Afterwards `load_idx_dataset(to, name)` reads the folder.
    """
    if name not in SOURCES:
        raise DataError(f"unknown dataset to download {name!r}: expected one of {', '.join(SOURCES)}")
    source = SOURCES[name]
    mirrors = (base_url.rstrip("/") + "/",) if base_url else source.mirrors
    to = Path(to)
    try:
        to.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DataError(f"{to}: cannot create the download folder ({error.strerror or error})") from None
    for resource in source.files:
        _ensure(resource, to / resource.filename, mirrors, timeout, progress)
    return to


def _ensure(
    resource: Resource, dest: Path, mirrors: tuple[str, ...], timeout: float, progress: Progress | None
) -> None:
    """Make `dest` the verified file: keep it if it already is, else fetch it from the first mirror that works."""
    if dest.is_file():
        digest = _sha256(dest)
        if digest == resource.sha256:
            log.info("%s: already there, checksum verified; not downloading again", dest)
            return
        log.warning("%s: sha256 %s is not the expected %s; downloading it again", dest, digest, resource.sha256)
    failures = []
    for mirror in mirrors:
        url = mirror + resource.filename
        try:
            _fetch(url, dest, resource, timeout, progress)
            return
        except DataError as error:
            log.warning("%s", error)
            failures.append(str(error))
    if len(failures) == 1:
        raise DataError(failures[0])
    raise DataError(f"{resource.filename}: every mirror failed: " + "; ".join(failures))


def _fetch(url: str, dest: Path, resource: Resource, timeout: float, progress: Progress | None) -> None:
    """Download `url` to a temp file next to `dest`, verify it, fsync, then rename it to `dest`."""
    log.info("downloading %s (%.1f MB) → %s", url, resource.size / 1e6, dest)
    start = time.monotonic()
    fd, temp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    temp = Path(temp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            digest, received = _stream(url, out, resource, timeout, progress)
            if digest != resource.sha256:
                raise DataError(
                    f"{url}: checksum mismatch for {resource.filename}: expected sha256 {resource.sha256} "
                    f"({resource.size} bytes), received sha256 {digest} ({received} bytes)"
                )
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, dest)
    except BaseException as error:
        temp.unlink(missing_ok=True)  # also on Ctrl-C: no half file is left behind
        if isinstance(error, OSError):  # network errors are DataErrors by now, so this is the disk (full, ...)
            raise DataError(f"{dest}: cannot write the download ({error.strerror or error})") from None
        raise
    _fsync_folder(dest.parent)
    log.info("%s: %d bytes in %.1f s, checksum verified", dest, received, time.monotonic() - start)


def _stream(url: str, out: BinaryIO, resource: Resource, timeout: float, progress: Progress | None) -> tuple[str, int]:
    """Copy the body of `url` into `out`, reading at most resource.size + 1 bytes; (sha256 hex, bytes received)."""
    request = urllib.request.Request(url, headers={"User-Agent": "convscope"})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        raise DataError(f"{url}: HTTP error {error.code} {error.reason}") from None
    except urllib.error.URLError as error:
        raise DataError(f"{url}: cannot connect ({error.reason})") from None
    except (TimeoutError, OSError, http.client.HTTPException) as error:
        raise DataError(f"{url}: no usable answer within {timeout} s ({error or type(error).__name__})") from None
    digest, received = hashlib.sha256(), 0
    with response:
        while True:
            try:
                # One byte past the expected size is enough to tell a too-long file without reading all of it.
                chunk = response.read(min(CHUNK, resource.size + 1 - received))
            except (TimeoutError, OSError, http.client.HTTPException) as error:
                raise DataError(
                    f"{url}: download broke off after {received} of {resource.size} bytes "
                    f"({error or type(error).__name__})"
                ) from None
            if not chunk:
                break
            received += len(chunk)
            if received > resource.size:
                raise DataError(
                    f"{url}: checksum cannot match for {resource.filename}: expected {resource.size} bytes "
                    f"(sha256 {resource.sha256}), received more"
                )
            digest.update(chunk)
            out.write(chunk)
            if progress is not None:
                progress(resource.filename, received, resource.size)
    return digest.hexdigest(), received


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable (POSIX); some systems cannot open folders, which is harmless there."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
