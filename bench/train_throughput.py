"""Training throughput (images/s) of the cifar-3conv network on 32×32×3 images: convscope's trainer, a plain PyTorch
loop as a tutorial writes it, and (with --keras) Keras' model.fit — same network, batch size, threads, Adam at 1e-3,
no augmentation.

    .venv/bin/python bench/train_throughput.py [--keras] [--threads T] [--batch-size B] [--quick]

The images and labels are random (uniform uint8 pixels, uniform labels): throughput does not depend on what the
pixels show, and random data needs no download. Every run is a fresh subprocess (no shared allocator or thread
state); each round runs every engine once, in an order that rotates between rounds; the first epoch of each run is a
warm-up and is dropped (Keras traces its graph then). The figure per engine is the median over rounds of
(post-warm-up epochs ÷ their seconds) × images. Results: bench/results/train_throughput.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402 (bench/ is not a package: scripts run as files)
import keras_env  # noqa: E402

PRESET = "cifar-3conv"
CLASSES = 10
TEST_IMAGES = 100  # convscope evaluates its test split once at the end (outside the timed epochs): keep it small
WORKER_TIMEOUT = 3600  # seconds per engine run


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
def run_convscope(a: dict) -> dict:
    """convscope's own trainer; the per-epoch `seconds` of metrics.csv time the training loop alone."""
    from convscope.training.loop import train

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
        threads=a["threads"],
        precision=a.get("precision", "fp32"),
        out=a["out"],
        report=False,
    )
    wall = time.perf_counter() - t0
    with open(Path(a["out"]) / "metrics.csv", newline="") as f:
        seconds = [float(row["seconds"]) for row in csv.DictReader(f)]
    engine = "convscope" if a.get("precision", "fp32") == "fp32" else "convscope-bf16"
    return {"engine": engine, "images": a["images"], "epoch_seconds": seconds, "train_call_seconds": wall}


def run_plain(a: dict) -> dict:
    """A plain PyTorch loop as a tutorial writes it: nn.Sequential, DataLoader over a TensorDataset, Adam."""
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
    return {"engine": "plain", "images": len(y), "epoch_seconds": seconds}


WORKERS = {
    "convscope": run_convscope,
    # `--precision bf16`: the forward pass in bfloat16 (weights and optimizer float32); the others stay float32
    "convscope-bf16": lambda a: run_convscope({**a, "precision": "bf16"}),
    "plain": run_plain,
}


def run_engine(engine: str, a: dict, keras: keras_env.KerasEnv | None) -> dict:
    if engine == "keras":
        data = Path(a["data"])
        files = {"images": str(data / "images.npy"), "labels": str(data / "labels.npy")}
        return keras_env.run_worker(keras, {**a, "task": "throughput", **files}, WORKER_TIMEOUT)
    command = [common.python(), str(Path(__file__).resolve()), "--worker", engine, "--worker-args", json.dumps(a)]
    return common.run_json(command, WORKER_TIMEOUT)  # inherits OMP_WAIT_POLICY (see main)


def images_per_s(run: dict) -> float:
    """Images per second over the epochs after the warm-up one (all epochs if there is only one)."""
    timed = run["epoch_seconds"][1:] or run["epoch_seconds"]
    return run["images"] * len(timed) / sum(timed)


