"""Training throughput (images/s) of the cifar-3conv network on 32×32×3 images: convscope's trainer, a plain PyTorch
loop as a tutorial writes it, and (with --keras) Keras' model.fit — same network, batch size, threads, Adam at 1e-3,
no augmentation — on a quiet machine and (--busy) next to other busy programs.

    .venv/bin/python bench/train_throughput.py [--keras] [--busy 0,1] [--threads T] [--batch-size B] [--quick]

The images and labels are random (uniform uint8 pixels, uniform labels): throughput does not depend on what the
pixels show, and random data needs no download. Every run is a fresh subprocess (no shared allocator or thread
state) with an environment set explicitly per engine (see ENGINES; OpenMP settings inherited from the shell are
removed); each round runs every engine at every --busy level once, in an order that rotates between rounds; the
first epoch of each run is a warm-up and is dropped (Keras traces its graph then). The figure per engine and level
is the median over rounds of (post-warm-up epochs ÷ their seconds) × images.

--busy N: N competitor processes (common.Competitors: a single-threaded pure-Python busy loop each, what a user's
other program looks like) run for the whole of each engine run and are stopped after it. `--busy 0,1` measures
every engine quiet and next to one competitor in the same rounds, and prints the busy/quiet table. PyTorch's OpenMP
threads spin while they wait for work; next to a busy program they and it take turns, and training slows down many
times. convscope spins briefly (GOMP_SPINCOUNT=10000, convscope/__init__.py) and its trainer measures the thread
count at the start and again when the steps slow down (training/autotune.py); `convscope-active` (threads spin, all
cores) is the quiet yardstick, `--variants convscope-passive` the earlier default (passive waiting, all cores).
Results: bench/results/train_throughput.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402 (bench/ is not a package: scripts run as files)
import keras_env  # noqa: E402

PRESET = "cifar-3conv"
CLASSES = 10
TEST_IMAGES = 100  # convscope evaluates its test split once at the end (outside the timed epochs): keep it small
WORKER_TIMEOUT = 3600  # seconds per engine run
COMPETITOR_LIMIT = WORKER_TIMEOUT + 120  # a competitor outlives no engine run by more than this, whatever happens
# Threading settings of OpenMP / MKL (common.THREAD_VARS) and TensorFlow that change how the engines' threads wait or
# how many there are. Those of the shell are removed from every engine's environment (each engine then gets only its
# own, ENGINES), and recorded. Read here, when the script starts: convscope, once imported, sets GOMP_SPINCOUNT in
# this process's environment.
TUNING_VARS = (*common.THREAD_VARS, "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")
SHELL_TUNING = {k: os.environ[k] for k in TUNING_VARS if k in os.environ}


# -- the data ---------------------------------------------------------------------------------------------------------
def make_data(folder: Path, images: int, seed: int = 0) -> None:
    """Random N×32×32×3 uint8 images and labels: images.npy / labels.npy, and the same as CIFAR-10 binary files."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(images + TEST_IMAGES, 32, 32, 3), dtype=np.uint8)
    y = rng.integers(0, CLASSES, size=images + TEST_IMAGES, dtype=np.uint8)
    np.save(folder / "images.npy", x[:images])
    np.save(folder / "labels.npy", y[:images])
    # CIFAR-10 binary: records of 1 label byte + 3072 pixel bytes, channel-major (32×32 R, G, B planes);
    # the training set spread over data_batch_1..5.bin (as in the real archive), the test set in test_batch.bin.
    records = np.concatenate([y[:, None], x.transpose(0, 3, 1, 2).reshape(len(x), -1)], axis=1)
    for i, part in enumerate(np.array_split(records[:images], 5), 1):
        part.tofile(folder / f"data_batch_{i}.bin")
    records[images:].tofile(folder / "test_batch.bin")
    (folder / "batches.meta.txt").write_text("".join(f"class{i}\n" for i in range(CLASSES)), encoding="utf-8")


# -- the engines (each in its own subprocess) -------------------------------------------------------------------------
@dataclass(frozen=True)
class Engine:
    worker: str  # "convscope", "plain" (WORKERS, run by this script) or "keras" (keras_worker.py in its venv)
    what: str  # one line for the JSON
    env: dict = field(default_factory=dict)  # set in its subprocess (after TUNING_VARS are removed)
    args: dict = field(default_factory=dict)  # extra worker arguments
    fewer_threads: int = 0  # runs with --threads minus this many


