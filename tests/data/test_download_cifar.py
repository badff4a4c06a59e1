"""`convscope data get cifar10|cifar100` against a loopback HTTP server only: nothing is fetched from outside.

The server serves a small archive made here in the real layout (a few images per batch file in the binary format),
and the built-in checksums are patched to match it; the real checksums are checked for their form and sources only.
"""

import fcntl
import hashlib
import http.server
import io
import logging
import re
import tarfile
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from convscope import DataError
from convscope.data.archive import extract_members
from convscope.data.cifar import LAYOUTS, load_cifar
from convscope.data.download import SOURCES, Resource, Source, download_dataset
from convscope.data.load import load_dataset

TIMEOUT = 10  # seconds; loopback answers in milliseconds, this only keeps a broken test from hanging
NAMES10 = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
ARCHIVE = {10: "cifar-10-binary.tar.gz", 100: "cifar-100-binary.tar.gz"}


def batch(n: int, seed: int, label_bytes: int) -> tuple[bytes, np.ndarray, np.ndarray]:
    """n records in the binary format: label byte(s), then the R, G, B planes; (bytes, N×32×32×3 images, labels)."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10 if label_bytes == 1 else 20, (n, label_bytes), dtype=np.uint8)
    if label_bytes == 2:
        labels[:, 1] = rng.integers(0, 100, n)
    data = b"".join(labels[i].tobytes() + images[i].transpose(2, 0, 1).tobytes() for i in range(n))
    return data, images, labels[:, -1].astype(np.int64)


def files_of(which: int, per_batch: int) -> dict[str, bytes]:
    """The expected members of the archive, by their paths inside it."""
    layout = LAYOUTS[which]
    out = {}
    for i, name in enumerate((*layout.train, layout.test)):
        out[f"{layout.subfolder}/{name}"] = batch(per_batch, seed=i, label_bytes=layout.label_bytes)[0]
    if which == 10:
        out[f"{layout.subfolder}/batches.meta.txt"] = ("\n".join(NAMES10) + "\n\n").encode()
    else:
        out[f"{layout.subfolder}/fine_label_names.txt"] = "".join(f"fine{k}\n" for k in range(100)).encode()
        out[f"{layout.subfolder}/coarse_label_names.txt"] = "".join(f"coarse{k}\n" for k in range(20)).encode()
    return out


def tar_gz(files: dict[str, bytes], *, folder: str | None = None, links: dict[str, str] | None = None) -> bytes:
    """A .tar.gz of `files` (path → bytes), after a folder entry when `folder` is given, plus symlinks `links`."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        if folder:
            info = tarfile.TarInfo(folder)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    return buffer.getvalue()


def cifar_archive(which: int = 10, per_batch: int = 3) -> bytes:
    """The fake official archive: the folder entry, the expected files and a readme.html (as the real one has)."""
    layout = LAYOUTS[which]
    files = files_of(which, per_batch) | {f"{layout.subfolder}/readme.html": b"<html></html>"}
    return tar_gz(files, folder=layout.subfolder)


