"""`convscope serve` as a user runs it: a real process on a free port of 127.0.0.1 and of ::1 (skipped where this
machine has no IPv6), answering its pages; stopped by Ctrl-C (SIGINT) or SIGTERM with uploads in flight, it ends
within seconds, prints no traceback and leaves no uploads behind."""

from __future__ import annotations

import io
import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import numpy as np
import pytest
from PIL import Image


def ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def photo() -> bytes:
    """A 3000×3000 JPEG: long enough to decode that a Ctrl-C finds it in flight."""
    ramp = np.add.outer(np.arange(3000), np.arange(3000)).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(np.stack([ramp, ramp.T, 255 - ramp], -1)).save(out, "JPEG", quality=80)
    return out.getvalue()


def first_line(process: subprocess.Popen, timeout: float = 60) -> str:
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    assert selector.select(timeout), "the studio said nothing in time"
    return process.stdout.readline()


@pytest.mark.parametrize(
    ("host", "stop"),
    [
        ("127.0.0.1", signal.SIGINT),
        pytest.param("::1", signal.SIGTERM, marks=pytest.mark.skipif(not ipv6_loopback(), reason="no IPv6 loopback")),
    ],
)
def test_the_studio_serves_its_host_and_stops_cleanly_with_uploads_in_flight(studio_runs, tmp_path, host, stop):
    temp = tmp_path / "tmp"
    temp.mkdir()
    command = [sys.executable, "-m", "convscope", "serve", "--runs", str(studio_runs), "--host", host, "--port", "0"]
    env = {**os.environ, "TMPDIR": str(temp)}
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = first_line(server)
        url = line.split()[2].rstrip("/")
        assert url.startswith("http://[::1]:" if host == "::1" else "http://127.0.0.1:"), line
        runs = httpx.get(f"{url}/api/runs", timeout=30)  # the Host header is [::1]:PORT for ::1
        assert runs.status_code == 200 and "shades" in [run["name"] for run in runs.json()]
        assert httpx.get(f"{url}/", timeout=30).status_code == 200
        assert [p.name for p in temp.iterdir()][0].startswith("convscope-studio-")  # the uploads' folder
        image, answers = photo(), []

        def upload():
            try:
                answer = httpx.post(f"{url}/api/runs/shades/predict", files={"image": ("p.jpg", image)},
                                    headers={"x-convscope-studio": "1"}, timeout=30)  # fmt: skip
                answers.append(answer.status_code)
            except httpx.HTTPError:  # the connection closed by the stopping server
                answers.append("closed")

        clients = [threading.Thread(target=upload) for _ in range(4)]
        for client in clients:
            client.start()
        time.sleep(0.6)  # the first upload is decoding, the others wait for the workers
        asked = time.monotonic()
        server.send_signal(stop)
        _, err = server.communicate(timeout=30)
        took = time.monotonic() - asked
        for client in clients:
            client.join(timeout=30)
    finally:
        if server.poll() is None:
            server.kill()
            server.communicate()
    assert server.returncode == 0 and took < 10, (server.returncode, took, err)  # about 2 s on an idle machine
    assert "Traceback" not in err and "CancelledError" not in err and "ERROR" not in err, err
    assert len(answers) == 4 and set(answers) <= {200, 503, "closed"}, answers
    assert list(temp.iterdir()) == []  # the uploads' folder is gone