# -- the benchmark ----------------------------------------------------------------------------------------------------
def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    common.add_common_args(p)
    p.add_argument("--batch-size", type=int, default=64, help="images per step, every engine (default 64)")
    p.add_argument("--images", type=int, help="training images per epoch (default 10000; --quick 512)")
    p.add_argument("--epochs", type=int, help="epochs per run, the first one a warm-up (default 3; --quick 2)")
    p.add_argument("--rounds", type=int, help="rounds of one run per engine (default 3; --quick 1)")
    p.add_argument(
        "--omp-wait-policy",
        choices=["passive", "active"],
        help="OMP_WAIT_POLICY for the PyTorch engines (default: unset, OpenMP's own). On a machine shared with other\n"
        "busy jobs, torch's spinning OpenMP threads lose much time; passive makes idle threads sleep at once",
    )
    p.add_argument(
        "--bf16", action="store_true", help="also convscope --precision bf16 (fast on CPUs with AMX; others stay fp32)"
    )
    p.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    p.add_argument("--worker-args", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    quick = args.quick
    args.images = args.images or (512 if quick else 10_000)
    args.epochs = args.epochs or (2 if quick else 3)
    args.rounds = args.rounds or (1 if quick else 3)
    if args.images < 5 or args.epochs < 1 or args.rounds < 1:
        p.error("--images must be >= 5 (five CIFAR batch files), --epochs and --rounds >= 1")
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.worker:  # inside one engine's subprocess
        print(json.dumps(WORKERS[args.worker](json.loads(args.worker_args))), flush=True)
        return

    if args.omp_wait_policy:  # before torch starts OpenMP: the sgemm peak and every PyTorch worker get it
        os.environ["OMP_WAIT_POLICY"] = args.omp_wait_policy.upper()
    from convscope.presets import get_preset
    from convscope.shapes import infer

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
    engines = ["convscope"] + (["convscope-bf16"] if args.bf16 else []) + ["plain"] + (["keras"] if keras else [])
    macs = infer(get_preset(PRESET)).macs  # forward multiply-adds per image
    train_flops = 3 * 2 * macs  # forward + backward (≈ 2× forward): 3 × forward; 2 FLOPs per multiply-add

    runs: dict[str, list[dict]] = {e: [] for e in engines}
    with tempfile.TemporaryDirectory(prefix="convscope-bench-") as tmp:
        data = Path(tmp) / "cifar-10-batches-bin"
        data.mkdir()
        make_data(data, args.images)
        print(
            f"{args.images} random 32×32×3 images, batch {args.batch_size}, {args.epochs} epochs per run "
            f"(first one dropped), {args.rounds} rounds, {args.threads} threads"
            + (f", OMP_WAIT_POLICY={args.omp_wait_policy} for PyTorch" if args.omp_wait_policy else "")
        )
        for r in range(args.rounds):
            order = engines[r % len(engines) :] + engines[: r % len(engines)]  # rotate: no engine always goes first
            for engine in order:
                a = {
                    "data": str(data),
                    "images": args.images,
                    "epochs": args.epochs,
                    "batch_size": args.batch_size,
                    "threads": args.threads,
                    "out": str(Path(tmp) / f"run-{r}-{engine}"),
                }
                result = run_engine(engine, a, keras)
                result["round"] = r + 1
                result["images_per_s"] = images_per_s(result)
                runs[engine].append(result)
                print(
                    f"  round {r + 1} {engine:9s} {result['images_per_s']:7.0f} images/s  epochs "
                    + ", ".join(f"{s:.2f}" for s in result["epoch_seconds"])
                    + " s"
                )

    summary = {}
    for engine, engine_runs in runs.items():
        epochs_per_s = [x["images_per_s"] / x["images"] for x in engine_runs]
        speeds = [x["images_per_s"] for x in engine_runs]
        ips = common.median(epochs_per_s) * args.images
        summary[engine] = {
            "images_per_s": ips,
            "epochs_per_s": common.median(epochs_per_s),
            "images_per_s_min": min(speeds),
            "images_per_s_max": max(speeds),
            "gflops": ips * train_flops / 1e9,
            "flop_utilisation": ips * train_flops / (peak * 1e9),
        }
    rows = []
    for engine, s in summary.items():
        rows.append(
            [
                engine,
                f"{s['images_per_s']:.0f}",
                f"{s['images_per_s_min']:.0f}–{s['images_per_s_max']:.0f}",
                f"{s['gflops']:.1f}",
                f"{s['flop_utilisation']:.1%}",
            ]
        )
    common.print_table(
        ["engine", "images/s (median)", "range over rounds", "GFLOP/s", "of sgemm peak"],
        rows,
        f"training throughput, {PRESET}, batch {args.batch_size}, {args.threads} threads"
        + (f", OMP_WAIT_POLICY={args.omp_wait_policy} (PyTorch)" if args.omp_wait_policy else ""),
    )
    ours = [e for e in engines if e.startswith("convscope")]
    ratios = {
        f"{o}/{e}": summary[o]["images_per_s"] / summary[e]["images_per_s"]
        for o in ours
        for e in engines
        if e not in ours
    }
    print("ratios: " + ", ".join(f"{k} {v:.2f}×" for k, v in ratios.items()))
    if not keras:
        print(f"no Keras column: {keras_why}")
    print(
        f"model FLOP utilisation = images/s × {train_flops / 1e6:.1f} MFLOP per training image ÷ {peak:.0f} GFLOP/s; "
        f"training FLOPs = 3 × forward (backward ≈ 2 × forward), forward = 2 × {macs:,} multiply-adds "
        f"(convscope.shapes.infer)"
    )
    path = common.write_json(
        common.result_name("train_throughput", args),
        {
            "benchmark": "train_throughput",
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
            "settings": {k: v for k, v in vars(args).items() if not k.startswith("worker")},
            "data": "random uint8 images and labels (throughput does not depend on the pixels)",
            "machine": facts,
            "top_before": top_before,
            "top_after": common.top_snapshot(),
            "sgemm_peak_gflops": peak,
            "forward_macs_per_image": macs,
            "train_flops_per_image": train_flops,
            "flops_convention": "training = 3 × forward; forward = 2 FLOPs per multiply-add",
            "keras": keras.info if keras else {"skipped": keras_why},
            "summary": summary,
            "ratios": ratios,
            "runs": runs,
        },
    )
    print(f"results: {path.relative_to(common.ROOT)}")


if __name__ == "__main__":
    main()
