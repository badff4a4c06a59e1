"""Three waits a user meets after training, on a trained run, in wall-clock seconds: `convscope evaluate RUN`,
opening the studio's run page, and the studio's "Try it" round trip (upload → prediction, Grad-CAM, feature maps).

    .venv/bin/python bench/house_timings.py [RUN] [--repeat 5] [--evaluate-repeat N] [--image PATH]
    .venv/bin/python bench/house_timings.py runs/demo --src /tmp/before/src    # another checkout, same interpreter

RUN defaults to runs/demo (train it with `python -m convscope.demo`). Every convscope here is a child process,
`python -m convscope ...` with this interpreter and PYTHONPATH set to --src when given (else inherited), so two
checkouts are compared with the same packages; the convscope file the children import is printed. Nothing is
downloaded, and nothing is written except the server's log in a temporary folder (and --json when asked).

- evaluate: `python -m convscope evaluate RUN`, the whole process, --evaluate-repeat times (default: --repeat).
- run page: a fresh `python -m convscope serve --runs PARENT --port FREE` is started and awaited (GET / answers);
  then what a browser fetches until the page shows its numbers: GET /runs/NAME, the /static/ files it links,
  GET /api/runs/NAME, then together the report's pictures it lists and /api/runs/NAME/evaluation (the per-class
  table). An evaluation answer that is not finished yet (HTTP 202, or a `status` of "computing"/"pending"/"running",
  or no `per_class`) is asked again every --poll seconds until it is. The first open after the server starts
  (cold) is reported apart from the median of --repeat re-opens (the server may keep what it computed).
- try it: a second fresh server; POST /api/runs/NAME/predict with the image as try.js sends it (multipart `image`,
  header x-convscope-studio: 1), then together, as the page asks for them, GET .../gradcam?image=T&class_name=TOP1
  and GET .../featuremaps?image=T&layer=FIRST (a detector: .../detections instead of Grad-CAM). Timed from the
  upload until all three have answered; the first try after the server starts apart from the median of --repeat.
  The image: --image, else RUN/samples/*.png (the demo's Fashion-MNIST test images), else skimage's camera.png.

The load average is printed before and after: the machine is shared, so the figures are indicative.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402 (bench/ is not a package: scripts run as files)

PAGE_HEADER = {"x-convscope-studio": "1"}  # what the studio's pages send with every request that changes something
UNFINISHED = ("computing", "pending", "running", "queued")
# the API calls of the run page this script makes; any other `${base}/...` call found in the page is reported
RUN_PAGE_CALLS = {"", "evaluation", "pictures", "metrics"}  # metrics: only while a training runs


# -- HTTP (the standard library: nothing to install) ------------------------------------------------------------------
def request(url: str, data: bytes | None = None, headers: dict | None = None, timeout: float = 600):
    """(status, body bytes, content type) of one request; RuntimeError for a 4xx/5xx answer or no answer."""
    req = urllib.request.Request(url, data=data, headers=headers or {}, method="POST" if data is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as answer:
            return answer.status, answer.read(), answer.headers.get("content-type", "")
    except urllib.error.HTTPError as err:
        raise RuntimeError(f"{req.method} {url} → {err.code}: {err.read()[:300]!r}") from None


def get_json(url: str):
    status, body, _ = request(url)
    return status, json.loads(body)


def multipart(field: str, filename: str, content: bytes, mime: str) -> tuple[bytes, dict]:
    """A multipart/form-data body with one file, as a browser's FormData sends it."""
    boundary = f"----convscope{uuid.uuid4().hex}"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
            f"Content-Type: {mime}\r\n\r\n"
        ).encode()
        + content
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}", **PAGE_HEADER}


# -- the studio as a child process ------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Studio:
    """`python -m convscope serve --runs RUNS --port P` from start until it answers GET /, stopped on exit."""

    def __init__(self, runs: Path, env: dict, log: Path, wait: float = 180):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = log
        command = [sys.executable, "-m", "convscope", "serve", "--runs", str(runs), "--port", str(self.port)]
        self.started = time.perf_counter()
        with open(log, "ab") as out:
            self.child = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + wait
        while True:
            if self.child.poll() is not None:
                raise RuntimeError(f"convscope serve exited with {self.child.returncode}: {self.tail()}")
            try:
                request(self.base + "/", timeout=5)
                break
            except (OSError, RuntimeError):
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"convscope serve did not answer within {wait:.0f} s: {self.tail()}") from None
                time.sleep(0.1)
        self.ready_s = time.perf_counter() - self.started

    def tail(self) -> str:
        return " | ".join(self.log.read_text(errors="replace").strip().splitlines()[-6:])

    def stop(self) -> None:
        if self.child.poll() is None:
            self.child.terminate()
            try:
                self.child.wait(15)
            except subprocess.TimeoutExpired:
                self.child.kill()
                self.child.wait()

    def __enter__(self):
        return self

    def __exit__(self, *_):
        self.stop()


