"""Download MNIST or Fashion-MNIST (the four official `.gz` IDX files) or CIFAR-10/100 (the binary `.tar.gz`, then
extracted by data.archive), each file checked against a built-in SHA-256 (and the published MD5 where there is one).

Nothing reaches its final name before it is verified: every file is streamed into `.NAME.part` in the destination
folder, hashed on the way, fsynced and only then renamed over the final name (`os.replace`), so an interrupted or
tampered download never leaves a file that looks complete. A transfer that breaks off (network, Ctrl-C) keeps its
`.part` file, and the next run continues it with an HTTP Range request (or starts over where the server ignores
Range); a checksum mismatch deletes it. Files already there with the right checksum are kept. Only the standard
library is used (urllib); progress goes to `logging` and an optional callback, never to stdout.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from convscope.data.archive import extract_members, fsync_folder
from convscope.data.home import DEFAULT_IN_HOME, dataset_folder
from convscope.errors import DataError

log = logging.getLogger(__name__)

CHUNK = 1 << 20  # bytes per read: big enough to be fast, small enough to report progress


@dataclass(frozen=True)
class Resource:
    filename: str
    size: int  # bytes of the file as published
    sha256: str  # of the file as published
    md5: str | None = None  # as published, where that is the publisher's own checksum (checked as well)


@dataclass(frozen=True)
class Source:
    mirrors: tuple[str, ...]  # tried in order; each ends with '/'
    files: tuple[Resource, ...]
    members: tuple[str, ...] = ()  # files to extract from the one archive in `files` (paths inside it); () for none


def _cifar_members(folder: str, names: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(f"{folder}/{name}" for name in names)


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
    # CIFAR: the BINARY archives (data.cifar reads them; the python archives are pickles, never read, and have other
    # checksums: cifar-10-python.tar.gz md5 c58f30108f718f92721af3b95e74349a, the one torchvision checks). MD5: the
    # table of https://www.cs.toronto.edu/~kriz/cifar.html ("CIFAR-10 binary version (suitable for C programs)",
    # "CIFAR-100 binary version"). Size and SHA-256: tensorflow-datasets, tensorflow_datasets/url_checksums/cifar10.txt
    # and cifar100.txt, whose URLs are these binary archives.
    "cifar10": Source(
        mirrors=("https://www.cs.toronto.edu/~kriz/",),
        files=(
            Resource(
                "cifar-10-binary.tar.gz",
                170052171,
                "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd",
                md5="c32a1d4ab5d03f1284b67883e8d87530",
            ),
        ),
        members=_cifar_members(
            "cifar-10-batches-bin",
            (*(f"data_batch_{i}.bin" for i in range(1, 6)), "test_batch.bin", "batches.meta.txt"),
        ),
    ),
    "cifar100": Source(
        mirrors=("https://www.cs.toronto.edu/~kriz/",),
        files=(
            Resource(
                "cifar-100-binary.tar.gz",
                168513733,
                "58a81ae192c23a4be8b1804d68e518ed807d710a4eb253b1f2a199162a40d8ec",
                md5="03b5dce01913d631647c71ecec9e9cb8",
            ),
        ),
        members=_cifar_members(
            "cifar-100-binary", ("train.bin", "test.bin", "coarse_label_names.txt", "fine_label_names.txt")
        ),
    ),
}

Progress = Callable[[str, int, int], None]  # (file name, bytes so far, bytes in all)


def download_dataset(
    name: str,
    to: str | Path | None = None,
    base_url: str | None = None,
    timeout: float = 60,
    progress: Progress | None = None,
) -> Path:
    """Download dataset `name` ("fashion-mnist", "mnist", "cifar10" or "cifar100") into folder `to`; returns `to`.

    MNIST and Fashion-MNIST: the four `.gz` files; afterwards `load_idx_dataset(to, name)` reads the folder. CIFAR:
    the binary `.tar.gz` (kept, so a later run verifies it instead of downloading it again) and its extracted files
    in `to/cifar-10-batches-bin/` or `to/cifar-100-binary/`; afterwards `load_cifar(to, 10 or 100)` reads them.
    `to` None: the default folder (data.home.dataset_folder) of the datasets that have one (cifar10, cifar100),
    where `load_dataset(name, None)` reads. `base_url` replaces the built-in mirrors (a folder URL holding the files).
    `timeout` is in seconds without an answer from the server.
    """
    if name not in SOURCES:
        raise DataError(f"unknown dataset to download {name!r}: expected one of {', '.join(SOURCES)}")
    source = SOURCES[name]
    mirrors = (base_url.rstrip("/") + "/",) if base_url else source.mirrors
    if to is None:
        if name not in DEFAULT_IN_HOME:
            raise DataError(
                f"{name} has no default folder (only {', '.join(DEFAULT_IN_HOME)} do): say where to put it (--to DIR)"
            )
        to = dataset_folder(name)
    to = Path(to)
    try:
        to.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DataError(f"{to}: cannot create the download folder ({error.strerror or error})") from None
    for resource in source.files:
        _ensure(resource, to / resource.filename, mirrors, timeout, progress)
    if source.members:
        extract_members(to / source.files[0].filename, to, source.members)
    return to


def _ensure(
    resource: Resource, dest: Path, mirrors: tuple[str, ...], timeout: float, progress: Progress | None
) -> None:
    """Make `dest` the verified file: keep it if it already is, else fetch it from the first mirror that works."""
    if dest.is_file():
        found = _Digests()
        with dest.open("rb") as file:
            while chunk := file.read(CHUNK):
                found.update(chunk)
        wrong = found.mismatch(resource)
        if wrong is None:
            log.info("%s: already there, checksum verified; not downloading again", dest)
            return
        kind, expected, received = wrong
        log.warning("%s: %s %s is not the expected %s; downloading it again", dest, kind, received, expected)
    failures = []
    for mirror in mirrors:
        url = mirror + resource.filename
        try:
            _fetch(url, dest, resource, timeout, progress)
            return
        except DataError as error:
            if mirror != mirrors[-1]:  # the last failure is the error itself: said once
                log.warning("%s; trying the next mirror", error)
            failures.append(str(error))
    if len(failures) == 1:
        raise DataError(failures[0])
    raise DataError(f"{resource.filename}: every mirror failed: " + "; ".join(failures))


class _Broken(DataError):
    """The transfer stopped early (network, timeout, server error): the bytes so far are kept to continue later."""


class _Digests:
    """SHA-256 and MD5 of the bytes seen so far, and their count."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.sha256 = hashlib.sha256()
        self.md5 = hashlib.md5(usedforsecurity=False)  # only to compare with the published MD5
        self.size = 0

    def update(self, chunk: bytes) -> None:
        self.sha256.update(chunk)
        self.md5.update(chunk)
        self.size += len(chunk)

    def mismatch(self, resource: Resource) -> tuple[str, str, str] | None:
        """(checksum name, expected, received) of the first checksum that differs from `resource`'s, else None."""
        if self.sha256.hexdigest() != resource.sha256:
            return "sha256", resource.sha256, self.sha256.hexdigest()
        if resource.md5 is not None and self.md5.hexdigest() != resource.md5:
            return "md5", resource.md5, self.md5.hexdigest()
        return None


