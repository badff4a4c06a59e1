"""What one training checkpoint costs: its size, the time to write it (one atomic file) and to read and verify it.

    .venv/bin/python bench/checkpoint_cost.py                 # fashion-fast and the EfficientNet-Lite0 transfer net
    .venv/bin/python bench/checkpoint_cost.py --repeats 9 --threads 2

A training run writes one checkpoint (`training.checkpoint_file.save_checkpoint`) at every epoch end: the weights, the
best weights so far, the optimizer state and the rest, fsync'ed and renamed into place. Measured here for each network
with AdamW state for every parameter (the largest case: for a transfer net, phase 2 with the whole base unfrozen),
`--repeats` saves and reads into a temporary folder; medians and ranges are reported, with the load average.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402 (bench/ is not a package: scripts run as files)

STATE = {"epoch": 1, "step": 1, "extra": {}}


def measure(name: str, spec, repeats: int) -> dict:
    import torch

    from convscope.builder import build
    from convscope.training.checkpoint_file import read_checkpoint, save_checkpoint

    model = build(spec)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()  # creates AdamW's two moments for every parameter
    best = {k: v.clone() for k, v in model.state_dict().items()}
    saves, reads = [], []
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "checkpoint.safetensors"
        for _ in range(repeats):
            t = time.perf_counter()
            save_checkpoint(path, model=model, optimizer=optimizer, scheduler=None, **STATE, best=best)
            saves.append(time.perf_counter() - t)
            t = time.perf_counter()
            read_checkpoint(path)
            reads.append(time.perf_counter() - t)
        size = path.stat().st_size
    return {"network": name, "bytes": size, "save_s": saves, "read_s": reads}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common.add_common_args(parser)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    import torch

    from convscope.presets import resolve_spec
    from convscope.pretrained.finetune import transfer_spec

    torch.set_num_threads(args.threads)
    machine = common.machine_facts(args.threads)
    common.print_machine(machine)
    networks = [("fashion-fast", resolve_spec("fashion-fast"))]
    if not args.quick:
        networks.append(("efficientnet-lite0 transfer, 224", transfer_spec("efficientnet-lite0", 224)))
    results = [measure(name, spec, args.repeats) for name, spec in networks]

    def ms(values: list[float]) -> str:
        return f"{statistics.median(values) * 1000:.0f} ({min(values) * 1000:.0f}–{max(values) * 1000:.0f})"

    rows = [[r["network"], f"{r['bytes'] / 2**20:.1f}", ms(r["save_s"]), ms(r["read_s"])] for r in results]
    common.print_table(["network", "MiB", "save ms, median (range)", "read + verify ms"], rows, "one checkpoint")
    path = common.write_json(common.result_name("checkpoint_cost", args), {"machine": machine, "results": results})
    print(f"\nwritten: {path}")


if __name__ == "__main__":
    main()