# -- the three measurements -------------------------------------------------------------------------------------------
def time_evaluate(run: Path, env: dict, repeat: int) -> tuple[list[float], str]:
    """Wall seconds of each `python -m convscope evaluate RUN`, and the first one's output (to compare the numbers)."""
    walls, output = [], ""
    for _ in range(repeat):
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "convscope", "evaluate", str(run)], env=env, capture_output=True, text=True
        )
        walls.append(time.perf_counter() - started)
        if done.returncode:
            raise RuntimeError(f"convscope evaluate exited with {done.returncode}: {done.stderr.strip()[-500:]}")
        output = output or done.stdout
    return walls, output


def finished_evaluation(url: str, poll: float, timeout: float) -> tuple[dict, int]:
    """The run page's per-class answer once it is finished, and how many times it was asked."""
    deadline, asked = time.monotonic() + timeout, 0
    while True:
        status, body = get_json(url)
        asked += 1
        state = str(body.get("status", body.get("state", ""))).lower() if isinstance(body, dict) else ""
        if status != 202 and state not in UNFINISHED and isinstance(body, dict) and "per_class" in body:
            return body, asked
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} still unfinished after {timeout:.0f} s: {str(body)[:200]}")
        time.sleep(poll)


def open_run_page(base: str, name: str, poll: float, timeout: float) -> dict:
    """One open of /runs/NAME as the browser does it: seconds until every part has answered, and the parts'."""
    quoted = urllib.parse.quote(name, safe="")
    api = f"{base}/api/runs/{quoted}"
    started = time.perf_counter()
    _, html, _ = request(f"{base}/runs/{quoted}")
    html = html.decode("utf-8", errors="replace")
    statics = sorted(set(re.findall(r'(?:src|href)="(/static/[^"]+)"', html)))
    code = html + "".join(request(base + path)[1].decode("utf-8", errors="replace") for path in statics)
    page_s = time.perf_counter() - started
    _, run = get_json(api)
    run_s = time.perf_counter() - started

    def evaluation():
        body, asked = finished_evaluation(f"{api}/evaluation", poll, timeout)
        return time.perf_counter() - started, body, asked

    pictures = [f"{api}/pictures/{urllib.parse.quote(p)}" for p in run.get("pictures", [])]
    if run.get("status") == "running":
        pictures.append(f"{api}/metrics")
    with ThreadPoolExecutor(max_workers=1 + len(pictures)) as pool:  # a browser asks for them together
        evaluated = pool.submit(evaluation)
        for _ in pool.map(request, pictures):
            pass
        evaluation_s, body, asked = evaluated.result()
    total = time.perf_counter() - started
    return {
        "total_s": total,
        "html_and_static_s": page_s,
        "api_run_s": run_s - page_s,
        "evaluation_s": evaluation_s - run_s,
        "evaluation_asked": asked,
        "pictures": len(pictures),
        "accuracy": body.get("accuracy"),
        "per_class_rows": len(body.get("per_class", [])),
        "code": code,  # the page and its scripts: what API calls they make
        "statics": statics,
    }


def try_it(base: str, name: str, image: Path) -> dict:
    """One "Try it": upload → the prediction, then Grad-CAM (or detections) and feature maps, as try.js asks."""
    quoted = urllib.parse.quote(name, safe="")
    api = f"{base}/api/runs/{quoted}"
    mime = "image/png" if image.suffix.lower() == ".png" else "image/jpeg"
    body, headers = multipart("image", image.name, image.read_bytes(), mime)
    started = time.perf_counter()
    _, answer, _ = request(f"{api}/predict", data=body, headers=headers)
    answer = json.loads(answer)
    predict_s = time.perf_counter() - started
    token = urllib.parse.quote(answer["image"], safe="")
    layer = urllib.parse.quote(answer["layers"][0], safe="")
    if answer.get("detector"):
        first = f"{api}/detections?image={token}&min_score=0.05"
    else:
        first = f"{api}/gradcam?image={token}&class_name={urllib.parse.quote(answer['top'][0]['class'], safe='')}"
    second = f"{api}/featuremaps?image={token}&layer={layer}"
    with ThreadPoolExecutor(max_workers=2) as pool:
        answers = list(pool.map(request, (first, second)))
    total = time.perf_counter() - started
    if not answer.get("detector") and not answers[0][2].startswith("image/png"):
        raise RuntimeError(f"Grad-CAM answered {answers[0][2]!r}, not a PNG")
    top = answer["top"][0] if answer.get("top") else {}
    return {"total_s": total, "predict_s": predict_s, "top": top, "maps": json.loads(answers[1][1]).get("shown")}


# -- output ------------------------------------------------------------------------------------------------------------
def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} ({min(values):.2f}–{max(values):.2f})"


