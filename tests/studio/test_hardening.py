"""The studio's bounds, one test each: every number a route takes at its bound and past it (422 naming the field and
its range), the JSON body cap (413), pictures and runs that link outside their folder (404, hidden), uploads over
40 megapixels refused from their header, --max-trainings (429), --data-root (403), the Host header of an IPv6
loopback, the work queue dropping requests whose client has gone, and viewers that never write into a run folder."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import struct
import subprocess
import sys
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from convscope.studio import jobs as studio_jobs
from convscope.studio.app import create_app
from convscope.studio.work import ClientGone, Work

HEADERS = {"x-convscope-studio": "1"}


@pytest.fixture(scope="module")
def runs(studio_runs, tmp_path_factory) -> Path:
    """A copy of the session's runs (shades, boxes) that the tests of this file may change."""
    copy = tmp_path_factory.mktemp("hardening") / "runs"
    for name in ("shades", "boxes"):
        shutil.copytree(studio_runs / name, copy / name, ignore=shutil.ignore_patterns(".lock"))
    return copy


@pytest.fixture(scope="module")
def client(runs):
    with TestClient(create_app(runs), base_url="http://127.0.0.1", headers=HEADERS) as test_client:
        yield test_client


def explain(client, **fields):
    return client.post("/api/explain", json={"sample": "camera", **fields})


@pytest.mark.parametrize(
    ("fields", "at_bound"),
    [
        ({"size": 64}, True),
        ({"size": 65}, False),
        ({"size": 3}, False),
        ({"stride": 7}, True),
        ({"stride": 8}, False),
        ({"kind": "max", "window": 7}, True),
        ({"kind": "max", "window": 8}, False),
        ({"padding": 7}, True),
        ({"padding": "7"}, True),
        ({"padding": 8}, False),
        ({"padding": "2000"}, False),
        ({"padding": -1}, False),
        ({"row": 63, "column": 63}, True),
        ({"row": 64}, False),
        ({"column": -1}, False),
    ],
)
def test_each_explainer_number_is_taken_at_its_bound_and_refused_past_it(client, fields, at_bound):
    answer = explain(client, **fields)
    if at_bound:
        assert answer.status_code == 200, answer.text
        return
    name = next(k for k in fields if k != "kind")
    assert answer.status_code == 422
    detail = answer.json()["detail"]
    assert detail.startswith(f"{name} must be an integer from ") and "\n" not in detail
    assert {"size": "4 to 64", "stride": "1 to 7", "window": "1 to 7", "padding": "0 to 7", "row": "0 to 63",
            "column": "0 to 63"}[name] in detail  # fmt: skip


def test_the_explainer_at_its_largest_takes_milliseconds_and_a_filter_is_at_most_7x7(client):
    kernel7 = [[1.0] * 7 for _ in range(7)]
    start = time.perf_counter()
    answer = explain(client, size=64, kernel=kernel7, stride=1, padding=7, row=63, column=63)
    assert answer.status_code == 200 and answer.json()["output_shape"] == [72, 72]
    assert time.perf_counter() - start < 5
    too_big = explain(client, kernel=[[1.0] * 8 for _ in range(8)])
    assert too_big.status_code == 422 and "kernel" in too_big.json()["detail"]


def test_the_numbers_of_try_it_and_train_are_bounded(client):
    at = client.post("/api/runs/shades/predict", data={"sample": "camera", "top_k": "100"})
    assert at.status_code == 200 and len(at.json()["top"]) == 2
    past = client.post("/api/runs/shades/predict", data={"sample": "camera", "top_k": "101"})
    assert past.status_code == 422 and past.json()["detail"].startswith("top_k must be an integer from 1 to 100")
    token = client.post("/api/runs/boxes/predict", data={"sample": "camera"}).json()["image"]
    assert client.get(f"/api/runs/boxes/detections?image={token}&min_score=1").status_code == 200
    past = client.get(f"/api/runs/boxes/detections?image={token}&min_score=1.5")
    assert past.status_code == 422 and past.json()["detail"].startswith("min_score must be a number from 0 to 1")
    layer = client.get(f"/api/runs/shades/featuremaps?image={token}&layer=conv9")
    assert layer.status_code == 422 and layer.json()["detail"].startswith("layer must be one of conv1, ")
    too_many = client.post("/api/jobs", data={"model": "lenet5", "data": "mnist", "epochs": "1001"})
    assert too_many.status_code == 422 and "epochs must be an integer from 1 to 1000" in too_many.json()["detail"]
    at = client.post("/api/jobs", data={"model": "lenet5", "data": "/no/such/folder", "epochs": "1000"})
    assert at.status_code == 400 and at.json()["detail"].startswith("data must be ")  # 1000 epochs passed


