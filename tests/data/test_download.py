"""download_dataset against a local HTTP server only: nothing is fetched from outside at test time.

The server serves the official Fashion-MNIST files, rebuilt byte for byte from the Debian package's copies (see
`official_folder`), so the built-in checksums are checked against the real data.
"""

import functools
import hashlib
import http.server
import logging
import re
import shutil
import socket
import struct
import threading
from pathlib import Path

import pytest

from convscope import DataError
from convscope.data.download import SOURCES, Source, download_dataset
from convscope.data.idx import load_idx_dataset

SYSTEM_FASHION = Path("/usr/share/datasets/fashion-mnist")
FILES = {resource.filename: resource for resource in SOURCES["fashion-mnist"].files}
# What the Fashion-MNIST README and torchvision publish for the four files.
PUBLISHED_MD5 = {
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}
# Debian's build ran strip-nondeterminism, which rewrote each 10-byte gzip header (file name dropped, mtime set to
# the build time) and left the deflate stream and trailer alone. The originals carried the FNAME flag, these mtimes
# (31 August 2017), XFL 0 and OS 3 (Unix); putting them back gives the published files exactly.
ORIGINAL_MTIME = {"train": 1504176606, "t10k": 1504176627}
TIMEOUT = 10  # seconds; loopback answers in milliseconds, this only keeps a broken test from hanging


def official_bytes(name: str) -> bytes:
    debian = (SYSTEM_FASHION / name).read_bytes()
    assert debian[:4] == b"\x1f\x8b\x08\x00", f"{name}: unexpected gzip header {debian[:10].hex()}"
    stem = name.removesuffix(".gz").encode()
    mtime = ORIGINAL_MTIME[name.split("-")[0]]
    return b"\x1f\x8b\x08\x08" + struct.pack("<I", mtime) + b"\x00\x03" + stem + b"\0" + debian[10:]


@pytest.fixture(scope="module")
def official_folder(tmp_path_factory):
    if not SYSTEM_FASHION.is_dir():
        pytest.skip(f"{SYSTEM_FASHION} missing: install the Debian package dataset-fashion-mnist to run this test")
    folder = tmp_path_factory.mktemp("official")
    for name in FILES:
        (folder / name).write_bytes(official_bytes(name))
    return folder


@pytest.fixture
def serve():
    """serve(folder) → (base URL, list of requested paths); every server is shut down after the test."""
    servers = []

    def start(folder: Path) -> tuple[str, list[str]]:
        requests: list[str] = []

        class Handler(http.server.SimpleHTTPRequestHandler):
            def do_GET(self):
                requests.append(self.path)
                super().do_GET()

            def log_message(self, format, *args):  # keep the test output clean
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(folder)))
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        servers.append((server, thread))
        return f"http://127.0.0.1:{server.server_address[1]}/", requests

    yield start
    for server, thread in servers:
        server.shutdown()
        server.server_close()
        thread.join(timeout=TIMEOUT)


def copy_official(official_folder: Path, to: Path, *names: str) -> Path:
    to.mkdir(exist_ok=True)
    for name in names or FILES:
        shutil.copyfile(official_folder / name, to / name)
    return to


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".part"))


def test_the_built_in_checksums_are_those_of_the_official_files(official_folder):
    for name, resource in FILES.items():
        data = (official_folder / name).read_bytes()
        assert hashlib.md5(data).hexdigest() == PUBLISHED_MD5[name]
        assert hashlib.sha256(data).hexdigest() == resource.sha256 and len(data) == resource.size


def test_downloads_verifies_and_the_folder_loads(official_folder, serve, tmp_path, caplog):
    base, requests = serve(official_folder)
    seen = []
    with caplog.at_level(logging.INFO, logger="convscope.data.download"):
        dest = download_dataset(
            "fashion-mnist",
            tmp_path / "new" / "dest",
            base_url=base,
            timeout=TIMEOUT,
            progress=lambda *a: seen.append(a),
        )
    assert dest == tmp_path / "new" / "dest"
    assert sorted(requests) == sorted(f"/{name}" for name in FILES)
    for name in FILES:
        assert (dest / name).read_bytes() == (official_folder / name).read_bytes()
    assert leftovers(dest) == []
    assert ("t10k-labels-idx1-ubyte.gz", 5148, 5148) in seen
    assert "checksum verified" in caplog.text
    data = load_idx_dataset(dest)
    assert len(data.train) == 60000 and len(data.test) == 10000 and data.train.labels[0] == 9


def test_verified_files_are_not_downloaded_again(official_folder, serve, tmp_path, caplog):
    base, requests = serve(official_folder)
    dest = copy_official(official_folder, tmp_path / "dest", "train-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte.gz")
    download_dataset("fashion-mnist", dest, base_url=base, timeout=TIMEOUT)
    assert sorted(requests) == ["/t10k-labels-idx1-ubyte.gz", "/train-labels-idx1-ubyte.gz"]
    requests.clear()
    with caplog.at_level(logging.INFO, logger="convscope.data.download"):
        download_dataset("fashion-mnist", dest, base_url=base, timeout=TIMEOUT)
    assert requests == []
    assert caplog.text.count("already there, checksum verified; not downloading again") == 4


