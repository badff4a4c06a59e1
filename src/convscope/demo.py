"""`make demo`: the main job of this version — the TensorFlow tutorial convnet's summary and a walk-through of
one convolution on a real photo."""

from __future__ import annotations

import sys

from convscope.cli import main as cli


def main() -> int:
    steps = [
        ["summary", "cifar-3conv"],
        [
            "explain",
            "conv",
            "--image",
            "chelsea",
            "--filter",
            "edge-x",
            "--stride",
            "2",
            "--padding",
            "same",
            "--at",
            "5,7",
            "--png",
            "runs/demo/explain-conv.png",
        ],
        [
            "explain",
            "pool",
            "--image",
            "chelsea",
            "--kind",
            "min",
            "--size",
            "3",
            "--stride",
            "2",
            "--padding",
            "same",
            "--at",
            "15,15",
            "--png",
            "runs/demo/explain-pool.png",
        ],
    ]
    for argv in steps:
        print(f"\n$ convscope {' '.join(argv)}", flush=True)
        status = cli(argv)
        if status:
            return status
    return 0


if __name__ == "__main__":
    sys.exit(main())
