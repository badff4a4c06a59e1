"""The search that chose cifar-fast's recipe: airbench-style networks and settings, trained with convscope's own
builder, optimizer and learning-rate schedule, scored on the CIFAR-10 JPEG folder's 10,000 test images.

    .venv/bin/python bench/cifar_sweep.py [--folder DIR] [--runs NAME,NAME] [--device cuda|cpu]

It measures accuracy only, so it runs where it is fastest: on a GPU when there is one (the whole grid took about
5 minutes on one H200), else on the CPU (hours). Each run: the network built from a spec, a seeded 10% (or `val`)
held out as convscope does, flips and 2-pixel translations (convscope's Augment) drawn on the device, bf16
autocast, test accuracy with and without mirror averaging. `white` is airbench's frozen whitening stem (the 2×2
filters set from the eigenvectors of the training patches' covariance); `ema` averages the weights
(torch.optim.swa_utils). Results: one JSON line per run in bench/results/cifar_sweep.jsonl. CPU speed of each
network is measured separately, by bench/cifar.py.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402 (bench/ is not a package: scripts run as files)

FOLDER = common.ROOT.parent / "shared" / "data" / "cifar10-jpg"
A, S = {"stem": 0}, {"stem": 24}  # 64-128-256 two-conv blocks without and with the 2×2 stem
GRID = {  # name: settings (defaults in `train_one`)
    "A12-lr0.2": A | {"seeds": [0, 1]},
    "A12-lr0.4": A | {"lr": 0.4},
    "A12-lr0.1": A | {"lr": 0.1},
    "A12-lr0.8": A | {"lr": 0.8},
    "A12-adamw-2e-3": A | {"optimizer": "adamw", "lr": 0.002},
    "A12-adamw-4e-3": A | {"optimizer": "adamw", "lr": 0.004},
    "A8": A | {"epochs": 8},
    "A15": A | {"epochs": 15, "seeds": [0, 1]},
    "A12-no-label-smoothing": A | {"label_smoothing": 0.0},
    "A12-relu": A | {"activation": "relu"},
    "A12-flips-only": A | {"translate": 0},
    "A12-batch256": A | {"batch_size": 256},
    "A12-wd1e-3": A | {"weight_decay": 1e-3},
    "A12-val0": A | {"val": 0.0},
    "A12-flatten-head": A | {"head": "flatten"},
    "B18-48-96-192": A | {"epochs": 18, "widths": [48, 96, 192]},
    "C20-32-64-128": A | {"epochs": 20, "widths": [32, 64, 128]},
    "C30-32-64-128": A | {"epochs": 30, "widths": [32, 64, 128]},
    "D10-64-256-256": A | {"epochs": 10, "widths": [64, 256, 256]},
    "single-conv-15": A | {"epochs": 15, "second": False},
    "single-conv-20": A | {"epochs": 20, "second": False},
    "S12": S,
    "S12-white": S | {"white": True, "seeds": [0, 1]},
    "S12-b256": S | {"batch_size": 256},
    "S12-b256-white": S | {"batch_size": 256, "white": True},
    "S12-b256-white-lr0.1": S | {"batch_size": 256, "white": True, "lr": 0.1},
    "S12-b256-white-ema0.9": S | {"batch_size": 256, "white": True, "ema": 0.9},
    "S12-b256-white-ema0.7": S | {"batch_size": 256, "white": True, "ema": 0.7},
    "S12-b256-white-bn-momentum0.4": S | {"batch_size": 256, "white": True, "bn_momentum": 0.4},
    "S12-b128-white": S | {"batch_size": 128, "white": True, "lr": 0.1},
    "S12-b256-white-val0": S | {"batch_size": 256, "white": True, "val": 0.0},
    "S12-b256-white-adamw": S | {"batch_size": 256, "white": True, "optimizer": "adamw", "lr": 0.004},
    "S24-b256-white": S | {"batch_size": 256, "white": True, "epochs": 24},
    "S40-b256-white": S | {"batch_size": 256, "white": True, "epochs": 40},
    "S12-96-192-384": S | {"batch_size": 256, "white": True, "widths": [96, 192, 384]},
    "S10-64-256-256": S | {"batch_size": 256, "white": True, "epochs": 10, "widths": [64, 256, 256]},
    "S14-b256": S | {"batch_size": 256, "epochs": 14, "seeds": [0, 1]},
    "S14-b256-val0.02 (cifar-fast)": S | {"batch_size": 256, "epochs": 14, "val": 0.02},
}


def network(widths, second: bool, activation: str, head: str, stem: int):
    from convscope.spec import NetSpec

    conv = {"size": 3, "padding": "same", "activation": "none", "bias": False}
    layers = [{"conv": {"filters": stem, "size": 2, "padding": "valid", "activation": "none"}}] if stem else []
    for f in widths:
        layers += [{"conv": {"filters": f, **conv}}, {"pool": {"kind": "max", "size": 2}}, "batchnorm"]
        layers += [{"activation": {"function": activation}}]
        if second:
            layers += [{"conv": {"filters": f, **conv}}, "batchnorm", {"activation": {"function": activation}}]
    layers += [{"global_pool": {"kind": "max"}}] if head == "max" else ["flatten"]
    return NetSpec.from_dict({"name": "sweep", "input": "32x32x3", "layers": [*layers, {"dense": {"units": 10}}]})


def whiten(conv, x: torch.Tensor, eps: float = 5e-4) -> None:
    """airbench's stem: 2×2 filters = ± the eigenvectors of the covariance of 2×2×3 training patches / √eigenvalue."""
    patches = x[:5000].unfold(2, 2, 1).unfold(3, 2, 1).permute(0, 2, 3, 1, 4, 5).reshape(-1, 12).double()
    values, vectors = torch.linalg.eigh(patches.T @ patches / len(patches))
    filters = (vectors.T / torch.sqrt(values + eps)[:, None]).reshape(12, 3, 2, 2).float()
    with torch.no_grad():
        conv.weight.copy_(torch.cat([filters, -filters]))
    conv.weight.requires_grad_(False)


