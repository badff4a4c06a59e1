"""Seconds to find the patterns of 16 filters of a layer (convscope filters RUN --patterns), per layer and size.

    .venv/bin/python bench/filter_patterns.py RUN [RUN ...] [--steps 128] [--sizes 0,128] [--rounds 2]

For each run: its own conv layers (or, for a transfer run, the base's middle and last block), at each size (0: the
run's input size). Prints a table of median seconds over the rounds, with the range, and the load average.
"""

from __future__ import annotations

import argparse
import os
import statistics

from convscope.inspect.patterns import filter_patterns, report_layers
from convscope.loaded import load_model
from convscope.run import load_run
from convscope.spec import Conv


def layers_of(run) -> list[str]:
    model = load_model(run, device="cpu")
    own = [n for n, layer in zip(run.spec.layer_names(), run.spec.layers, strict=True) if isinstance(layer, Conv)]
    return own or report_layers(model)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--steps", type=int, default=128)
    parser.add_argument("--sizes", default="0", help="comma-separated sides in pixels; 0 = the run's input")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    print(f"{args.steps} steps, 16 filters, {args.threads} threads, {os.cpu_count()} cores")
    print("| run | layer | size | seconds (median) | range |\n|---|---|---|---|---|")
    loads = []
    for path in args.runs:
        run = load_run(path)
        for layer in layers_of(run):
            for size in (int(s) for s in args.sizes.split(",")):
                side = size or run.spec.input[0]
                times = []
                for _ in range(args.rounds):
                    times.append(filter_patterns(run, layer, steps=args.steps, size=side, device="cpu").seconds)
                    loads.append(os.getloadavg()[0])
                print(f"| {run.spec.name} | {layer} | {side}×{side} | {statistics.median(times):.1f} | "
                      f"{min(times):.1f}–{max(times):.1f} |", flush=True)  # fmt: skip
    print(f"load average {min(loads):.1f}–{max(loads):.1f}")


if __name__ == "__main__":
    main()