ENGINES = {
    "convscope": Engine(
        "convscope",
        "convscope as users get it: threads auto-tuned at the start (and re-checked when the steps slow down), "
        "GOMP_SPINCOUNT=10000 (its default); float32 forced, as Keras and plain run",
        args={"tuned": True},
    ),
    "convscope-active": Engine(
        "convscope",
        "convscope with OMP_WAIT_POLICY=ACTIVE and --threads forced: threads spin while they wait, never fewer "
        "(the fastest a quiet machine can be: the yardstick of the defaults' quiet cost)",
        env={"OMP_WAIT_POLICY": "ACTIVE"},
    ),
    "convscope-passive": Engine(
        "convscope",
        "convscope with OMP_WAIT_POLICY=PASSIVE and --threads forced (its default before auto-tuning)",
        env={"OMP_WAIT_POLICY": "PASSIVE"},
    ),
    "convscope-bf16": Engine(
        "convscope", "convscope --precision bf16, default environment", args={"precision": "bf16"}
    ),
    "plain": Engine("plain", "a plain PyTorch loop as a tutorial writes it, default environment (libgomp's own wait)"),
    "keras": Engine("keras", "Keras model.fit (TensorFlow's own thread pool), default environment"),
    # --variants: other settings, for comparison
    "convscope-torch-first": Engine(
        "convscope",
        "convscope with torch imported before it: its default does not apply, OpenMP's own wait policy is used "
        "(libgomp: spin a while, then sleep), as before the default existed",
        args={"import_torch_first": True},
    ),
    "convscope-fewer-threads": Engine(
        "convscope", "convscope with one thread fewer than --threads, default environment", fewer_threads=1
    ),
    "plain-passive": Engine(
        "plain",
        "the plain PyTorch loop with OMP_WAIT_POLICY=PASSIVE set by its user",
        env={"OMP_WAIT_POLICY": "PASSIVE"},
    ),
    # libgomp spins GOMP_SPINCOUNT times (default 300,000) before it sleeps: a shorter spin is the middle way
    # between spinning (fast when quiet, slow when busy) and PASSIVE (no spin at all).
    **{
        f"convscope-spin-{n // 1000}k": Engine(
            "convscope",
            f"convscope with OMP_WAIT_POLICY unset and GOMP_SPINCOUNT={n}: threads spin that many times, then sleep",
            env={"GOMP_SPINCOUNT": str(n)},
            args={"import_torch_first": True},
        )
        for n in (10_000, 100_000)
    },
}
VARIANTS = [
    "convscope-passive",
    "convscope-torch-first",
    "convscope-fewer-threads",
    "plain-passive",
    "convscope-spin-10k",
]
VARIANTS += ["convscope-spin-100k"]


def engine_env(engine: Engine) -> dict:
    """The engine's whole subprocess environment: this one's, less TUNING_VARS, plus the engine's own settings."""
    env = {k: v for k, v in os.environ.items() if k not in TUNING_VARS}
    return {**env, **engine.env}


def env_seen() -> dict:
    """The TUNING_VARS set in this process's environment now (the worker's record of what it ran with)."""
    return {k: os.environ[k] for k in TUNING_VARS if k in os.environ}


def run_convscope(a: dict) -> dict:
    """convscope's own trainer; the per-epoch `seconds` of metrics.csv time the training loop alone."""
    at_start = env_seen()  # before convscope is imported (it may add OMP_WAIT_POLICY)
    if a.get("import_torch_first"):
        import torch  # noqa: F401 (imported first on purpose: convscope then leaves OMP_WAIT_POLICY alone)
    from convscope.tasks.train import train

    t0 = time.perf_counter()
    train(
        model=PRESET,
        data="cifar10",
        data_dir=a["data"],
        epochs=a["epochs"],
        batch_size=a["batch_size"],
        optimizer="adam",
        lr=0.001,
        weight_decay=0.0,
        schedule="constant",  # the default one-cycle schedule would vary the learning rate; Keras and plain keep it
        augment="none",
        val_fraction=0.0,
        threads=None if a.get("tuned") else a["threads"],  # None: auto-tuned
        precision=a.get("precision", "fp32"),
        out=a["out"],
        report=False,
    )
    wall = time.perf_counter() - t0
    with open(Path(a["out"]) / "metrics.csv", newline="") as f:
        seconds = [float(row["seconds"]) for row in csv.DictReader(f)]
    import yaml

    tuning = yaml.safe_load((Path(a["out"]) / "config.yaml").read_text())["tuning"]["phase 1"]
    return {
        "tuning": tuning,  # the threads the run chose (at its start, or at a re-check), and the measured figures
        "images": a["images"],
        "epoch_seconds": seconds,
        "train_call_seconds": wall,
        "env_at_start": at_start,
        "env_after_import": env_seen(),
    }