def _fetch(url: str, dest: Path, resource: Resource, timeout: float, progress: Progress | None) -> None:
    """Download `url` into `.NAME.part` next to `dest` (continuing what is there), verify, fsync, rename to `dest`."""
    part = dest.with_name(f".{dest.name}.part")
    start = time.monotonic()
    locked = False  # whether `part` is this run's to keep or delete (not another run's, still downloading)
    broken = False  # whether the transfer broke off: `part` holds right bytes, kept for the next run to continue
    try:
        fd = os.open(part, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o666)
        with os.fdopen(fd, "r+b") as out:
            _lock(out, part)
            locked = True
            seen = _read_partial(out, part, resource)
            log.info("downloading %s (%.1f MB) → %s", url, resource.size / 1e6, dest)
            try:
                _stream(url, out, resource, timeout, progress, seen)
            except _Broken:
                broken = True
                raise
            wrong = seen.mismatch(resource)
            if wrong is not None:
                kind, expected, received = wrong
                raise DataError(
                    f"{url}: checksum mismatch for {resource.filename}: expected {kind} {expected} "
                    f"({resource.size} bytes), received {kind} {received} ({seen.size} bytes)"
                )
            out.flush()
            os.fsync(out.fileno())
        os.replace(part, dest)
    except BaseException as error:
        stopped = broken or isinstance(error, KeyboardInterrupt)  # KeyboardInterrupt: Ctrl-C, or SIGTERM in the CLI
        if locked and stopped and _size(part) > 0:
            log.warning("%s: kept the %d bytes received; running again continues from there", part, _size(part))
        elif locked:  # a wrong file is no start for the next run
            part.unlink(missing_ok=True)
        if isinstance(error, OSError):  # network errors are DataErrors by now, so this is the disk (full, ...)
            raise DataError(f"{part}: cannot write the download ({error.strerror or error})") from None
        raise
    fsync_folder(dest.parent)
    log.info("%s: %d bytes in %.1f s, checksum verified", dest, seen.size, time.monotonic() - start)