def test_a_json_body_over_64_kib_is_refused_with_or_without_its_length(client):
    big = b'{"sample": "camera", "kernel": [[' + b"0.0, " * 14000 + b"0.0]]}"
    answer = client.post("/api/explain", content=big, headers={"content-type": "application/json"})
    assert answer.status_code == 413 and answer.json() == {"detail": "the request body is larger than 64 KiB"}
    chunks = (big[i : i + 4096] for i in range(0, len(big), 4096))
    answer = client.post("/api/explain", content=chunks, headers={"content-type": "application/json"})
    assert answer.status_code == 413 and answer.json() == {"detail": "the request body is larger than 64 KiB"}


def png_header(width: int, height: int) -> bytes:
    """A PNG whose header says width×height, with one row of data: a reader that decodes it finds it truncated."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 65)) + chunk(b"IEND", b"")


def test_an_upload_over_40_megapixels_is_refused_from_its_header(client):
    kept = set(client.app.state.uploads.folder.iterdir())
    over = client.post("/api/runs/shades/predict", files={"image": ("big.png", png_header(8000, 6000))})
    assert over.status_code == 413
    assert over.json()["detail"] == (
        "the image is 8000×6000 pixels (48.0 megapixels): the studio takes images of up to 40 megapixels"
    )
    at = client.post("/api/runs/shades/predict", files={"image": ("at.png", png_header(8000, 5000))})
    assert at.status_code == 400 and at.json()["detail"].startswith("the upload is not an image convscope reads")
    assert set(client.app.state.uploads.folder.iterdir()) == kept  # refused uploads are not kept


@pytest.fixture
def linked_runs(runs, tmp_path) -> Path:
    """A runs folder with 'leaky' (curves.png links to /etc/shadow, or to a secret outside when it is missing),
    'inward' (confusion.png links to a file inside its own folder) and 'piped' (curves.png is a named pipe)."""
    folder = tmp_path / "runs"
    secret = Path("/etc/shadow") if Path("/etc/shadow").exists() else tmp_path / "secret.txt"
    if not secret.exists():
        secret.write_text("root:secret\n")
    for name in ("leaky", "inward", "piped"):
        shutil.copytree(runs / "shades", folder / name)
    (folder / "leaky" / "curves.png").unlink()
    (folder / "leaky" / "curves.png").symlink_to(secret)
    (folder / "inward" / "confusion.png").rename(folder / "inward" / "saved.png")
    (folder / "inward" / "confusion.png").symlink_to(folder / "inward" / "saved.png")
    (folder / "piped" / "curves.png").unlink()
    os.mkfifo(folder / "piped" / "curves.png")
    return folder


def test_a_picture_or_run_file_that_links_outside_its_run_is_never_served(linked_runs):
    with TestClient(create_app(linked_runs), base_url="http://127.0.0.1", headers=HEADERS) as client:
        for url in ("/api/runs/leaky/pictures/curves.png", "/api/runs/leaky", "/runs/leaky"):
            answer = client.get(url)
            assert answer.status_code == 404 and "root:" not in answer.text
        listed = [run["name"] for run in client.get("/api/runs").json()]
        assert "leaky" not in listed and "inward" in listed
        inward = client.get("/api/runs/inward/pictures/confusion.png")
        assert inward.status_code == 200 and inward.content == (linked_runs / "inward" / "saved.png").read_bytes()
        piped = client.get("/api/runs/piped/pictures/curves.png")  # answered at once: a pipe is not read
        assert piped.status_code == 404


def test_trainings_beyond_max_trainings_get_429_and_data_outside_the_roots_403(runs, tmp_path, monkeypatch):
    started, popen = [], subprocess.Popen

    def sleeper(command, **kwargs):  # the training's process: a sleeper, which Ctrl-C (SIGINT) ends at once
        started.append(command)
        return popen([sys.executable, "-c", "import time; time.sleep(60)"], **kwargs)

    monkeypatch.setattr(studio_jobs.subprocess, "Popen", sleeper)
    root = tmp_path / "datasets"
    (root / "digits").mkdir(parents=True)
    (tmp_path / "private").mkdir()
    (root / "sneaky").symlink_to(tmp_path / "private")
    app = create_app(runs, max_trainings=1, data_roots=[runs, root])
    with TestClient(app, base_url="http://127.0.0.1", headers=HEADERS) as client:
        for data in (str(tmp_path / "private"), str(root / "sneaky"), "/etc"):
            outside = client.post("/api/jobs", data={"model": "lenet5", "data": data})
            detail = outside.json()["detail"]
            assert outside.status_code == 403 and f"data roots: {runs}, {root}" in detail, detail
        first = client.post("/api/jobs", data={"model": "lenet5", "data": str(root / "digits")})
        assert first.status_code == 200 and first.json()["state"] == "running"
        second = client.post("/api/jobs", data={"model": "lenet5", "data": "mnist"})
        assert second.status_code == 429 and "--max-trainings 1" in second.json()["detail"]
        assert len(started) == 1
        client.post(f"/api/jobs/{first.json()['name']}/stop")
        app.state.jobs._jobs[first.json()["name"]].process.wait(timeout=10)
        assert client.post("/api/jobs", data={"model": "lenet5", "data": "mnist"}).status_code == 200
    with TestClient(create_app(runs, max_trainings=0), base_url="http://127.0.0.1", headers=HEADERS) as client:
        assert client.post("/api/jobs", data={"model": "lenet5", "data": "mnist"}).status_code == 429


@pytest.mark.parametrize(
    ("host", "status"),
    [("[::1]:8000", 200), ("[::1]", 200), ("localhost:1", 200), ("[::2]:8000", 400), ("evil.example", 400),
     ("127.0.0.1.evil.example", 400), ("", 400)],
)  # fmt: skip
def test_the_host_check_reads_ipv6_literals(client, host, status):
    assert client.get("/api/samples", headers={"host": host}).status_code == status


class Request:
    """What Work.run asks of starlette's Request."""

    def __init__(self, gone: bool) -> None:
        self.gone = gone

    async def is_disconnected(self) -> bool:
        return self.gone


