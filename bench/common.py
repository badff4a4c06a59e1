"""What every benchmark script shares: the machine's facts, a measured sgemm peak, tables, JSON results, workers.

Scripts run from the project folder: `.venv/bin/python bench/NAME.py [--threads T] [--quick]`. Results go to
bench/results/NAME.json (gitignored) next to a printed table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"


def add_common_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="CPU threads (default: all cores)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test of the script, not a benchmark")
    parser.add_argument(
        "--keras", action="store_true", help="also run Keras (creates bench/.venv-keras with TensorFlow the first time)"
    )
    parser.add_argument(
        "--tag", help="results go to bench/results/NAME-TAG.json (default NAME.json; --quick: NAME-quick)"
    )


def result_name(name: str, args: argparse.Namespace) -> str:
    """The results file's name: a tagged or quick run does not overwrite the full default one."""
    tag = args.tag or ("quick" if args.quick else "")
    return f"{name}-{tag}" if tag else name


# -- the machine ------------------------------------------------------------------------------------------------------
def _cpuinfo() -> dict:
    info: dict = {}
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8")
    except OSError:
        return info
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and "model" not in info:
            info["model"] = value.strip()
        elif key == "flags" and "flags" not in info:
            flags = set(value.split())
            info["avx2"] = "avx2" in flags
            info["avx512f"] = "avx512f" in flags
            info["fma"] = "fma" in flags
    return info


def _git(*args: str) -> str:
    try:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout.rstrip() if done.returncode == 0 else ""  # porcelain lines start with a space


