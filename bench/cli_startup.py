"""How long the `convscope` command takes to start, and its peak memory, for commands that need no network.

    .venv/bin/python bench/cli_startup.py                          # this checkout's src/
    .venv/bin/python bench/cli_startup.py --src /tmp/before/src    # another checkout, same interpreter

Each command runs `--runs` times (after one warm-up run that fills the file cache) as `python -m convscope ...` with
PYTHONPATH set to the checkout's src/, so two checkouts are compared with the same interpreter and packages. Wall
seconds are the whole process, interpreter start included; peak RSS is the child's own (os.wait4's ru_maxrss, KiB on
Linux), as `/usr/bin/time -v` reports it. Medians and min–max are printed with the load average, since other work on
the machine moves both. tests/test_startup.py checks the cause (no torch import); this script only measures.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402 (bench/ is not a package: scripts run as files)

COMMANDS = (["--help"], ["summary", "cifar-3conv"], ["presets"], ["explain", "conv"], ["train", "--help"])


def run_once(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, peak RSS in MiB) of one `python -m convscope ARGV`, its output thrown away."""
    started = time.perf_counter()
    child = subprocess.Popen(
        [sys.executable, "-m", "convscope", *argv], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait for it again
    if child.returncode != 0:
        raise SystemExit(f"convscope {' '.join(argv)} exited with {child.returncode}")
    return wall, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", default=str(common.ROOT / "src"), help="the checkout's src folder (default: this)")
    parser.add_argument("--runs", type=int, default=5, help="measured runs of each command (default 5)")
    parser.add_argument("--name", default="cli_startup", help="results file: bench/results/NAME.json")
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": args.src}
    load_before = os.getloadavg()
    rows, results = [], {}
    for argv in COMMANDS:
        run_once(argv, env)  # warm-up: the file cache, not the figures
        walls, peaks = zip(*(run_once(argv, env) for _ in range(args.runs)), strict=True)
        name = " ".join(argv)
        results[name] = {"wall_s": walls, "peak_rss_mib": peaks}
        rows.append(
            [
                name,
                f"{statistics.median(walls):.2f} ({min(walls):.2f}–{max(walls):.2f})",
                f"{statistics.median(peaks):.0f} ({min(peaks):.0f}–{max(peaks):.0f})",
            ]
        )
    cpu = common._cpuinfo().get("model", "?")
    load = f"load average {load_before[0]:.2f} before, {os.getloadavg()[0]:.2f} after"
    common.print_table(
        ["convscope …", "wall s median (min–max)", "peak RSS MiB median (min–max)"],
        rows,
        f"{args.src}, {args.runs} runs each; {cpu}; {load}",
    )
    common.write_json(args.name, {"src": args.src, "cpu": cpu, "load_average": load_before, "results": results})


if __name__ == "__main__":
    main()
