"""The studio's pages under load: 20 "Try it" uploads at once against a real `convscope serve` on 127.0.0.1, while
GET / and GET /api/runs are timed one after the other until the uploads have all answered. Goal: each GET answers in
under a second during the load (the heavy work waits on the studio's own workers, the pages do not).

    .venv/bin/python bench/studio_load.py [RUN] [--uploads 20] [--image PATH] [--megapixels 12]

RUN: a trained run folder (default: a lenet5 trained for one epoch on a small generated image folder, in a temporary
folder). The image: --image, else a generated JPEG of --megapixels (a phone photo's 12 by default). The server is
`python -m convscope serve --runs PARENT --port FREE` with this interpreter; nothing is written outside a temporary
folder. Printed: each GET's median and range before and during the load, the uploads' answers and times, the load
average before and after and the CPU (the machine may be shared: the figures are indicative).
"""

from __future__ import annotations

import argparse
import io
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path

PAGE_HEADER = {"x-convscope-studio": "1"}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def photo(megapixels: float) -> bytes:
    """A smooth colour JPEG of about `megapixels` (4:3)."""
    import numpy as np
    from PIL import Image

    width = int((megapixels * 1e6 * 4 / 3) ** 0.5)
    height = int(width * 3 / 4)
    x = np.linspace(0, 255, width, dtype=np.float32)
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None]
    rgb = np.stack([np.broadcast_to(x, (height, width)), np.broadcast_to(y, (height, width)), (x + y) / 2], -1)
    out = io.BytesIO()
    Image.fromarray(rgb.astype(np.uint8)).save(out, "JPEG", quality=90)
    return out.getvalue()


def tiny_run(folder: Path) -> Path:
    """A lenet5 trained for one epoch on 2 classes of 30 generated 28×28 images each: folder/runs/tiny."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for label, shade in (("dark", 60), ("light", 190)):
        (folder / "data" / label).mkdir(parents=True)
        for i in range(30):
            pixels = np.clip(rng.normal(shade, 30, (28, 28, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / "data" / label / f"{i}.png")
    run = folder / "runs" / "tiny"
    subprocess.run([sys.executable, "-m", "convscope", "train", "--model", "lenet5", "--data", str(folder / "data"),
                    "--epochs", "1", "--out", str(run)], check=True, capture_output=True)  # fmt: skip
    return run


def multipart(image: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    head = f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="photo.jpg"\r\n\r\n'.encode()
    return head + image + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def timed(request: urllib.request.Request, timeout: float = 300) -> tuple[float, int]:
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            answer.read()
            status = answer.status
    except urllib.error.HTTPError as err:
        status = err.code
    return time.perf_counter() - start, status


def summary(seconds: list[float]) -> str:
    if not seconds:
        return "no answers"
    return (f"median {statistics.median(seconds) * 1000:7.1f} ms, range {min(seconds) * 1000:.1f}–"
            f"{max(seconds) * 1000:.1f} ms over {len(seconds)}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", nargs="?", help="a trained run folder (default: a tiny one made here)")
    parser.add_argument("--uploads", type=int, default=20)
    parser.add_argument("--image", help="the image uploaded (default: a generated JPEG of --megapixels)")
    parser.add_argument("--megapixels", type=float, default=12.0)
    args = parser.parse_args()

    print(f"CPU: {cpu_model()} ({os.cpu_count()} cores); load average before: {os.getloadavg()}")
    with tempfile.TemporaryDirectory(prefix="studio-load-") as temp:
        run = Path(args.run).resolve() if args.run else tiny_run(Path(temp))
        image = Path(args.image).read_bytes() if args.image else photo(args.megapixels)
        print(f"run: {run}; image: {len(image) / 1e6:.1f} MB; {args.uploads} uploads at once")
        env = {**os.environ, "TMPDIR": temp, "PYTHONUNBUFFERED": "1"}
        with socket.socket() as s:  # a free port (an older convscope takes no --port 0)
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        command = [sys.executable, "-m", "convscope", "serve", "--runs", str(run.parent), "--port", str(port)]
        server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        try:
            url = server.stdout.readline().split()[2].rstrip("/")
            body, content_type = multipart(image)
            predict = f"{url}/api/runs/{run.name}/predict"

            def upload() -> urllib.request.Request:
                headers = {**PAGE_HEADER, "content-type": content_type}
                return urllib.request.Request(predict, data=body, headers=headers, method="POST")

            deadline = time.monotonic() + 60  # an older convscope says its address before it listens
            while True:
                try:
                    timed(urllib.request.Request(f"{url}/"))
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
            print(f"warm-up upload (the network loaded): {timed(upload())[0]:.2f} s")
            pages = {"GET /": f"{url}/", "GET /api/runs": f"{url}/api/runs"}
            quiet = {name: [timed(urllib.request.Request(u))[0] for _ in range(10)] for name, u in pages.items()}
            loaded: dict[str, list[float]] = {name: [] for name in pages}
            uploads: list[tuple[float, int]] = []
            lock = threading.Lock()

            def one_upload():
                result = timed(upload())
                with lock:
                    uploads.append(result)

            threads = [threading.Thread(target=one_upload) for _ in range(args.uploads)]
            start = time.perf_counter()
            for thread in threads:
                thread.start()
            while any(thread.is_alive() for thread in threads):
                for name, u in pages.items():
                    loaded[name].append(timed(urllib.request.Request(u))[0])
                time.sleep(0.05)
            took = time.perf_counter() - start
        finally:
            server.terminate()
            server.communicate(timeout=30)
    for name in pages:
        print(f"{name:14} quiet:        {summary(quiet[name])}")
        print(f"{name:14} during load:  {summary(loaded[name])}")
    statuses = sorted({status for _, status in uploads})
    each = summary([s for s, _ in uploads])
    print(f"uploads: {len(uploads)} answered in {took:.1f} s, statuses {statuses}; each {each}")
    worst = max(max(times) for times in loaded.values() if times) if any(loaded.values()) else float("nan")
    print(f"goal (every GET < 1 s during the load): {'met' if worst < 1 else 'NOT met'} (slowest {worst:.3f} s)")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
