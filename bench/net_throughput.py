"""Training throughput (images/s) of several nets, convscope's trainer against a plain PyTorch loop, and how close
each comes to the machine's measured matrix-multiply peak.

    .venv/bin/python bench/net_throughput.py [--nets a,b] [--rounds R] [--threads T] [--quick]

Nets: fashion-fast (28×28×1), cifar-3conv and cifar-fast (32×32×3), and the offline EfficientNet-Lite0 at 224×224 in
two transfer cases: lite0-frozen (base frozen, new head) and lite0-top2 (fine-tuning the base's last 2 blocks).
Engines, each run in a fresh subprocess (environment less common.THREAD_VARS), same batch size and threads:
  convscope         convscope.train / convscope.transfer (the public API) on random uint8 arrays (data=(x, y)),
                    augment none, AdamW at 1e-3 with a constant rate, no validation; precision: convscope's default.
                    Per-epoch `seconds` of metrics.csv (the training loop alone). lite0-top2: one head epoch first
                    (phase 1), then the fine-tuning epochs; only those count.
  convscope-cached  lite0-frozen with cache_features=True: the base's features computed once before epoch 1 (the
                    time is read from train.log and shown apart); the epochs then train the head alone. That is what
                    a user's epochs cost with --cache-features, not a like-for-like match with the plain loop.
  plain             a plain loop as a tutorial writes it: convscope.build(spec) in NCHW contiguous memory (the
                    same layers), float images standardised once, DataLoader(TensorDataset, shuffle=True), AdamW at
                    1e-3, cross-entropy; for Lite0 the base's parameters have requires_grad False (lite0-top2: all
                    but its last 2 blocks and top) and every image goes through the base every step.
The first epoch of each run is a warm-up and dropped; its speed is reported apart. Rounds rotate the order of runs;
the figure is the median over rounds, with the range. Training GFLOP/s = images/s × training FLOPs per image:
presets 3 × forward (backward ≈ 2 × forward), forward = 2 × multiply-adds of convscope.shapes.infer; Lite0 cases
count only what is computed: the whole forward + 2 × the forward of the layers that train (no backward through the
frozen part), forward FLOPs counted by torch.utils.flop_counter. Shares are of the fp32 matmul peak (median of
repeats, measured before and after the runs; the higher median counts: other jobs on a shared machine lower it), and
of the bf16 one where the CPU has bf16 instructions (convscope.device.cpu_has_fast_bf16).
--plain-passive adds the plain loop with OMP_WAIT_POLICY=PASSIVE (convscope's default wait policy; its spinning
threads are what a busy machine punishes most).
Results: bench/results/net_throughput.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402 (bench/ is not a package: scripts run as files)

CLASSES = 10
TEST_IMAGES = 20  # convscope tests once at the end, outside the timed epochs: keep it small
WORKER_TIMEOUT = 1800
LR = 1e-3


@dataclass(frozen=True)
class Net:
    shape: tuple[int, int, int]  # H×W×C of the images
    batch: int
    images: int  # training images per epoch (--quick: quick)
    quick: int
    unfreeze: int | None = None  # transfer nets: blocks of the base that train (0: frozen); None: a preset


NETS = {
    "fashion-fast": Net((28, 28, 1), 128, 3072, 512),
    "cifar-3conv": Net((32, 32, 3), 128, 3072, 512),
    "cifar-fast": Net((32, 32, 3), 256, 1024, 512),
    "lite0-frozen": Net((224, 224, 3), 32, 64, 64, unfreeze=0),
    "lite0-top2": Net((224, 224, 3), 32, 64, 64, unfreeze=2),
}


def engines_of(net: str, passive: bool = False) -> list[str]:
    cached = ["convscope-cached"] if net == "lite0-frozen" else []
    return ["convscope", "plain"] + (["plain-passive"] if passive else []) + cached


def spec_of(net: str):
    """The NetSpec of `net`: a preset, or Lite0 → global average pool → dropout → dense (convscope transfer's)."""
    if NETS[net].unfreeze is None:
        from convscope.presets import get_preset

        return get_preset(net)
    from convscope.pretrained.finetune import transfer_spec

    return transfer_spec("efficientnet-lite0", NETS[net].shape[0])


# -- the workers (each in its own subprocess) -------------------------------------------------------------------------
def load_data(a: dict) -> tuple[np.ndarray, np.ndarray]:
    folder = Path(a["data"])
    return np.load(folder / "x.npy"), np.load(folder / "y.npy")  # N×H×W×C uint8, N int64


def run_convscope(a: dict) -> dict:
    import convscope

    x, y = load_data(a)
    n = len(y) - TEST_IMAGES
    net = NETS[a["net"]]
    settings = dict(
        test_data=(x[n:], y[n:]),
        epochs=a["epochs"],
        batch_size=net.batch,
        optimizer="adamw",
        lr=LR,
        schedule="constant",
        augment="none",
        label_smoothing=0.0,
        val_fraction=0.0,
        threads=a["threads"],
        out=a["out"],
        report=False,
        verbose=0,
    )
    t0 = time.perf_counter()
    if net.unfreeze is None:
        convscope.train(a["net"], x[:n], y[:n], **settings)
    else:
        if net.unfreeze:  # one epoch of the head (phase 1), then the timed fine-tuning epochs (phase 2)
            settings |= {"epochs": 1, "finetune_epochs": a["epochs"], "unfreeze_blocks": net.unfreeze}
        else:
            settings |= {"cache_features": a["engine"] == "convscope-cached"}
        convscope.transfer("efficientnet-lite0", (x[:n], y[:n]), image_size=net.shape[0], **settings)
    wall = time.perf_counter() - t0
    with open(Path(a["out"]) / "metrics.csv", newline="") as f:
        seconds = [float(row["seconds"]) for row in csv.DictReader(f)]
    log = (Path(a["out"]) / "train.log").read_text(encoding="utf-8")
    cached = re.search(r"cached the base's features of \d+ images in ([\d.]+) s", log)
    counted = re.search(r": (\d+) images, \d+ batches", log)
    precision = re.search(r"precision: [^\n]*", log) or re.search(r"precision[^\n]*", log)
    return {
        "images": int(counted.group(1)) if counted else n,
        "epoch_seconds": seconds[1:] if net.unfreeze else seconds,  # lite0-top2: the fine-tuning epochs
        "head_epoch_seconds": seconds[:1] if net.unfreeze else [],
        "cache_seconds": float(cached.group(1)) if cached else None,
        "train_call_seconds": wall,
        "precision_line": precision.group(0) if precision else None,
    }


def run_plain(a: dict) -> dict:
    """A plain PyTorch loop: the same layers (convscope.build) in NCHW memory, DataLoader, AdamW, cross-entropy."""
    import torch
    import torch.nn.functional as F
    from torch.utils.data import DataLoader, TensorDataset

    import convscope

    torch.set_num_threads(a["threads"])
    torch.manual_seed(0)
    net = NETS[a["net"]]
    x, y = load_data(a)
    n = len(y) - TEST_IMAGES
    images = torch.from_numpy(x[:n]).permute(0, 3, 1, 2).float().div(255).contiguous()  # N×C×H×W
    images = (images - images.mean(dim=(0, 2, 3), keepdim=True)) / images.std(dim=(0, 2, 3), keepdim=True)
    loader = DataLoader(TensorDataset(images, torch.from_numpy(y[:n])), batch_size=net.batch, shuffle=True)
    model = convscope.build(spec_of(a["net"])).to(memory_format=torch.contiguous_format)
    if net.unfreeze is not None:
        model.base.requires_grad_(False)
        if net.unfreeze:  # the last blocks and the top layers after them, as a fine-tuning tutorial unfreezes
            for module in [*model.base.blocks[-net.unfreeze :], *model.base.top]:
                module.requires_grad_(True)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=LR, weight_decay=5e-4)
    seconds = []
    for _ in range(a["epochs"]):
        t0 = time.perf_counter()
        model.train()  # a BaseNet keeps its batchnorm layers in inference mode (pretrained/bases.py)
        for xb, yb in loader:
            opt.zero_grad()
            loss = F.cross_entropy(model(xb), yb)
            loss.backward()
            opt.step()
        seconds.append(time.perf_counter() - t0)
    return {"images": n, "epoch_seconds": seconds, "head_epoch_seconds": [], "cache_seconds": None}


