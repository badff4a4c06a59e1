"""Training images/s of one process against `--nproc N` processes (torchrun, DistributedDataParallel, gloo on the CPU).

Each round trains the same network on the same images twice, side by side: once in one process (all the cores as its
threads, batch B × N) and once in N processes (the cores shared out, batch B each: the same B × N images a step, the
same steps). Images/s is the training loop's (metrics.csv `seconds`, first epoch dropped: it includes the warm-up),
so data loading, validation and the test pass are not counted. On a machine with as many cores as processes times
threads per process the processes only share the cores; a speed-up needs more cores or GPUs.

    .venv/bin/python bench/distributed_throughput.py [--model fashion-fast] [--nproc 2] [--rounds 3]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def images_per_second(run: Path, images: int) -> float:
    with open(run / "metrics.csv") as f:
        seconds = [float(row["seconds"]) for row in csv.DictReader(f)][1:]
    return images / statistics.median(seconds)


def train(out: Path, args, processes: int) -> float:
    cores = os.cpu_count() or 1
    command = [sys.executable, "-m", "convscope", "train", "--model", args.model, "--data", args.data,
               "--per-class", str(args.per_class), "--epochs", str(args.epochs), "--val-fraction", "0",
               "--batch-size", str(args.batch * (args.nproc // processes)),
               "--threads", str(max(1, cores // processes)), "--out", str(out)]  # fmt: skip
    if processes > 1:
        command += ["--nproc", str(processes)]
    subprocess.run(command, check=True, capture_output=True, text=True)
    images = re.search(r": (\d+) images, \d+ batches", (out / "train.log").read_text())  # the run's first line
    return images_per_second(out, int(images.group(1)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="fashion-fast")
    parser.add_argument("--data", default="fashion-mnist")
    parser.add_argument("--per-class", type=int, default=600, help="training images per class (default 600)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=64, help="images per process and step (default 64)")
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", metavar="PATH", help="write the measurements here")
    args = parser.parse_args()
    measured: dict[str, list[float]] = {"1 process": [], f"{args.nproc} processes": []}
    loads = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for name, processes in (("1 process", 1), (f"{args.nproc} processes", args.nproc)):
                measured[name].append(train(Path(tmp) / f"{r}-{processes}", args, processes))
                loads.append(os.getloadavg()[0])
            print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:,.0f} images/s" for k, v in measured.items()), flush=True)
    one = statistics.median(measured["1 process"])
    print(f"\n{args.model} on {args.per_class * 10:,} {args.data} images, {args.nproc} × batch {args.batch} a step, "
          f"{os.cpu_count()} cores, load average {min(loads):.1f}–{max(loads):.1f}")  # fmt: skip
    print("| processes | images/s (median) | range | ÷ one process |\n|---|---|---|---|")
    for name, values in measured.items():
        low, high = min(values), max(values)
        print(f"| {name} | {statistics.median(values):,.0f} | {low:,.0f}–{high:,.0f} | "
              f"{statistics.median(values) / one:.2f} |")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps({"measured": measured, "load": loads, "time": time.time()}, indent=2))


if __name__ == "__main__":
    main()