def load() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def default_image(run: Path) -> Path:
    samples = sorted((run / "samples").glob("*.png"))
    if samples:
        return samples[0]
    import skimage  # the project's dependency: its data folder ships camera.png

    return Path(skimage.data_dir) / "camera.png"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", nargs="?", default="runs/demo", help="a finished run folder (default runs/demo)")
    parser.add_argument("--repeat", type=int, default=5, help="measured repeats of each (default 5)")
    parser.add_argument("--evaluate-repeat", type=int, help="repeats of `convscope evaluate` (default: --repeat)")
    parser.add_argument("--image", type=Path, help="the image to try (default: RUN/samples/*.png, or camera.png)")
    parser.add_argument("--src", help="the checkout's src folder, as the children's PYTHONPATH (default: inherited)")
    parser.add_argument("--poll", type=float, default=0.5, help="seconds between asks for an unfinished evaluation")
    parser.add_argument("--timeout", type=float, default=600, help="longest wait for one evaluation, in seconds")
    parser.add_argument("--skip", action="append", default=[], choices=("evaluate", "page", "try"))
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args()

    run = Path(args.run).resolve()
    if not run.is_dir():
        raise SystemExit(f"{args.run}: no such run folder (train one: python -m convscope.demo)")
    env = dict(os.environ) | ({"PYTHONPATH": args.src} if args.src else {})
    imported = subprocess.run(
        [sys.executable, "-c", "import convscope; print(convscope.__file__)"],
        env=env, capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    cpu = common._cpuinfo().get("model", "?")
    load_before = load()
    print(f"CPU {cpu}, {os.cpu_count()} cores; load average {load_before} at start")
    print(f"run {run}; convscope imported from {imported}; python {sys.executable}")
    rows, results = [], {"run": str(run), "convscope": imported, "cpu": cpu, "load_before": load_before}
    log = Path(tempfile.mkdtemp(prefix="house_timings-")) / "serve.log"

    if "evaluate" not in args.skip:
        walls, output = time_evaluate(run, env, args.evaluate_repeat or args.repeat)
        results["evaluate"] = {"wall_s": walls, "output": output}
        rows.append([f"convscope evaluate RUN (×{len(walls)})", spread(walls), "whole process"])
        print(f"evaluate said: {output.strip().splitlines()[0] if output.strip() else '(nothing)'}")

    if "page" not in args.skip:
        with Studio(run.parent, env, log) as studio:
            cold = open_run_page(studio.base, run.name, args.poll, args.timeout)
            again = [open_run_page(studio.base, run.name, args.poll, args.timeout) for _ in range(args.repeat)]
        other = sorted(set(re.findall(r"\$\{base\}/?([a-z_]*)", cold.pop("code"))) - RUN_PAGE_CALLS)
        for opened in again:
            opened.pop("code")
        results["run_page"] = {"server_ready_s": studio.ready_s, "cold": cold, "again": again}
        parts = (
            f"html+static {cold['html_and_static_s']:.2f}, /api/runs {cold['api_run_s']:.2f}, "
            f"evaluation {cold['evaluation_s']:.2f} (asked {cold['evaluation_asked']}×), {cold['pictures']} pictures"
        )
        rows.append(["run page, first open (cold)", f"{cold['total_s']:.2f}", parts])
        totals = [o["total_s"] for o in again]
        evals = [o["evaluation_s"] for o in again]
        rows.append([f"run page, re-opened (×{len(again)})", spread(totals), f"evaluation {spread(evals)}"])
        print(
            f"studio ready in {studio.ready_s:.2f} s; per-class table: {cold['per_class_rows']} rows, "
            f"accuracy {cold['accuracy']}"
        )
        if other:
            print(f"note: the run page also calls {other}, which this script does not time")

    if "try" not in args.skip:
        image = args.image or default_image(run)
        with Studio(run.parent, env, log) as studio:
            first = try_it(studio.base, run.name, image)
            tries = [try_it(studio.base, run.name, image) for _ in range(args.repeat)]
        results["try_it"] = {"image": str(image), "server_ready_s": studio.ready_s, "first": first, "again": tries}
        rows.append(["Try it, first after start", f"{first['total_s']:.2f}", f"predict alone {first['predict_s']:.2f}"])
        rows.append(
            [
                f"Try it, again (×{len(tries)})",
                spread([t["total_s"] for t in tries]),
                f"predict alone {spread([t['predict_s'] for t in tries])}",
            ]
        )
        print(f"tried {image}: top {first['top']}, {first['maps']} feature maps")

    results["load_after"] = load()
    common.print_table(
        ["what", "wall s: median (min–max)", "of which"],
        rows,
        f"{run.name}; {cpu}, {os.cpu_count()} cores; load average {load_before} before, {results['load_after']} after",
    )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str) + "\n", encoding="utf-8")
        print(f"figures written to {args.json}")


if __name__ == "__main__":
    main()