WORKERS = {
    "convscope": run_convscope,
    "convscope-cached": run_convscope,
    "plain": run_plain,
    "plain-passive": run_plain,
}


def run_engine(engine: str, a: dict) -> dict:
    command = [common.python(), str(Path(__file__).resolve()), "--worker", engine, "--worker-args", json.dumps(a)]
    env = common.clean_env({"CONVSCOPE_DATA_HOME": a["home"]})
    if engine == "plain-passive":
        env["OMP_WAIT_POLICY"] = "PASSIVE"  # the arrays' .npz goes to the temp folder
    return common.run_json(command, WORKER_TIMEOUT, env=env)


# -- FLOPs ------------------------------------------------------------------------------------------------------------
def train_flops(net: str) -> dict:
    """Training FLOPs per image of `net` and how they were counted (see the module's docstring)."""
    from convscope.shapes import infer

    spec = spec_of(net)
    shapes = infer(spec)
    if NETS[net].unfreeze is None:
        return {"train": 6 * shapes.macs, "forward_macs": shapes.macs, "how": "3 × 2 × shapes.infer multiply-adds"}
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    import convscope

    model = convscope.build(spec, pretrained=False).train(False)
    k = NETS[net].unfreeze
    trainable = [*(model.base.blocks[-k:] if k else []), *(model.base.top if k else []), *model.head()]
    seen: list[tuple] = []
    hooks = [m.register_forward_hook(lambda m, inp, out: seen.append((m, inp))) for m in trainable]
    with torch.no_grad(), FlopCounterMode(display=False) as everything:
        model(torch.zeros(1, 3, *NETS[net].shape[:2]))
    for hook in hooks:
        hook.remove()
    with torch.no_grad(), FlopCounterMode(display=False) as part:
        for m, inp in seen:
            m(*inp)
    forward, trained = everything.get_total_flops(), part.get_total_flops()
    head = 6 * shapes.layers[-1].macs  # the dense layer, trained on cached features
    return {
        "train": forward + 2 * trained,
        "forward_macs": shapes.macs,
        "forward_flops_counted": forward,
        "trainable_forward_flops_counted": trained,
        "cached_train": head,
        "how": "forward of the whole net + 2 × forward of the layers that train (backward ≈ 2 × forward; none "
        "through frozen layers), forward FLOPs counted by torch.utils.flop_counter (convolutions and matmuls; "
        "its backward counts are wrong for depthwise convolutions); cached features: 3 × 2 × the dense layer's "
        "multiply-adds",
    }