def test_the_work_queue_drops_a_waiting_request_whose_client_has_gone():
    work = Work(workers=1)
    release, ran = threading.Event(), []
    busy = work.submit(release.wait, 30)  # the one worker is busy

    async def main():
        gone = asyncio.create_task(work.run(Request(gone=True), ran.append, "gone"))
        kept = asyncio.create_task(work.run(Request(gone=False), lambda: ran.append("kept") or 42))
        with pytest.raises(ClientGone):
            await gone
        release.set()
        return await kept

    try:
        # In a thread of its own: the browser tests' Playwright (sync API) keeps an event loop running in this one
        with ThreadPoolExecutor(1) as thread:
            assert thread.submit(asyncio.run, main()).result(timeout=30) == 42
        assert busy.result(timeout=5) is True and ran == ["kept"] and work.dropped == 1
    finally:
        release.set()
        work.close()


def test_a_stopping_studio_waits_for_the_piece_a_worker_is_running_and_no_longer():
    work = Work(workers=1)
    release = threading.Event()
    started = work.submit(lambda: release.wait(30) and "done")
    deadline = time.monotonic() + 10
    while not started.running() and time.monotonic() < deadline:  # the worker has taken it
        time.sleep(0.01)
    waiting = work.submit(lambda: "never run")
    work.close()  # what waits is cancelled; the running piece is not interrupted
    assert waiting.cancelled() and not work.join(0.2)  # still running: join says so after its bound
    release.set()
    assert work.join(5) and started.result(timeout=1) == "done"


def files_of(folder: Path) -> dict[str, tuple[int, str]]:
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(folder.rglob("*")) if p.is_file()}  # fmt: skip


def test_viewers_never_write_into_a_run_folder(runs, tmp_path):
    """Without its saved evaluation and confusion.png, a run page says how to make them instead of making them."""
    folder = tmp_path / "runs"
    shutil.copytree(runs / "shades", folder / "shades")
    (folder / "shades" / "evaluation.json").unlink()
    (folder / "shades" / "confusion.png").unlink()
    before = files_of(folder)
    with TestClient(create_app(folder), base_url="http://127.0.0.1", headers=HEADERS) as client:
        evaluation = client.get("/api/runs/shades/evaluation").json()
        assert evaluation["per_class"] == []
        assert f"convscope evaluate {folder / 'shades'} makes one" in evaluation["note"]
        pages = ("/", "/runs/shades", "/runs/shades/try", "/api/runs", "/api/runs/shades", "/api/runs/shades/metrics")
        for url in (*pages, "/api/runs/shades/pictures/curves.png", "/api/runs/shades/filters"):
            assert client.get(url).status_code == 200, url
        token = client.post("/api/runs/shades/predict", data={"sample": "coffee"}).json()["image"]
        for url in (f"/api/runs/shades/gradcam?image={token}", f"/api/runs/shades/featuremaps?image={token}"):
            assert client.get(url).status_code == 200, url
        assert client.get("/api/runs/shades/pictures/confusion.png").status_code == 404
    assert files_of(folder) == before