def train_one(data, device, seed=0, widths=(64, 128, 256), second=True, activation="gelu", head="max", stem=0,
              epochs=12, batch_size=512, optimizer="sgd", lr=0.2, label_smoothing=0.2, weight_decay=5e-4,
              translate=2, val=0.1, white=False, ema=0.0, bn_momentum=0.1) -> dict:  # fmt: skip
    from convscope.builder import build
    from convscope.config import TrainConfig
    from convscope.data.augment import Augment
    from convscope.data.augment_batch import augment_batch
    from convscope.training.runtime import optimizer_for, scheduler_for

    xtr, ytr, xte, yte = data
    torch.manual_seed(seed)
    keep = torch.randperm(len(xtr), generator=torch.Generator().manual_seed(seed))[int(len(xtr) * val) :].to(device)
    x, y = xtr[keep], ytr[keep]
    model = build(network(widths, second, activation, head, stem)).to(device).to(memory_format=torch.channels_last)
    if white:
        whiten(next(m for m in model.modules() if getattr(m, "weight", None) is not None and m.weight.ndim == 4), x)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = bn_momentum
    averaged = None
    if ema:
        multi = torch.optim.swa_utils.get_ema_multi_avg_fn(ema)
        averaged = torch.optim.swa_utils.AveragedModel(model, multi_avg_fn=multi, use_buffers=True)
    cfg = TrainConfig(optimizer=optimizer, lr=lr, weight_decay=weight_decay, batch_size=batch_size, epochs=epochs)
    opt = optimizer_for(model, cfg, lr)
    batches = -(-len(x) // batch_size)
    schedule = scheduler_for(opt, cfg, batches, epochs, lr)
    g = torch.Generator(device=device).manual_seed(seed)
    augment = Augment(flip=True, translate=translate)
    started = time.perf_counter()
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(x), device=device, generator=g)
        for b in range(batches):
            i = order[b * batch_size : (b + 1) * batch_size]
            with torch.autocast(device.type, dtype=torch.bfloat16):
                loss = F.cross_entropy(model(augment_batch(x[i], augment, g)), y[i], label_smoothing=label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            schedule.step()
            if averaged is not None and (b % 5 == 4 or b == batches - 1):
                averaged.update_parameters(model)
    model = (averaged.module if averaged is not None else model).eval()
    with torch.inference_mode():
        plain = torch.cat([model(xte[i : i + 2000]) for i in range(0, len(xte), 2000)])
        mirror = torch.cat([model(xte[i : i + 2000].flip(3)) for i in range(0, len(xte), 2000)])
    return {
        "test_acc": float((plain.argmax(1) == yte).float().mean()),
        "test_acc_mirror_averaged": float(((plain + mirror).argmax(1) == yte).float().mean()),
        "params": sum(p.numel() for p in model.parameters()),
        "seconds": time.perf_counter() - started,
    }


def main(argv=None) -> None:
    from convscope.data.folder import load_folder
    from convscope.preprocess import channel_stats, normalise, to_tensor

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--folder", type=Path, default=FOLDER)
    p.add_argument("--runs", help="comma-separated names from GRID (default: all)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--quick", action="store_true", help="1 epoch on 2,000 images: a smoke test of the script")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    torch.backends.cudnn.benchmark = True
    data = load_folder(args.folder, (32, 32), 3, val_fraction=0.0, test_fraction=0.1)
    mean, std = channel_stats(data.train.images)
    m, s = torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1)
    tensors = [
        normalise(to_tensor(split.images), m, s).to(device) if k == 0 else torch.from_numpy(split.labels).to(device)
        for split in (data.train, data.test)
        for k in (0, 1)
    ]
    if args.quick:  # a seeded sample of every class (the folder's images come sorted by class)
        train_pick, test_pick = (
            torch.randperm(len(t), generator=torch.Generator().manual_seed(0))[:2000] for t in tensors[::2]
        )
        tensors = [tensors[0][train_pick], tensors[1][train_pick], tensors[2][test_pick], tensors[3][test_pick]]
    out = common.RESULTS / f"cifar_sweep{'-quick' if args.quick else ''}.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    names = args.runs.split(",") if args.runs else list(GRID)
    for name in names:
        settings = dict(GRID[name]) | ({"epochs": 1} if args.quick else {})
        for seed in settings.pop("seeds", [0]):
            result = {"name": name, "seed": seed, **train_one(tensors, device, seed=seed, **settings), **settings}
            print(json.dumps(result), flush=True)
            with open(out, "a", encoding="utf-8") as f:
                f.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