# -- the benchmark ----------------------------------------------------------------------------------------------------
def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    common.add_common_args(p)  # --keras is accepted and ignored here
    p.add_argument("--nets", default=",".join(NETS), help="comma-separated, of: " + ", ".join(NETS))
    p.add_argument("--rounds", type=int, help="rounds of one run per net and engine (default 3; --quick 1)")
    p.add_argument("--epochs", type=int, help="epochs per run, the first a warm-up (default 3; --quick 2)")
    p.add_argument("--plain-passive", action="store_true", help="also the plain loop with OMP_WAIT_POLICY=PASSIVE")
    p.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    p.add_argument("--worker-args", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.nets = [x.strip() for x in args.nets.split(",") if x.strip()]
    unknown = [x for x in args.nets if x not in NETS]
    if unknown or not args.nets:
        p.error(f"--nets: unknown {', '.join(unknown) or 'nothing given'}; known: {', '.join(NETS)}")
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.epochs = args.epochs or (2 if args.quick else 3)
    if args.rounds < 1 or args.epochs < 2:
        p.error("--rounds must be >= 1 and --epochs >= 2 (the first epoch is dropped)")
    return args


def make_data(folder: Path, net: Net, images: int) -> None:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    np.save(folder / "x.npy", rng.integers(0, 256, (images + TEST_IMAGES, *net.shape), dtype=np.uint8))
    np.save(folder / "y.npy", rng.integers(0, CLASSES, images + TEST_IMAGES, dtype=np.int64))


def rate(images: int, seconds: list[float]) -> float:
    return images * len(seconds) / sum(seconds) if seconds else float("nan")


def summarise(runs: list[dict]) -> dict:
    speeds = [r["images_per_s"] for r in runs]
    out = {"images_per_s": common.median(speeds), "min": min(speeds), "max": max(speeds)}
    out["first_epoch_images_per_s"] = common.median([r["first_epoch_images_per_s"] for r in runs])
    caches = [r["cache_seconds"] for r in runs if r.get("cache_seconds") is not None]
    if caches:
        out["cache_seconds"] = common.median(caches)
    return out


def measure_peaks(threads: int, quick: bool) -> dict:
    from convscope.device import cpu_has_fast_bf16

    n, repeats = (1024, 3) if quick else (2048, 7)
    peaks = {"fp32": common.matmul_peak(threads, "float32", n, repeats)}
    if cpu_has_fast_bf16():
        peaks["bf16"] = common.matmul_peak(threads, "bfloat16", n, repeats)
    else:
        peaks["bf16"] = {"skipped": "no bf16 instructions (AMX or AVX512-BF16): not measured"}
    return peaks


def print_peaks(peaks: dict, threads: int, when: str) -> None:
    for name, p in peaks.items():
        if "skipped" in p:
            print(f"{name} matmul peak: {p['skipped']}")
            continue
        print(
            f"{name} matmul peak {when}: {p['median']:.1f} GFLOP/s, median of {len(p['samples'])} {p['n']}×{p['n']} "
            f"products (range {min(p['samples']):.1f}–{p['best']:.1f}), {threads} threads"
        )


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.worker:  # inside one engine's subprocess
        print(json.dumps(WORKERS[args.worker](json.loads(args.worker_args))), flush=True)
        return
    load_before = list(os.getloadavg())
    top_before = common.top_snapshot()
    facts = common.machine_facts(args.threads)
    facts["cpu_flags"] = common.cpu_flags()
    peaks_before = measure_peaks(args.threads, args.quick)
    common.print_machine(facts)
    print(f"cpu flags: {' '.join(facts['cpu_flags']) or 'none of avx2/fma/avx512f/avx512_bf16/amx'}")
    print_peaks(peaks_before, args.threads, "before the runs")
    flops = {net: train_flops(net) for net in args.nets}
    configs = [(net, e) for net in args.nets for e in engines_of(net, args.plain_passive)]
    runs: dict[str, list[dict]] = {f"{n}/{e}": [] for n, e in configs}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="convscope-netbench-") as tmp:
        for net in args.nets:
            make_data(Path(tmp) / net, NETS[net], NETS[net].quick if args.quick else NETS[net].images)
        print(f"{args.rounds} rounds, {args.epochs} epochs per run (first dropped), {args.threads} threads")
        for r in range(args.rounds):
            order = configs[r % len(configs) :] + configs[: r % len(configs)]  # rotate: no run always goes first
            for net, engine in order:
                a = {"net": net, "engine": engine, "data": str(Path(tmp) / net), "home": str(Path(tmp) / "home")}
                a |= {"epochs": args.epochs, "threads": args.threads, "out": str(Path(tmp) / f"run-{r}-{net}-{engine}")}
                load = os.getloadavg()[0]
                result = run_engine(engine, a)
                seconds = result["epoch_seconds"]
                result |= {"round": r + 1, "load_1min_before_after": [load, os.getloadavg()[0]]}
                result |= {"images_per_s": rate(result["images"], seconds[1:])}
                result |= {"first_epoch_images_per_s": rate(result["images"], seconds[:1])}
                runs[f"{net}/{engine}"].append(result)
                cache = f", features cached in {result['cache_seconds']:.1f} s" if result["cache_seconds"] else ""
                print(
                    f"  round {r + 1} {net:13s} {engine:17s} {result['images_per_s']:8.1f} images/s  epochs "
                    + ", ".join(f"{s:.2f}" for s in seconds)
                    + f" s{cache}  (load {load:.2f})"
                )
    peaks_after = measure_peaks(args.threads, args.quick)
    print_peaks(peaks_after, args.threads, "after the runs")
    peaks = {k: max(peaks_before[k], peaks_after[k], key=lambda p: p.get("median", 0)) for k in peaks_before}
    fp32 = peaks["fp32"]["median"]
    summary = {key: summarise(v) for key, v in runs.items()}
    rows = []
    for net, engine in configs:
        s = summary[f"{net}/{engine}"]
        per_image = flops[net]["cached_train"] if engine == "convscope-cached" else flops[net]["train"]
        s["train_flops_per_image"] = per_image
        s["gflops"] = s["images_per_s"] * per_image / 1e9
        s["share_fp32_peak"] = s["gflops"] / fp32
        if "median" in peaks["bf16"]:
            s["share_bf16_peak"] = s["gflops"] / peaks["bf16"]["median"]
        plain = summary[f"{net}/plain"]["images_per_s"]
        s["over_plain"] = s["images_per_s"] / plain
        rows.append(
            [
                net,
                engine,
                f"{s['images_per_s']:,.1f}",
                f"{s['min']:,.1f}–{s['max']:,.1f}",
                f"{s['first_epoch_images_per_s']:,.1f}"
                + (f" (+{s['cache_seconds']:.1f} s caching)" if "cache_seconds" in s else ""),
                f"{s['over_plain']:.2f}×",
                f"{per_image / 1e9:.3g}",
                f"{s['gflops']:.2f}",
                f"{s['share_fp32_peak']:.1%}",
            ]
            + ([f"{s['share_bf16_peak']:.1%}"] if "share_bf16_peak" in s else [])
        )
    headers = ["net", "engine", "images/s (median)", "range", "first epoch images/s", "÷ plain"]
    headers += ["GFLOP per image", "GFLOP/s", "of fp32 peak"] + (["of bf16 peak"] if "median" in peaks["bf16"] else [])
    common.print_table(headers, rows, f"training throughput, {args.threads} threads, median of {args.rounds} rounds")
    load_after = list(os.getloadavg())
    print(f"shares of the fp32 peak {fp32:.1f} GFLOP/s (the higher median); GFLOP per training image:")
    for how in dict.fromkeys(flops[net]["how"] for net in args.nets):
        print(f"  {', '.join(n for n in args.nets if flops[n]['how'] == how)}: {how}")
    load = ", ".join(f"{x:.2f}" for x in load_after)
    print(f"took {time.perf_counter() - started:.0f} s; load average {load} at the end")
    path = common.write_json(
        common.result_name("net_throughput", args),
        {
            "benchmark": "net_throughput",
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
            "settings": {k: v for k, v in vars(args).items() if not k.startswith("worker")},
            "data": "random uint8 images and labels given as arrays (throughput does not depend on the pixels)",
            "nets": {n: {**NETS[n].__dict__, "flops": flops[n]} for n in args.nets},
            "machine": facts,
            "load_average_before": load_before,
            "load_average_after": load_after,
            "top_before": top_before,
            "top_after": common.top_snapshot(),
            "peaks": peaks,
            "peaks_before_after": [peaks_before, peaks_after],
            "summary": summary,
            "runs": runs,
        },
    )
    print(f"results: {path.relative_to(common.ROOT)}")


if __name__ == "__main__":
    main()
