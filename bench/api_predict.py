"""How long one prediction takes from Python: `run.predict(image)` (the model kept loaded after its first call)
against `convscope.predict(run_folder, [path])` (which reads the run and its weights each time).

    .venv/bin/python bench/api_predict.py RUN_FOLDER [--image chelsea] [--repeat 20]

Prints the median and range in milliseconds of each, and their ratio; the machine's CPU and load average first.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import convscope


def timings(call, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        out.append((time.perf_counter() - started) * 1000)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("--image", default="chelsea")
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    print(f"CPU {cpu}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}")
    run = convscope.load_run(args.run)
    run.predict(args.image)  # the first call loads the model
    kept = timings(lambda: run.predict(args.image), args.repeat)
    fresh = timings(lambda: convscope.predict(args.run, [args.image], device="cpu"), args.repeat)
    for name, values in (("run.predict (model kept)", kept), ("convscope.predict (loads the run)", fresh)):
        print(f"{name:<36} median {statistics.median(values):7.2f} ms  range {min(values):.2f}–{max(values):.2f} ms")
    print(f"ratio of medians: {statistics.median(fresh) / statistics.median(kept):.1f}×")


if __name__ == "__main__":
    main()
