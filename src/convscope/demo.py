"""`make demo`: the main job of this version — the TensorFlow tutorial convnet's summary and a walk-through of
one convolution on a real photo."""

from __future__ import annotations

import sys

from convscope.cli import main as cli


def main() -> int:
    steps = [
        ["summary", "cifar-3conv"],
    ]
    for argv in steps:
        print(f"\n$ convscope {' '.join(argv)}", flush=True)
        status = cli(argv)
        if status:
            return status
    return 0


if __name__ == "__main__":
    sys.exit(main())