class Server:
    """Serves `blobs` (name → bytes) on loopback with HTTP Range ("bytes=N-") support; records (path, Range)."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self.requests: list[tuple[str, str | None]] = []
        self.ignore_range = False  # answer 200 with the whole file, as a server without Range support does
        self.cut_after: int | None = None  # the next answer stops after this many body bytes (then closes)
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                asked = self.headers.get("Range")
                server.requests.append((self.path, asked))
                blob = server.blobs.get(self.path.lstrip("/"))
                if blob is None:
                    self.send_error(404, "File not found")
                    return
                start = 0
                if asked and not server.ignore_range:
                    start = int(re.fullmatch(r"bytes=(\d+)-", asked)[1])
                    if start >= len(blob):
                        self.send_error(416, "Range Not Satisfiable")
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(blob) - 1}/{len(blob)}")
                else:
                    self.send_response(200)
                body = blob[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                cut, server.cut_after = server.cut_after, None
                self.wfile.write(body if cut is None else body[:cut])

            def log_message(self, format, *args):  # keep the test output clean
                pass

        self.http = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.http.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        self.base = f"http://127.0.0.1:{self.http.server_address[1]}/"


@pytest.fixture
def server():
    s = Server()
    yield s
    s.http.shutdown()
    s.http.server_close()
    s.thread.join(timeout=TIMEOUT)


def serve_as_official(monkeypatch, server: Server, blob: bytes, which: int = 10, **wrong) -> Resource:
    """Serve `blob` as the archive and make the built-in checksums (or `wrong` ones) those of `blob`."""
    name = f"cifar{which}"
    server.blobs[ARCHIVE[which]] = blob
    resource = Resource(ARCHIVE[which], len(blob), hashlib.sha256(blob).hexdigest(), md5=hashlib.md5(blob).hexdigest())
    resource = replace(resource, **wrong)
    monkeypatch.setitem(SOURCES, name, Source((server.base,), (resource,), SOURCES[name].members))
    return resource


def everything(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


def test_the_built_in_sources_are_the_binary_archives_with_their_published_checksums():
    for which in (10, 100):
        layout, source = LAYOUTS[which], SOURCES[f"cifar{which}"]
        (resource,) = source.files
        assert source.mirrors[0] + resource.filename == layout.archive
        assert re.fullmatch(r"[0-9a-f]{64}", resource.sha256) and re.fullmatch(r"[0-9a-f]{32}", resource.md5)
        expected = {f"{layout.subfolder}/{name}" for name in (*layout.train, layout.test, layout.names_file)}
        assert expected <= set(source.members)
    # the published MD5s of the binary archives; the python (pickle) archives' are c58f30… and eb9058…
    assert SOURCES["cifar10"].files[0].md5 == "c32a1d4ab5d03f1284b67883e8d87530"
    assert SOURCES["cifar100"].files[0].md5 == "03b5dce01913d631647c71ecec9e9cb8"


@pytest.mark.parametrize("which", [10, 100])
def test_downloads_verifies_extracts_and_loads(which, server, monkeypatch, tmp_path, caplog):
    blob = cifar_archive(which, per_batch=3)
    serve_as_official(monkeypatch, server, blob, which)
    seen = []
    with caplog.at_level(logging.INFO, logger="convscope.data"):
        dest = download_dataset(f"cifar{which}", tmp_path / "c", timeout=TIMEOUT, progress=lambda *a: seen.append(a))
    assert dest == tmp_path / "c" and server.requests == [(f"/{ARCHIVE[which]}", None)]
    assert (dest / ARCHIVE[which]).read_bytes() == blob  # kept: a later run verifies it instead of downloading
    assert seen[-1] == (ARCHIVE[which], len(blob), len(blob))
    layout = LAYOUTS[which]
    extracted = sorted(str(p.relative_to(dest)) for p in (dest / layout.subfolder).iterdir())
    assert extracted == sorted(SOURCES[f"cifar{which}"].members)  # no readme.html, no temp files
    assert not list(dest.glob(".*"))  # no .part left
    assert "checksum verified" in caplog.text and "extracted" in caplog.text
    data = load_cifar(dest, which)
    n_train = 3 * len(layout.train)
    assert data.train.images.shape == (n_train, 32, 32, 3) and data.test.images.shape == (3, 32, 32, 3)
    _, images, labels = batch(3, seed=len(layout.train), label_bytes=layout.label_bytes)
    np.testing.assert_array_equal(data.test.images, images)
    np.testing.assert_array_equal(data.test.labels, labels)


def test_the_default_folder_is_where_train_looks(server, monkeypatch, tmp_path):
    monkeypatch.setenv("CONVSCOPE_DATA_HOME", str(tmp_path / "home"))
    with pytest.raises(DataError, match=re.escape("download it with `convscope data get cifar10`")):
        load_dataset("cifar10", None, (32, 32, 3), seed=0)
    serve_as_official(monkeypatch, server, cifar_archive(10))
    assert download_dataset("cifar10", timeout=TIMEOUT) == tmp_path / "home" / "cifar10"
    assert (tmp_path / "home" / "cifar10" / "cifar-10-batches-bin" / "test_batch.bin").is_file()
    data = load_dataset("cifar10", None, (32, 32, 3), seed=0)
    assert data.name == "cifar10" and data.classes == tuple(NAMES10) and len(data.train) == 15


def test_mnist_has_no_default_folder(tmp_path):
    with pytest.raises(DataError, match=r"mnist has no default folder \(only cifar10, cifar100 do\): .*--to DIR"):
        download_dataset("mnist")


def test_a_verified_archive_is_not_downloaded_again(server, monkeypatch, tmp_path, caplog):
    serve_as_official(monkeypatch, server, cifar_archive(10))
    download_dataset("cifar10", tmp_path, timeout=TIMEOUT)
    (tmp_path / "cifar-10-batches-bin" / "data_batch_2.bin").unlink()
    server.requests.clear()
    with caplog.at_level(logging.INFO, logger="convscope.data.download"):
        download_dataset("cifar10", tmp_path, timeout=TIMEOUT)
    assert server.requests == [] and "already there, checksum verified" in caplog.text
    assert len(load_cifar(tmp_path).train) == 15  # extracted again from the kept archive


def test_a_partial_download_is_continued_with_a_range_request(server, monkeypatch, tmp_path, caplog):
    blob = cifar_archive(10)
    serve_as_official(monkeypatch, server, blob)
    (tmp_path / ".cifar-10-binary.tar.gz.part").write_bytes(blob[:1000])
    with caplog.at_level(logging.INFO, logger="convscope.data.download"):
        download_dataset("cifar10", tmp_path, timeout=TIMEOUT)
    assert server.requests == [("/cifar-10-binary.tar.gz", "bytes=1000-")]
    assert "continuing from byte 1000" in caplog.text
    assert (tmp_path / "cifar-10-binary.tar.gz").read_bytes() == blob and len(load_cifar(tmp_path).test) == 3
    assert not (tmp_path / ".cifar-10-binary.tar.gz.part").exists()


def test_a_broken_transfer_is_kept_and_the_next_run_continues_it(server, monkeypatch, tmp_path):
    blob = cifar_archive(10)
    serve_as_official(monkeypatch, server, blob)
    server.cut_after = 5000
    with pytest.raises(DataError, match=rf"download broke off after 5000 of {len(blob)} bytes"):
        download_dataset("cifar10", tmp_path, timeout=TIMEOUT)
    assert everything(tmp_path) == [".cifar-10-binary.tar.gz.part"]  # nothing under a final name
    assert (tmp_path / ".cifar-10-binary.tar.gz.part").read_bytes() == blob[:5000]
    download_dataset("cifar10", tmp_path, timeout=TIMEOUT)
    assert server.requests[-1] == ("/cifar-10-binary.tar.gz", "bytes=5000-")
    assert (tmp_path / "cifar-10-binary.tar.gz").read_bytes() == blob and len(load_cifar(tmp_path).train) == 15


def test_ctrl_c_keeps_the_bytes_so_far(server, monkeypatch, tmp_path):
    from convscope.data import download

    blob = cifar_archive(10)
    serve_as_official(monkeypatch, server, blob)
    monkeypatch.setattr(download, "CHUNK", 4096)  # bytes per read: several reads for the small archive

    def interrupt(name, done, total):
        if done >= 8192:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        download_dataset("cifar10", tmp_path, timeout=TIMEOUT, progress=interrupt)
    assert (tmp_path / ".cifar-10-binary.tar.gz.part").read_bytes() == blob[:8192]
    download_dataset("cifar10", tmp_path, timeout=TIMEOUT)
    assert server.requests[-1] == ("/cifar-10-binary.tar.gz", "bytes=8192-")
    assert (tmp_path / "cifar-10-binary.tar.gz").read_bytes() == blob


def test_a_server_without_range_support_sends_it_all_again(server, monkeypatch, tmp_path, caplog):
    blob = cifar_archive(10)
    serve_as_official(monkeypatch, server, blob)
    server.ignore_range = True
    (tmp_path / ".cifar-10-binary.tar.gz.part").write_bytes(blob[:1000])
    with caplog.at_level(logging.INFO, logger="convscope.data.download"):
        download_dataset("cifar10", tmp_path, timeout=TIMEOUT)
    assert "starting over" in caplog.text and (tmp_path / "cifar-10-binary.tar.gz").read_bytes() == blob


@pytest.mark.parametrize("kind", ["sha256", "md5"])
def test_a_wrong_checksum_is_refused_and_nothing_is_left(kind, server, monkeypatch, tmp_path):
    blob = cifar_archive(10)
    expected = "0" * (64 if kind == "sha256" else 32)
    serve_as_official(monkeypatch, server, blob, **{kind: expected})
    (tmp_path / "dest").mkdir()
    (tmp_path / "dest" / ".cifar-10-binary.tar.gz.part").write_bytes(blob[:1000])  # continued, then thrown away
    received = getattr(hashlib, kind)(blob).hexdigest()
    message = (
        f"{server.base}cifar-10-binary.tar.gz: checksum mismatch for cifar-10-binary.tar.gz: expected {kind} "
        f"{expected} ({len(blob)} bytes), received {kind} {received} ({len(blob)} bytes)"
    )
    with pytest.raises(DataError, match=re.escape(message)):
        download_dataset("cifar10", tmp_path / "dest", timeout=TIMEOUT)
    assert everything(tmp_path / "dest") == []


def test_a_second_download_into_the_same_folder_waits_its_turn(server, monkeypatch, tmp_path):
    serve_as_official(monkeypatch, server, cifar_archive(10))
    with (tmp_path / ".cifar-10-binary.tar.gz.part").open("wb") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        held.write(b"the other run's bytes")
        held.flush()
        with pytest.raises(DataError, match=r"another download into this folder is running"):
            download_dataset("cifar10", tmp_path, timeout=TIMEOUT)
    assert server.requests == []
    assert (tmp_path / ".cifar-10-binary.tar.gz.part").read_bytes() == b"the other run's bytes"  # left alone


@pytest.mark.parametrize(
    ("extra", "links", "message"),
    [
        ({"../evil": b"x"}, {}, "member '../evil' has an unsafe path (absolute or with '..')"),
        ({"cifar-10-batches-bin/../../evil": b"x"}, {}, "member 'cifar-10-batches-bin/../../evil' has an unsafe"),
        ({"/tmp/evil": b"x"}, {}, "member '/tmp/evil' has an unsafe path"),
        (
            {},
            {"cifar-10-batches-bin/evil": "/etc/passwd"},
            "member 'cifar-10-batches-bin/evil' is a symbolic link to '/etc/passwd'; only regular",
        ),
    ],
)
def test_an_unsafe_archive_is_refused_before_anything_is_extracted(
    extra, links, message, server, monkeypatch, tmp_path
):
    blob = tar_gz(files_of(10, 2) | extra, links=links)
    serve_as_official(monkeypatch, server, blob)  # a verified checksum does not make a hostile archive safe
    dest = tmp_path / "a" / "b"
    with pytest.raises(DataError, match=re.escape(f"{dest / 'cifar-10-binary.tar.gz'}: {message}")):
        download_dataset("cifar10", dest, timeout=TIMEOUT)
    assert everything(dest) == ["cifar-10-binary.tar.gz"]  # the verified archive only: no folder, no temp files
    assert everything(tmp_path / "a") == ["b", "b/cifar-10-binary.tar.gz"]  # and no evil anywhere


def test_a_symlink_in_place_of_an_expected_file_is_refused(tmp_path):
    files = files_of(10, 2)
    del files["cifar-10-batches-bin/test_batch.bin"]
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(tar_gz(files, links={"cifar-10-batches-bin/test_batch.bin": "../../secret"}))
    with pytest.raises(DataError, match=re.escape("'cifar-10-batches-bin/test_batch.bin' is a symbolic link")):
        extract_members(archive, tmp_path / "out", SOURCES["cifar10"].members)
    assert not (tmp_path / "out").exists()  # the folders made for the temp files are gone too


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda blob: blob[: len(blob) // 2], r"damaged archive \("),
        (lambda blob: blob[:-8] + bytes(8), r"damaged archive \(CRC check failed"),  # the gzip trailer
        (lambda blob: b"not a gzip file at all", r"damaged archive \(Not a gzipped file"),
    ],
)
def test_a_damaged_archive_is_one_error_naming_it(damage, message, tmp_path):
    archive = tmp_path / "cifar-10-binary.tar.gz"
    archive.write_bytes(damage(cifar_archive(10)))
    out = tmp_path / "out"
    with pytest.raises(DataError, match=re.escape(str(archive)) + ": " + message) as caught:
        extract_members(archive, out, SOURCES["cifar10"].members)
    assert "\n" not in str(caught.value) and "nothing was extracted" in str(caught.value)
    assert [p for p in out.rglob("*") if p.is_file()] == []


def test_a_missing_member_is_named(tmp_path):
    files = files_of(10, 2)
    del files["cifar-10-batches-bin/data_batch_3.bin"]
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(tar_gz(files))
    with pytest.raises(DataError, match=re.escape("missing cifar-10-batches-bin/data_batch_3.bin (expected 7 files)")):
        extract_members(archive, tmp_path / "out", SOURCES["cifar10"].members)
    assert [p for p in (tmp_path / "out").rglob("*") if p.is_file()] == []


def test_the_cli_downloads_into_a_folder_and_says_how_to_train(server, monkeypatch, tmp_path, capsys):
    from convscope.cli import main

    blob = cifar_archive(100)
    server.blobs["cifar-100-binary.tar.gz"] = blob
    monkeypatch.setitem(
        SOURCES,
        "cifar100",
        replace(
            SOURCES["cifar100"],
            files=(Resource("cifar-100-binary.tar.gz", len(blob), hashlib.sha256(blob).hexdigest()),),
        ),
    )
    dest = tmp_path / "c100"
    assert main(["data", "get", "cifar100", "--to", str(dest), "--mirror", server.base]) == 0
    out = capsys.readouterr().out
    assert f"cifar100 is in {dest} (checksums verified); train on it with convscope train --data cifar100 " in out
    assert "--data-dir" in out and len(load_cifar(dest, 100).train) == 3
    assert main(["data", "get", "cifar100", "--to", str(tmp_path / "x"), "--mirror", server.base + "nope/"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nope/cifar-100-binary.tar.gz: HTTP error 404" in err


def test_data_get_then_train_without_data_dir(server, monkeypatch, tmp_path, capsys):
    from convscope.cli import main

    monkeypatch.setenv("CONVSCOPE_DATA_HOME", str(tmp_path / "home"))
    blob = cifar_archive(10, per_batch=8)
    server.blobs["cifar-10-binary.tar.gz"] = blob
    resource = Resource("cifar-10-binary.tar.gz", len(blob), hashlib.sha256(blob).hexdigest())
    monkeypatch.setitem(SOURCES, "cifar10", replace(SOURCES["cifar10"], files=(resource,)))
    assert main(["data", "get", "cifar10", "--mirror", server.base]) == 0
    out = capsys.readouterr().out
    assert "train on it with convscope train --data cifar10\n" in out.replace(" \n", "\n")
    argv = ["train", "--model", "cifar-3conv", "--data", "cifar10", "--epochs", "1", "--batch-size", "8"]
    assert main([*argv, "--threads", "1", "--out", str(tmp_path / "run")]) == 0
    assert "test accuracy" in capsys.readouterr().out
