"""Ctrl-C and SIGTERM stop a detection reader within a second: `each_image` waits with a timeout, so the main thread
sees the signal, and cancels the images not started; `convscope detect lint` then exits 130 (143) with one line."""

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from convscope.data.detection.boxes import MAX_BOXES
from convscope.data.detection.reading import each_image


def test_each_image_keeps_order_and_passes_an_image_error_on():
    assert each_image(lambda i: i * i, 50) == [i * i for i in range(50)]
    assert each_image(lambda i: i, 0) == []

    def read(index: int) -> int:
        if index == 3:
            raise ValueError("image 3")
        return index

    with pytest.raises(ValueError, match="image 3"):
        each_image(read, 10)


def test_an_interrupt_cancels_the_images_not_started():
    started = []
    lock = threading.Lock()

    def read(index: int) -> int:
        with lock:
            started.append(index)
        if index == 0:
            raise KeyboardInterrupt  # what the main thread gets from Ctrl-C; here it comes through image 0
        time.sleep(0.02)
        return index

    begin = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        each_image(read, 1000)
    assert time.monotonic() - begin < 1.0
    assert len(started) < 100  # 1000 images would take 20 s / threads


def _crowded_coco(root: Path, entries: int) -> Path:
    """A COCO JSON of `entries` images (one small PNG), each with MAX_BOXES distinct boxes: about 0.5 s of checks
    per image (the pairwise duplicate check took 15 s), so that a stop must come between images."""
    (root / "images").mkdir(parents=True)
    Image.fromarray(np.full((400, 400, 3), 90, np.uint8)).save(root / "images" / "a.png")
    boxes = ",".join(
        f'{{"id": {i}, "image_id": IMAGE, "category_id": 1, "bbox": [{i % 100 * 4}, {i // 100 * 4}, 2, 2]}}'
        for i in range(MAX_BOXES)
    )
    images = ",".join(f'{{"id": {i}, "file_name": "a.png"}}' for i in range(entries))
    annotations = ",".join(boxes.replace("IMAGE", str(i)) for i in range(entries))
    text = f'{{"images": [{images}], "annotations": [{annotations}], "categories": [{{"id": 1, "name": "x"}}]}}'
    (root / "instances.json").write_text(text)
    return root / "instances.json"


def _threads(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/task"))
    except FileNotFoundError:
        return 0


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs /proc to see the reader threads start")
@pytest.mark.parametrize("signum, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_detect_lint_stops_within_a_second_of_a_signal(tmp_path, signum, status):
    path = _crowded_coco(tmp_path, 8)  # about 4 s of checks (2 minutes with the pairwise duplicate check)
    proc = subprocess.Popen(
        [sys.executable, "-m", "convscope", "detect", "lint", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # One thread for NumPy's BLAS, so that a second thread means the images are being read.
        env={**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
    )
    try:
        deadline = time.monotonic() + 60
        while _threads(proc.pid) < 2:  # the reader threads have started: the images are being checked
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the reader threads never started"
            time.sleep(0.02)
        time.sleep(0.5)
        assert proc.poll() is None
        sent = time.monotonic()
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=30)
        took = time.monotonic() - sent
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == status
    assert err == "convscope: interrupted\n" and out == ""
    # About 0.5 s on an idle machine (the images being checked finish); 5 s leaves room for a loaded one. Before, the
    # images being checked went on for their whole pairwise duplicate check: 15 s each.
    assert took < 5.0, f"took {took:.1f} s to stop"