def run_plain(a: dict) -> dict:
    """A plain PyTorch loop as a tutorial writes it: nn.Sequential, DataLoader over a TensorDataset, Adam."""
    at_start = env_seen()
    import torch
    import torch.nn.functional as F
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    torch.set_num_threads(a["threads"])
    torch.manual_seed(0)
    data = Path(a["data"])
    images = torch.from_numpy(np.load(data / "images.npy"))  # N×32×32×3 uint8
    x = images.permute(0, 3, 1, 2).float().div(255).contiguous()  # N×3×32×32, the usual NCHW layout
    mean, std = x.mean(dim=(0, 2, 3), keepdim=True), x.std(dim=(0, 2, 3), keepdim=True)
    x = (x - mean) / std
    y = torch.from_numpy(np.load(data / "labels.npy")).long()
    loader = DataLoader(TensorDataset(x, y), batch_size=a["batch_size"], shuffle=True)
    model = nn.Sequential(
        nn.Conv2d(3, 32, 3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(64, 64, 3),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(64 * 4 * 4, 64),
        nn.ReLU(),
        nn.Linear(64, CLASSES),
    )
    opt = torch.optim.Adam(model.parameters(), lr=0.001)
    seconds = []
    for _ in range(a["epochs"]):
        t0 = time.perf_counter()
        model.train()
        for xb, yb in loader:
            opt.zero_grad()
            loss = F.cross_entropy(model(xb), yb)
            loss.backward()
            opt.step()
        seconds.append(time.perf_counter() - t0)
    return {"images": len(y), "epoch_seconds": seconds, "env_at_start": at_start, "env_after_import": env_seen()}


WORKERS = {"convscope": run_convscope, "plain": run_plain}


def run_engine(name: str, a: dict, keras: keras_env.KerasEnv | None) -> dict:
    """One run of engine `name` in a fresh subprocess with its own environment (engine_env)."""
    engine = ENGINES[name]
    a = {**a, **engine.args, "threads": max(1, a["threads"] - engine.fewer_threads)}
    env = engine_env(engine)
    if engine.worker == "keras":
        data = Path(a["data"])
        files = {"images": str(data / "images.npy"), "labels": str(data / "labels.npy")}
        # as keras_env.run_worker, but with this engine's environment; TF's info chatter silenced
        command = [str(keras.python), str(keras_env.WORKER), json.dumps({**a, "task": "throughput", **files})]
        result = common.run_json(command, WORKER_TIMEOUT, env={**env, "TF_CPP_MIN_LOG_LEVEL": "1"})
        result["env_at_start"] = {k: env[k] for k in TUNING_VARS if k in env}
    else:
        command = [common.python(), str(Path(__file__).resolve()), "--worker", engine.worker]
        result = common.run_json(command + ["--worker-args", json.dumps(a)], WORKER_TIMEOUT, env=env)
    result["engine"] = name
    result["threads"] = a["threads"]
    return result


def images_per_s(run: dict) -> float:
    """Images per second over the epochs after the warm-up one (all epochs if there is only one)."""
    timed = run["epoch_seconds"][1:] or run["epoch_seconds"]
    return run["images"] * len(timed) / sum(timed)


# -- the benchmark ----------------------------------------------------------------------------------------------------
def busy_levels(text: str) -> list[int]:
    try:
        levels = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"--busy takes numbers of processes, e.g. 1 or 0,1 (not {text!r})") from None
    if not levels or levels[0] < 0:
        raise argparse.ArgumentTypeError("--busy takes numbers >= 0, e.g. 1 or 0,1")
    return levels


