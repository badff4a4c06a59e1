"""Small builders the tests share: a learnable image folder, a `convscope train` command line, callbacks that stop a
training at a batch, and an app served on 127.0.0.1."""

import os
import signal
import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image

from convscope.training.callbacks import Callback


def make_folder(root: Path, per_class: int = 60, size: int = 20) -> Path:
    """Two classes told apart by brightness, with noise: learnable in a few epochs."""
    rng = np.random.default_rng(0)
    for label, name in enumerate(("dark", "light")):
        folder = root / name
        folder.mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 140, (size, size)) + 100 * label
            Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{i:03}.png")
    return root


def train_args(folder, out, epochs, batch_size=8):
    return [
        "train",
        "--model",
        "lenet5",
        "--data",
        str(folder),
        "--epochs",
        str(epochs),
        "--batch-size",
        str(batch_size),
        "--threads",
        "1",
        "--precision",  # forced: two runs compared bit for bit must not each measure their own choice (autotune)
        "fp32",
        "--out",
        str(out),
    ]


class StopAt:
    """A training callback that does what Ctrl-C does at batch `batch` of epoch `epoch` (0-based): SIGINT, so the run
    saves at the end of that batch and stops."""

    def __init__(self, epoch: int, batch: int):
        self.at = (epoch, batch)

    def on_start(self, *args): ...
    def on_epoch(self, row): ...
    def on_end(self, *args): ...

    def on_batch(self, epoch, batch, *args):
        if (epoch, batch) == self.at:
            os.kill(os.getpid(), signal.SIGINT)


class StopRequestAt(Callback):
    """A training callback that asks the trainer to stop, as SIGTERM does, after batch `batch` of epoch `epoch`
    (0-based), through the StopRequest `stop` given to train()."""

    def __init__(self, stop, epoch: int, batch: int):
        self.stop, self.at = stop, (epoch, batch)

    def on_batch(self, epoch, batch, loss, accuracy, images_per_s):
        if (epoch, batch) == self.at:
            self.stop.signal = signal.SIGTERM


@contextmanager
def served(app):
    """The ASGI `app` (a studio) on a free port of 127.0.0.1, served by uvicorn in a thread: its base URL."""
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "the studio did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def wait_for(predicate, proc, seconds=120):
    """Poll `predicate` until it holds; fail if the process `proc` ended first or `seconds` passed."""
    deadline = time.monotonic() + seconds
    while not predicate():
        assert proc.poll() is None, f"ended before it could be stopped: {proc.communicate()}"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


# Real photos shared by the team (../shared/data beside the checkout): tests that need them skip where it is missing.
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def shared_data(name: str) -> Path:
    """../shared/data/NAME, or a skip (with the reason) when this machine does not have it."""
    import pytest

    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(f"{path} is not on this machine (real data shared by the team; see its README)")
    return path


# The smallest detector on the EfficientNet-Lite0 base: 64×64 inputs, the base cut at stride 16, the 10 Fashion-MNIST
# classes (fashion-scenes).
TINY_LITE0_DET = {
    "name": "tiny-lite0-det",
    "input": "64x64x3",
    "layers": [
        {"base": {"arch": "efficientnet-lite0", "stride": 16}},
        {"conv": {"filters": 16, "size": 3, "padding": "same"}},
        {"detect": {"classes": 10, "channels": 8}},
    ],
}


def smooth_photo(rng: np.random.Generator, size: int = 48) -> Image.Image:
    """A smooth RGB picture (random 6×6 colours, upsampled): distinct from every other, as photos are."""
    small = rng.integers(20, 236, (6, 6, 3), dtype=np.uint8)
    return Image.fromarray(small).resize((size, size), Image.Resampling.BICUBIC)


PHOTO_CLASSES = ("apple", "bear", "cloud")


def photo_folder(root: Path, train: int = 12, test: int = 4, seed: int = 0) -> Path:
    """train/ and test/ folders of PHOTO_CLASSES, JPEGs of smooth_photo: no duplicates, no odd image (the doctor's
    clean data set)."""
    rng = np.random.default_rng(seed)
    for split, count in (("train", train), ("test", test)):
        for name in PHOTO_CLASSES:
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                smooth_photo(rng).save(folder / f"{i:03}.jpg", quality=92)
    return root