def _lock(out: BinaryIO, part: Path) -> None:
    """One download per `.part` file at a time: a second run into the same folder stops instead of mixing bytes."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        return
    try:
        fcntl.flock(out.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise DataError(f"{part}: another download into this folder is running; wait for it to end") from None


def _read_partial(out: BinaryIO, part: Path, resource: Resource) -> _Digests:
    """Hash the bytes an earlier run left in `out` (kept when shorter than the file), leaving `out` at their end."""
    seen = _Digests()
    size = os.fstat(out.fileno()).st_size
    if 0 < size < resource.size:
        while chunk := out.read(CHUNK):
            seen.update(chunk)
        log.info("%s: %d of %d bytes already received; continuing", part, seen.size, resource.size)
    else:
        out.truncate(0)
    return seen


def _stream(
    url: str, out: BinaryIO, resource: Resource, timeout: float, progress: Progress | None, seen: _Digests
) -> None:
    """Append the body of `url` to `out` from byte seen.size on (HTTP Range), hashing it into `seen`; reads at most
    resource.size + 1 bytes in all. A server that ignores Range sends the whole file: `out` starts over then."""
    headers = {"User-Agent": "convscope"}
    if seen.size:
        headers["Range"] = f"bytes={seen.size}-"
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as error:
        kind = _Broken if error.code >= 500 else DataError  # a server error may pass; a 404 or 416 will not
        raise kind(f"{url}: HTTP error {error.code} {error.reason}") from None
    except urllib.error.URLError as error:
        raise _Broken(f"{url}: cannot connect ({error.reason})") from None
    except (TimeoutError, OSError, http.client.HTTPException) as error:
        raise _Broken(f"{url}: no usable answer within {timeout} s ({error or type(error).__name__})") from None
    with response:
        if seen.size:
            _continue_or_restart(url, response, out, seen)
        if progress is not None and seen.size:
            progress(resource.filename, seen.size, resource.size)
        while True:
            try:
                # One byte past the expected size is enough to tell a too-long file without reading all of it.
                chunk = response.read(min(CHUNK, resource.size + 1 - seen.size))
            except (TimeoutError, OSError, http.client.HTTPException) as error:
                raise _Broken(
                    f"{url}: download broke off after {seen.size} of {resource.size} bytes "
                    f"({error or type(error).__name__})"
                ) from None
            if not chunk:
                break
            if seen.size + len(chunk) > resource.size:
                raise DataError(
                    f"{url}: checksum cannot match for {resource.filename}: expected {resource.size} bytes "
                    f"(sha256 {resource.sha256}), received more"
                )
            out.write(chunk)
            seen.update(chunk)
            if progress is not None:
                progress(resource.filename, seen.size, resource.size)
    if seen.size < resource.size:
        raise _Broken(
            f"{url}: download broke off after {seen.size} of {resource.size} bytes (the connection closed early)"
        )


def _continue_or_restart(url: str, response: http.client.HTTPResponse, out: BinaryIO, seen: _Digests) -> None:
    """After a Range request: go on if the answer starts at byte seen.size; start over if it is the whole file."""
    content_range = response.headers.get("Content-Range", "")
    if response.status == 206 and content_range.startswith(f"bytes {seen.size}-"):
        log.info("%s: continuing from byte %d", url, seen.size)
        return
    if response.status == 206:
        raise DataError(f"{url}: asked for the bytes from {seen.size} on, received {content_range or 'no range'}")
    log.info("%s: the server sends the whole file again (no Range support); starting over", url)
    out.seek(0)
    out.truncate()
    seen.reset()


def _size(path: Path) -> int:
    try:
        return path.lstat().st_size
    except OSError:
        return 0