def test_a_tampered_file_is_refused_and_nothing_is_left(official_folder, serve, tmp_path):
    served = copy_official(official_folder, tmp_path / "served")
    labels = served / "train-labels-idx1-ubyte.gz"
    tampered = bytearray(labels.read_bytes())
    tampered[100] ^= 0x01
    labels.write_bytes(bytes(tampered))
    base, _ = serve(served)
    dest = copy_official(official_folder, tmp_path / "dest", "train-images-idx3-ubyte.gz")  # skip the 26 MB file
    expected = FILES["train-labels-idx1-ubyte.gz"].sha256
    message = (
        f"{base}train-labels-idx1-ubyte.gz: checksum mismatch for train-labels-idx1-ubyte.gz: expected sha256 "
        f"{expected} (29515 bytes), received sha256 {hashlib.sha256(tampered).hexdigest()} (29515 bytes)"
    )
    with pytest.raises(DataError, match=re.escape(message)):
        download_dataset("fashion-mnist", dest, base_url=base, timeout=TIMEOUT)
    assert sorted(p.name for p in dest.iterdir()) == ["train-images-idx3-ubyte.gz"]  # no label file, no temp file


def test_a_too_long_file_is_refused(official_folder, serve, tmp_path):
    served = copy_official(official_folder, tmp_path / "served", "train-images-idx3-ubyte.gz")
    (served / "train-labels-idx1-ubyte.gz").write_bytes(
        (official_folder / "train-labels-idx1-ubyte.gz").read_bytes() + b"x"
    )
    base, _ = serve(served)
    dest = copy_official(official_folder, tmp_path / "dest", "train-images-idx3-ubyte.gz")
    with pytest.raises(DataError, match=r"checksum cannot match for train-labels-idx1-ubyte\.gz: expected 29515 bytes"):
        download_dataset("fashion-mnist", dest, base_url=base, timeout=TIMEOUT)
    assert leftovers(dest) == [] and not (dest / "train-labels-idx1-ubyte.gz").exists()


def test_a_wrong_file_at_the_destination_is_replaced(official_folder, serve, tmp_path, caplog):
    base, requests = serve(official_folder)
    dest = copy_official(official_folder, tmp_path / "dest", "train-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte.gz")
    (dest / "t10k-labels-idx1-ubyte.gz").write_bytes(b"an older, broken copy")
    (dest / "train-labels-idx1-ubyte.gz").write_bytes((SYSTEM_FASHION / "train-labels-idx1-ubyte.gz").read_bytes())
    with caplog.at_level(logging.WARNING, logger="convscope.data.download"):
        download_dataset("fashion-mnist", dest, base_url=base, timeout=TIMEOUT)
    assert sorted(requests) == ["/t10k-labels-idx1-ubyte.gz", "/train-labels-idx1-ubyte.gz"]
    assert (dest / "t10k-labels-idx1-ubyte.gz").read_bytes() == (
        official_folder / "t10k-labels-idx1-ubyte.gz"
    ).read_bytes()
    assert "is not the expected" in caplog.text and leftovers(dest) == []


def test_a_404_names_the_url(serve, tmp_path):
    (tmp_path / "empty").mkdir()
    base, _ = serve(tmp_path / "empty")
    dest = tmp_path / "dest"
    with pytest.raises(DataError, match=re.escape(f"{base}train-images-idx3-ubyte.gz: HTTP error 404 File not found")):
        download_dataset("fashion-mnist", dest, base_url=base, timeout=TIMEOUT)
    assert list(dest.iterdir()) == []


def test_the_next_mirror_is_tried(official_folder, serve, tmp_path, monkeypatch):
    (tmp_path / "empty").mkdir()
    bad, _ = serve(tmp_path / "empty")
    good, requests = serve(official_folder)
    monkeypatch.setitem(SOURCES, "fashion-mnist", Source(mirrors=(bad, good), files=SOURCES["fashion-mnist"].files))
    dest = copy_official(official_folder, tmp_path / "dest", "train-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte.gz")
    download_dataset("fashion-mnist", dest, timeout=TIMEOUT)
    assert sorted(requests) == ["/t10k-labels-idx1-ubyte.gz", "/train-labels-idx1-ubyte.gz"]
    monkeypatch.setitem(SOURCES, "fashion-mnist", Source(mirrors=(bad, bad), files=SOURCES["fashion-mnist"].files))
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz: every mirror failed: http://127.*404.*; http"):
        download_dataset("fashion-mnist", tmp_path / "other", timeout=TIMEOUT)


def test_a_refused_connection_names_the_url(tmp_path):
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there now
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    base = f"http://127.0.0.1:{port}/"
    with pytest.raises(DataError, match=re.escape(f"{base}train-images-idx3-ubyte.gz: cannot connect (")):
        download_dataset("mnist", tmp_path, base_url=base, timeout=TIMEOUT)


def test_a_silent_server_times_out(tmp_path):
    with socket.socket() as listener:  # accepts connections (backlog) but never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        base = f"http://127.0.0.1:{listener.getsockname()[1]}"
        with pytest.raises(
            DataError, match=re.escape(f"{base}/train-images-idx3-ubyte.gz: no usable answer within 0.3 s")
        ):
            download_dataset("fashion-mnist", tmp_path, base_url=base, timeout=0.3)
    assert list(tmp_path.iterdir()) == []


def test_unknown_names_are_refused(tmp_path):
    with pytest.raises(
        DataError,
        match=r"unknown dataset to download 'imagenet': expected one of fashion-mnist, mnist, cifar10, cifar100",
    ):
        download_dataset("imagenet", tmp_path)


def test_the_cli_downloads_from_a_mirror_and_says_where(official_folder, serve, tmp_path, capsys):
    from convscope.cli import main

    base, requests = serve(official_folder)
    assert main(["data", "get", "fashion-mnist", "--to", str(tmp_path / "fm"), "--mirror", base]) == 0
    assert len(requests) == 4
    out = capsys.readouterr().out
    assert f"fashion-mnist is in {tmp_path / 'fm'} (checksums verified)" in out
    assert main(["data", "get", "fashion-mnist", "--to", str(tmp_path / "fm2"), "--mirror", base + "missing/"]) == 2
    assert "404" in capsys.readouterr().err