def variant_names(text: str) -> list[str]:
    names = VARIANTS if text == "all" else [x.strip() for x in text.split(",") if x.strip()]
    unknown = [x for x in names if x not in VARIANTS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown variant {', '.join(unknown)}; known: {', '.join(VARIANTS)}, all")
    return names


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    common.add_common_args(p)
    p.add_argument("--batch-size", type=int, default=64, help="images per step, every engine (default 64)")
    p.add_argument(
        "--images",
        type=int,
        help="training images per epoch (default 20000: long enough that convscope tunes; --quick 512: too short)",
    )
    p.add_argument("--epochs", type=int, help="epochs per run, the first one a warm-up (default 3; --quick 2)")
    p.add_argument("--rounds", type=int, help="rounds of one run per engine and level (default 3; --quick 1)")
    p.add_argument(
        "--busy",
        type=busy_levels,
        default=[0],
        metavar="N[,N…]",
        help="competitor processes (single-threaded busy loops) running beside each engine run (default 0: quiet);\n"
        "several levels, e.g. 0,1: every engine at each, in the same rounds, and a busy/quiet table",
    )
    p.add_argument(
        "--variants",
        type=variant_names,
        default=[],
        metavar="V[,V…]",
        help="extra engines for comparison: " + ", ".join(VARIANTS) + ", or all",
    )
    p.add_argument(
        "--bf16", action="store_true", help="also convscope --precision bf16 (fast on CPUs with AMX; others stay fp32)"
    )
    p.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    p.add_argument("--worker-args", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    quick = args.quick
    args.images = args.images or (512 if quick else 20_000)
    args.epochs = args.epochs or (2 if quick else 3)
    args.rounds = args.rounds or (1 if quick else 3)
    if args.images < 5 or args.epochs < 1 or args.rounds < 1:
        p.error("--images must be >= 5 (five CIFAR batch files), --epochs and --rounds >= 1")
    return args


def label(engine: str, busy: int) -> str:
    """The key of one engine at one level in `summary` and `runs`: the engine's name alone when quiet."""
    return engine if busy == 0 else f"{engine}+busy{busy}"


def processes(n: int) -> str:
    return f"{n} busy process" + ("es" if n != 1 else "")


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.worker:  # inside one engine's subprocess
        print(json.dumps(WORKERS[args.worker](json.loads(args.worker_args))), flush=True)
        return

    from convscope.presets import get_preset
    from convscope.shapes import infer

    load_before = list(os.getloadavg())
    facts = common.machine_facts(args.threads)
    top_before = common.top_snapshot()
    n, repeats = (1024, 3) if args.quick else (2048, 7)
    peak = common.sgemm_peak(args.threads, n, repeats)
    common.print_machine(facts, peak, f"float32 {n}×{n} matmul, best of {repeats}")
    keras, keras_why = (None, "not asked for (--keras)")
    if args.keras:
        keras, keras_why = keras_env.ensure(install=True)
        if keras is None:
            print(f"Keras column left out: {keras_why}")
    engines = (
        ["convscope", "convscope-active"]
        + (["convscope-bf16"] if args.bf16 else [])
        + ["plain"]
        + (["keras"] if keras else [])
        + args.variants
    )
    levels = args.busy
    configs = [(e, b) for b in levels for e in engines]
    macs = infer(get_preset(PRESET)).macs  # forward multiply-adds per image
    train_flops = 3 * 2 * macs  # forward + backward (≈ 2× forward): 3 × forward; 2 FLOPs per multiply-add
    alone = common.competitor_rate(1.0 if args.quick else 3.0) if any(levels) else None
    if alone:
        print(f"one competitor alone: {alone:.0f} loops/s (a whole core)")
    if SHELL_TUNING:
        print("removed from the engines' environment: " + " ".join(f"{k}={v}" for k, v in SHELL_TUNING.items()))

    runs: dict[str, list[dict]] = {label(e, b): [] for e, b in configs}
    with tempfile.TemporaryDirectory(prefix="convscope-bench-") as tmp:
        data = Path(tmp) / "cifar-10-batches-bin"
        data.mkdir()
        make_data(data, args.images)
        print(
            f"{args.images} random 32×32×3 images, batch {args.batch_size}, {args.epochs} epochs per run "
            f"(first one dropped), {args.rounds} rounds, {args.threads} threads, "
            + "busy processes: "
            + ", ".join(map(str, levels))
        )
        for r in range(args.rounds):
            order = configs[r % len(configs) :] + configs[: r % len(configs)]  # rotate: no run always goes first
            for engine, busy in order:
                a = {
                    "data": str(data),
                    "images": args.images,
                    "epochs": args.epochs,
                    "batch_size": args.batch_size,
                    "threads": args.threads,
                    "out": str(Path(tmp) / f"run-{r}-{engine}-{busy}"),
                }
                load = os.getloadavg()[0]
                with common.Competitors(busy, COMPETITOR_LIMIT) as competitors:
                    result = run_engine(engine, a, keras)
                result["round"] = r + 1
                result["busy"] = busy
                result["images_per_s"] = images_per_s(result)
                result["load_1min_before_after"] = [load, os.getloadavg()[0]]
                if busy:
                    result["competitors"] = competitors.results
                    result["competitor_core_share"] = [x / alone for x in competitors.loops_per_s]
                runs[label(engine, busy)].append(result)
                share = result.get("competitor_core_share")
                print(
                    f"  round {r + 1} {engine:24s} {processes(busy):17s} {result['images_per_s']:7.0f} images/s  "
                    + "epochs "
                    + ", ".join(f"{s:.2f}" for s in result["epoch_seconds"])
                    + " s"
                    + (f"  (competitors got {', '.join(f'{x:.0%}' for x in share)} of a core)" if share else "")
                    + (
                        f"  [{result['tuning']['threads']} threads, {result['tuning']['how']}]"
                        if "tuning" in result
                        else ""
                    )
                )

    summary = {}
    for (engine, busy), key in zip(configs, runs, strict=True):
        engine_runs = runs[key]
        epochs_per_s = [x["images_per_s"] / x["images"] for x in engine_runs]
        speeds = [x["images_per_s"] for x in engine_runs]
        ips = common.median(epochs_per_s) * args.images
        summary[key] = {
            "engine": engine,
            "busy": busy,
            "images_per_s": ips,
            "epochs_per_s": common.median(epochs_per_s),
            "images_per_s_min": min(speeds),
            "images_per_s_max": max(speeds),
            "gflops": ips * train_flops / 1e9,
            "flop_utilisation": ips * train_flops / (peak * 1e9),
        }
        shares = [s for x in engine_runs for s in x.get("competitor_core_share", [])]
        if shares:
            summary[key]["competitor_core_share"] = common.median(shares)
    rows = [
        [
            s["engine"],
            s["busy"],
            f"{s['images_per_s']:.0f}",
            f"{s['images_per_s_min']:.0f}–{s['images_per_s_max']:.0f}",
            f"{s['gflops']:.1f}",
            f"{s['flop_utilisation']:.1%}",
        ]
        for s in summary.values()
    ]
    common.print_table(
        ["engine", "busy processes", "images/s (median)", "range over rounds", "GFLOP/s", "of sgemm peak"],
        rows,
        f"training throughput, {PRESET}, batch {args.batch_size}, {args.threads} threads",
    )

    busy_table = {}  # engine -> {quiet, busy N, N/quiet}: the README's table
    for engine in engines:
        row = {f"busy{b}_images_per_s": summary[label(engine, b)]["images_per_s"] for b in levels}
        if 0 in levels:
            for b in levels[1:]:
                row[f"busy{b}_over_quiet"] = row[f"busy{b}_images_per_s"] / row["busy0_images_per_s"]
        busy_table[engine] = row
    if len(levels) > 1:
        headers = ["engine"]
        for b in levels:
            headers.append("quiet images/s" if b == 0 else f"{'one' if b == 1 else b} {processes(b)[2:]} images/s")
        headers += [f"{'busy' if b == 1 else processes(b)}/quiet" for b in levels[1:] if 0 in levels]
        table_rows = []
        for engine, row in busy_table.items():
            cells = [engine] + [f"{row[f'busy{b}_images_per_s']:,.0f}" for b in levels]
            cells += [f"{row[f'busy{b}_over_quiet']:.0%}" for b in levels[1:] if 0 in levels]
            table_rows.append(cells)
        common.print_table(
            headers,
            table_rows,
            f"quiet and busy: {PRESET}, batch {args.batch_size}, {args.threads} threads on "
            f"{facts['cores']} cores; a busy process = one single-threaded CPU-bound loop",
        )

    ratios = {}
    for b in levels:
        ours = [e for e in engines if e.startswith("convscope")]
        others = [e for e in engines if e not in ours]
        for o in ours:
            for e in others:
                ratios[f"{label(o, b)}/{label(e, b)}"] = (
                    summary[label(o, b)]["images_per_s"] / summary[label(e, b)]["images_per_s"]
                )
        if "convscope-active" in engines:
            ratios[f"{label('convscope', b)}/{label('convscope-active', b)}"] = (
                summary[label("convscope", b)]["images_per_s"] / summary[label("convscope-active", b)]["images_per_s"]
            )
    main_ones = [k for k in ratios if not any(v in k for v in VARIANTS)]  # all of them in the JSON
    print("ratios: " + ", ".join(f"{k} {ratios[k]:.2f}×" for k in main_ones))

    goals = {}  # issue 27's goals: ratios side by side, in this run
    quiet = summary["convscope"]
    goals["convscope share of the sgemm peak, quiet"] = (quiet["flop_utilisation"], ">=", 0.50)
    goals["convscope/plain quiet"] = (ratios["convscope/plain"], ">=", 1.10)
    if "keras" in engines:
        goals["convscope/keras quiet"] = (ratios["convscope/keras"], ">=", 1.25)
    if "convscope-active" in engines:
        goals["quiet cost of the busy-machine defaults (vs ACTIVE)"] = (
            1 - ratios["convscope/convscope-active"],
            "<=",
            0.03,
        )
    if 0 in levels and 1 in levels:
        goals["convscope busy/quiet"] = (busy_table["convscope"]["busy1_over_quiet"], ">=", 0.80)
        if "keras" in engines:
            goals["convscope/keras busy"] = (ratios[f"{label('convscope', 1)}/{label('keras', 1)}"], ">=", 1.0)
    met = {">=": lambda x, y: x >= y, "<=": lambda x, y: x <= y}

    def shown(key: str, x: float) -> str:  # engine/engine ratios as 1.25×, the rest as shares
        return f"{x:.2f}×" if "/" in key and "busy/quiet" not in key else f"{x:.0%}"

    goals = {
        k: {"value": v, "goal": f"{op} {shown(k, g)}", "met": met[op](v, g), "shown": shown(k, v)}
        for k, (v, op, g) in goals.items()
    }
    print(
        "goals: "
        + "; ".join(
            f"{k} {v['shown']} (goal {v['goal']}: {'met' if v['met'] else 'NOT met'})" for k, v in goals.items()
        )
    )
    if not keras:
        print(f"no Keras column: {keras_why}")
    print(
        f"model FLOP utilisation = images/s × {train_flops / 1e6:.1f} MFLOP per training image ÷ {peak:.0f} GFLOP/s; "
        f"training FLOPs = 3 × forward (backward ≈ 2 × forward), forward = 2 × {macs:,} multiply-adds "
        f"(convscope.shapes.infer)"
    )
    load_after = list(os.getloadavg())
    print("load average " + ", ".join(f"{x:.2f}" for x in load_after) + " at the end")
    path = common.write_json(
        common.result_name("train_throughput", args),
        {
            "benchmark": "train_throughput",
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
            "settings": {k: v for k, v in vars(args).items() if not k.startswith("worker")},
            "data": "random uint8 images and labels (throughput does not depend on the pixels)",
            "machine": facts,
            "load_average_before": load_before,
            "load_average_after": load_after,
            "top_before": top_before,
            "top_after": common.top_snapshot(),
            "sgemm_peak_gflops": peak,
            "forward_macs_per_image": macs,
            "train_flops_per_image": train_flops,
            "flops_convention": "training = 3 × forward; forward = 2 FLOPs per multiply-add",
            "keras": keras.info if keras else {"skipped": keras_why},
            "engines": {
                e: {
                    "what": ENGINES[e].what,
                    "env_set": ENGINES[e].env,
                    "env_removed_from_shell": SHELL_TUNING,
                    "threads": max(1, args.threads - ENGINES[e].fewer_threads),
                    **({"worker_args": ENGINES[e].args} if ENGINES[e].args else {}),
                }
                for e in engines
            },
            "busy": {
                "levels": levels,
                "competitor": "a single-threaded pure-Python arithmetic loop per process (common.COMPETITOR_CODE), "
                "env " + " ".join(f"{k}={v}" for k, v in common.COMPETITOR_ENV.items()),
                "competitor_alone_loops_per_s": alone,
            },
            "summary": summary,
            "busy_table": busy_table,
            "ratios": ratios,
            "goals": goals,
            "runs": runs,
        },
    )
    print(f"results: {path.relative_to(common.ROOT)}")


if __name__ == "__main__":
    main()