def top_snapshot(lines: int = 15) -> str:
    """`top -bn1 | head -15`: what else was running (the machine is shared, so timings are indicative)."""
    try:
        done = subprocess.run(["top", "-bn1"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return ""
    return "\n".join(done.stdout.splitlines()[:lines])


def machine_facts(threads: int) -> dict:
    import numpy
    import torch

    import convscope

    cpu = _cpuinfo()
    return {
        "cpu": cpu.get("model", platform.processor()),
        "avx2": cpu.get("avx2"),
        "avx512f": cpu.get("avx512f"),
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "threads": threads,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_mkldnn": torch.backends.mkldnn.is_available(),
        "numpy": numpy.__version__,
        "convscope": convscope.__version__,
        "git_commit": _git("rev-parse", "--short", "HEAD"),
        "git_dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
        # the working tree is measured as it is: the files that differ from the commit
        "git_changed": [line[3:] for line in _git("status", "--porcelain").splitlines()],
        "load_average": list(os.getloadavg()),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
    }


def sgemm_peak(threads: int, n: int = 2048, repeats: int = 7) -> float:
    """Measured float32 matmul speed in GFLOP/s (2·n³ per n×n product), best of `repeats`, at `threads` threads.

    The best of several is the machine's attainable peak; it is measured in this process (the engines run in
    their own subprocesses), so other jobs on the machine lower it as they lower the engines.
    """
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        g = torch.Generator().manual_seed(0)
        a = torch.randn(n, n, generator=g)
        b = torch.randn(n, n, generator=g)
        out = torch.empty(n, n)
        torch.mm(a, b, out=out)  # warm-up: thread pool, page faults
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            torch.mm(a, b, out=out)
            best = min(best, time.perf_counter() - t0)
    finally:
        torch.set_num_threads(previous)
    return 2 * n**3 / best / 1e9


def print_machine(facts: dict, peak: float | None = None, how: str = "") -> None:
    simd = "AVX-512" if facts.get("avx512f") else "AVX2" if facts.get("avx2") else "no AVX2"
    line = (
        f"machine: {facts['cpu']} ({simd}), {facts['cores']} cores, {facts['threads']} threads; "
        f"python {facts['python']}, torch {facts['torch']}, convscope {facts['convscope']} "
        f"({facts['git_commit']}{', uncommitted changes' if facts['git_dirty'] else ''})"
    )
    print(line)
    load = ", ".join(f"{x:.2f}" for x in facts["load_average"])
    print(f"load average {load} at start (the machine is shared: timings are indicative)")
    if peak is not None:
        print(f"measured sgemm peak: {peak:.1f} GFLOP/s ({how})")


# -- output -----------------------------------------------------------------------------------------------------------
def print_table(headers: list[str], rows: list[list], title: str = "") -> None:
    """A Markdown table (pastes into the README as it is); numbers are formatted by the caller."""
    cells = [[str(c) for c in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    if title:
        print(f"\n{title}")
    print("| " + " | ".join(c.ljust(w) for c, w in zip(cells[0], widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in cells[1:]:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")


def write_json(name: str, data: dict) -> Path:
    """bench/results/NAME.json, written whole (temp file, then rename)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


# -- subprocesses -----------------------------------------------------------------------------------------------------
def run_json(command: list[str], timeout: float, env: dict | None = None) -> dict:
    """Run `command`; its last stdout line is a JSON object. RuntimeError with the stderr tail when it fails."""
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)
    lines = done.stdout.strip().splitlines()
    if done.returncode or not lines:
        tail = " | ".join(done.stderr.strip().splitlines()[-8:])
        raise RuntimeError(f"{' '.join(command[:3])}… failed (exit {done.returncode}): {tail}")
    return json.loads(lines[-1])


def python() -> str:
    """The interpreter running this script (the project's venv)."""
    return sys.executable


# -- competitors: other programs keeping cores busy --------------------------------------------------------------------
# A user's other program, as the benchmark's `--busy N` starts it: a single-threaded CPU-bound loop of pure Python
# arithmetic in its own process. It stops when terminated (SIGTERM/SIGINT), when its parent is gone (it polls
# getppid, so a benchmark killed with SIGKILL leaves nothing behind for long) and at its own deadline; on the way out
# it prints one JSON line: how many loops it ran in how many seconds (how much CPU it got).
COMPETITOR_CODE = r"""
import json, os, signal, sys, time
parent, limit = int(sys.argv[1]), float(sys.argv[2])
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
started = time.monotonic()
loops = 0
try:
    while os.getppid() == parent and time.monotonic() - started < limit:
        x = 0
        for i in range(20_000):  # about a millisecond of arithmetic between checks
            x = (x * 31 + i) % 1_000_003
        loops += 1
except KeyboardInterrupt:
    pass
finally:
    print(json.dumps({"pid": os.getpid(), "loops": loops, "seconds": time.monotonic() - started}), flush=True)
"""
# Every threading knob at one thread: the competitor is one busy core's worth of work, no more.
COMPETITOR_ENV = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "NUMEXPR_NUM_THREADS": "1",
    "VECLIB_MAXIMUM_THREADS": "1",
}


class Competitors:
    """`with Competitors(n, limit_s) as c:` runs n competitor processes for the block; afterwards `c.results` holds
    each one's {"pid", "loops", "seconds"} and `c.loops_per_s` their rates. Stopped in __exit__ whatever happened
    (terminate, then kill after 5 s); each also exits by itself after `limit_s` or when this process is gone."""

    def __init__(self, n: int, limit_s: float):
        self.n, self.limit_s = n, limit_s
        self.procs: list[subprocess.Popen] = []
        self.results: list[dict] = []

    def __enter__(self) -> Competitors:
        env = {**os.environ, **COMPETITOR_ENV}
        try:
            for _ in range(self.n):
                command = [sys.executable, "-I", "-S", "-c", COMPETITOR_CODE, str(os.getpid()), str(self.limit_s)]
                self.procs.append(
                    subprocess.Popen(
                        command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env
                    )
                )
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                out, _ = p.communicate(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                out, _ = p.communicate()
            try:
                self.results.append(json.loads(out.strip().splitlines()[-1]))
            except (ValueError, IndexError):
                self.results.append({"pid": p.pid, "exit": p.returncode})
        self.procs = []

    @property
    def loops_per_s(self) -> list[float]:
        return [r["loops"] / r["seconds"] for r in self.results if r.get("seconds")]


def competitor_rate(seconds: float = 2.0) -> float:
    """Loops per second of one competitor running alone (nothing else of the benchmark running): the yardstick for
    how much of a core a competitor got next to an engine."""
    with Competitors(1, seconds + 60) as c:
        time.sleep(seconds)
    return c.loops_per_s[0] if c.loops_per_s else float("nan")


# -- additions for net_throughput.py ----------------------------------------------------------------------------------
# OpenMP / MKL settings that change how many threads an engine runs or how they wait: removed from each engine
# subprocess's environment (clean_env), so that every engine gets only the settings it sets itself.
THREAD_VARS = (
    "OMP_WAIT_POLICY",
    "GOMP_SPINCOUNT",
    "KMP_BLOCKTIME",
    "KMP_AFFINITY",
    "OMP_PROC_BIND",
    "OMP_PLACES",
    "OMP_DYNAMIC",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "MKL_THREADING_LAYER",
)


def clean_env(extra: dict | None = None) -> dict:
    """This process's environment less THREAD_VARS, plus `extra`: an engine subprocess's whole environment."""
    return {**{k: v for k, v in os.environ.items() if k not in THREAD_VARS}, **(extra or {})}


def cpu_flags(wanted: tuple[str, ...] = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")) -> list:
    """Which of the `wanted` /proc/cpuinfo flags this CPU has (the ones that decide matmul speed); [] off Linux."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8")
    except OSError:
        return []
    line = next((x for x in text.splitlines() if x.startswith("flags")), "")
    flags = set(line.partition(":")[2].split())
    return [f for f in wanted if f in flags]


def matmul_peak(threads: int, dtype: str = "float32", n: int = 2048, repeats: int = 7) -> dict:
    """Measured n×n matmul speed at `threads` threads in GFLOP/s (2·n³ per product), `repeats` times after a
    warm-up: {"dtype", "n", "median", "best", "samples"}. dtype: "float32" or "bfloat16" (inputs and output in it)."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        g = torch.Generator().manual_seed(0)
        kind = getattr(torch, dtype)
        a = torch.randn(n, n, generator=g).to(kind)
        b = torch.randn(n, n, generator=g).to(kind)
        out = torch.empty(n, n, dtype=kind)
        torch.mm(a, b, out=out)  # warm-up: thread pool, page faults, oneDNN's kernel choice
        samples = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            torch.mm(a, b, out=out)
            samples.append(2 * n**3 / (time.perf_counter() - t0) / 1e9)
    finally:
        torch.set_num_threads(previous)
    return {"dtype": dtype, "n": n, "median": statistics.median(samples), "best": max(samples), "samples": samples}
