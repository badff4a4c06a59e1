"""What the bounds of the detection readers cost, and what they save: the duplicate-box check of one image with
20,000 boxes (grid, convscope.data.detection.duplicates) against the pairwise check the readers made before (timed on
fewer boxes and extrapolated as n², since it compares every box with every kept box), and the JSON nesting scan of
convscope.userfiles against `json.loads` of the same COCO-like document.

    .venv/bin/python bench/reading_bounds.py [--boxes 20000] [--repeat 5] [--json-mib 100]

Prints the machine's CPU and load average first, then the median and range of each timing in seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import numpy as np

from convscope.data.detection.boxes import DUPLICATE_IOU
from convscope.data.detection.duplicates import find_duplicates
from convscope.userfiles import json_depth


def pairwise(xyxy: np.ndarray, classes: np.ndarray) -> int:
    """The readers' former check: each box against every kept box of its class; returns the duplicates found."""
    kept: list[tuple[np.ndarray, int]] = []
    found = 0
    for box, cls in zip(xyxy, classes.tolist(), strict=True):
        same = [b for b, c in kept if c == cls]
        if same:
            boxes = np.stack(same)
            ix = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
            iy = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
            inter = ix * iy
            union = (box[2] - box[0]) * (box[3] - box[1]) + (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
            if (inter / np.maximum(union - inter, 1e-12) > DUPLICATE_IOU).any():
                found += 1
                continue
        kept.append((box, cls))
    return found


def crowd(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n boxes of 4–60 px in a 4000×4000 image, 5 classes, 5% of them near-copies of another (duplicates)."""
    rng = np.random.default_rng(seed)
    corner = rng.uniform(0, 4000, (n, 2))
    xyxy = np.concatenate([corner, corner + rng.uniform(4, 60, (n, 2))], axis=1)
    classes = rng.integers(0, 5, n)
    copies, targets = rng.integers(0, n, n // 20), rng.integers(0, n, n // 20)
    xyxy[targets], classes[targets] = xyxy[copies] + rng.normal(0, 0.05, (n // 20, 4)), classes[copies]
    return xyxy, classes


def timed(call, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        out.append(time.perf_counter() - started)
    return out


def show(name: str, values: list[float]) -> None:
    print(f"{name:58s} median {statistics.median(values):8.3f} s   range {min(values):.3f}–{max(values):.3f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--boxes", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json-mib", type=int, default=100)
    args = parser.parse_args()
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    print(f"CPU {cpu}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}")

    xyxy, classes = crowd(args.boxes)
    earlier, _ = find_duplicates(xyxy, classes)
    show(
        f"grid check, {args.boxes:,} boxes ({(earlier >= 0).sum()} duplicates)",
        timed(lambda: find_duplicates(xyxy, classes), args.repeat),
    )
    small = 2_000
    old = timed(lambda: pairwise(*crowd(small)), max(1, args.repeat // 2))
    show(f"pairwise check, {small:,} boxes", old)
    factor = (args.boxes / small) ** 2
    name = f"pairwise check, {args.boxes:,} boxes (extrapolated as n²)"
    print(f"{name:58s} ~{statistics.median(old) * factor:.0f} s")

    per_entry = b'{"id": 123456, "image_id": 12345, "category_id": 7, "bbox": [10.5, 20.25, 30.0, 40.0]}, '
    count = args.json_mib * 2**20 // len(per_entry)
    text = b'{"annotations": [' + per_entry * count + b'{"id": 0}], "images": [], "categories": []}'
    show(f"JSON nesting scan, {len(text) / 2**20:.0f} MiB", timed(lambda: json_depth(text), args.repeat))
    show(f"json.loads, {len(text) / 2**20:.0f} MiB", timed(lambda: json.loads(text), max(1, args.repeat // 2)))


if __name__ == "__main__":
    main()
