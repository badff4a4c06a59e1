"""Image folders streamed from disk against held in memory: decode speed, training speed and peak memory at 224×224.

    .venv/bin/python bench/stream_throughput.py [--images N] [--folder DIR] [--train-images M] [--threads T] [--quick]

1. The data: N (default 30,000) 224×224 JPEG photos (quality 90) in 10 classes, generated once and kept in --folder
   (default /tmp/convscope-bench-stream/photos-N; a later run with the same settings reuses it). Class k is made of
   random crops, turns, mirror images, colour shifts and a little noise of one photo of scikit-image's data folder,
   so the files have the detail (and the JPEG sizes) of real photos, not of flat colours.
2. decode: images/s of `stream_batches` with 1 DataLoader worker (one core) over up to --decode-images training images
   of the folder (listed with load_folder(memory_budget=0), header checks included in list_seconds). The files were
   just written or read, so they come from the page cache: this is the decoding, not the disk.
3. training: images/s of two networks at 224×224 on a subset of M (default 3,000) of the images, small enough to fit
   in memory, streamed (cache_limit='0') and in memory (cache_limit=None): a transfer run (EfficientNet-Lite0 base,
   frozen, a new head; transfer's defaults but val_fraction 0) and a network trained from scratch (SCRATCH_SPEC: five
   convs with stride-2 downsampling; fp32, AdamW, flips). The figure is training images × epochs ÷ the `seconds`
   column of metrics.csv (the training loop alone), the first epoch dropped as a warm-up when there are several.
4. the whole folder: one epoch of the transfer run over all N images, streamed (what a folder larger than memory
   does), for its images/s and peak RSS (--whole-epochs 0 leaves it out).

Every measurement runs in a fresh subprocess, which reports its peak RSS (getrusage ru_maxrss) and that of its largest
child (a DataLoader worker; forked, so its RSS counts the pages it shares with the parent, torch's among them). A
training run that was asked to stream but did not (the trainer logged no "streaming them from disk") is marked
streamed=false. Results: bench/results/stream_throughput.json.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import logging
import os
import resource
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402 (bench/ is not a package: scripts run as files)

SIZE = 224
QUALITY = 90
# One photo per class, from scikit-image's data folder; gray ones are given colour by the channel gains below.
PHOTOS = (
    "astronaut.png",
    "chelsea.png",
    "coffee.png",
    "rocket.jpg",
    "motorcycle_left.png",
    "hubble_deep_field.jpg",
    "ihc.png",
    "retina.jpg",
    "camera.png",
    "grass.png",
)
# A small convnet for 224×224×3 trained from scratch: ~0.3 GMACs per image, as much as the base's frozen forward pass.
SCRATCH_SPEC = """name: scratch-224
input: 224x224x3
layers:
  - conv: {filters: 32, size: 3, stride: 2, padding: same}
  - batchnorm: {}
  - conv: {filters: 32, size: 3, padding: same}
  - pool: {kind: max}
  - conv: {filters: 64, size: 3, padding: same}
  - pool: {kind: max}
  - conv: {filters: 128, size: 3, padding: same}
  - pool: {kind: max}
  - conv: {filters: 128, size: 3, padding: same}
  - global_pool: {kind: avg}
  - dense: {units: 10}
"""
FORMAT = "stream-bench-photos/1"  # in the folder's marker file; change it when the images change
MARKER = ".complete.json"  # hidden: the loader ignores it
WORKER_TIMEOUT = 4 * 3600  # seconds per measurement


# -- the data ---------------------------------------------------------------------------------------------------------
def _sources() -> list:
    """The PHOTOS as RGB Pillow images, shrunk to a short side of at most 2×SIZE (turning and cropping a 1411-px photo
    for every file would cost more than the JPEG encoding)."""
    from PIL import Image

    found = importlib.util.find_spec("skimage")
    if found is None or not found.submodule_search_locations:
        raise SystemExit("the photos come from scikit-image's data folder: pip install scikit-image")
    folder = Path(next(iter(found.submodule_search_locations))) / "data"
    images = []
    for name in PHOTOS:
        with Image.open(folder / name) as img:
            img = img.convert("RGB")
            scale = 2 * SIZE / min(img.size)
            if scale < 1:
                img = img.resize((round(img.width * scale), round(img.height * scale)), Image.Resampling.LANCZOS)
            images.append(img)
    return images


_SOURCES: list = []  # per generator process, loaded once


def _class_name(k: int) -> str:
    return f"{k}-{PHOTOS[k].split('.')[0]}"


def _make_photo(args: tuple[Path, int, int]) -> None:
    """File i of the folder: a random crop (35–100 % of the short side), turn (±25°), mirror image, colour shift and
    noise of class i % 10's photo, resized to SIZE×SIZE; seeded by i, so a resumed generation writes the same bytes."""
    from PIL import Image

    root, i, seed = args
    k = i % len(PHOTOS)
    path = root / _class_name(k) / f"{i:06d}.jpg"
    if path.exists():
        return
    if not _SOURCES:
        _SOURCES.extend(_sources())
    rng = np.random.default_rng([seed, i])
    src = _SOURCES[k]
    side = rng.uniform(0.35, 1.0) * min(src.size)
    cx = rng.uniform(side / 2, src.width - side / 2)
    cy = rng.uniform(side / 2, src.height - side / 2)
    img = src.rotate(rng.uniform(-25, 25), resample=Image.Resampling.BILINEAR, center=(cx, cy))
    img = img.crop((round(cx - side / 2), round(cy - side / 2), round(cx + side / 2), round(cy + side / 2)))
    img = img.resize((SIZE, SIZE), Image.Resampling.BICUBIC)
    if rng.random() < 0.5:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    pixels = np.asarray(img, dtype=np.float32) * rng.uniform(0.75, 1.25, size=3) + rng.normal(
        0, 3, img.size[::-1] + (3,)
    )
    img = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    tmp = path.with_name(f".{path.name}.tmp")  # hidden until whole: an interrupted run leaves no half file in sight
    img.save(tmp, "JPEG", quality=QUALITY)
    os.replace(tmp, path)


def make_folder(root: Path, images: int, seed: int = 0, workers: int | None = None) -> float:
    """Generate the folder unless its marker says it is complete with these settings; seconds spent (0 if cached)."""
    settings = {"format": FORMAT, "images": images, "size": SIZE, "quality": QUALITY, "seed": seed}
    marker = root / MARKER
    if marker.is_file() and json.loads(marker.read_text(encoding="utf-8")) == settings:
        return 0.0
    started = time.perf_counter()
    for k in range(len(PHOTOS)):
        (root / _class_name(k)).mkdir(parents=True, exist_ok=True)
    jobs = [(root, i, seed) for i in range(images)]
    with ProcessPoolExecutor(max_workers=workers or os.cpu_count()) as pool:
        for done, _ in enumerate(pool.map(_make_photo, jobs, chunksize=64), 1):
            if done % 2000 == 0:
                print(f"  generated {done:,}/{images:,}", flush=True)
    marker.write_text(json.dumps(settings), encoding="utf-8")
    return time.perf_counter() - started


def make_subset(root: Path, subset: Path, images: int) -> None:
    """`subset`: the first `images` files of `root` (the same number of each class), as hard links (copies where the
    file system has none)."""
    marker = subset / MARKER
    settings = {"of": str(root), "images": images, "source": (root / MARKER).read_text(encoding="utf-8")}
    if marker.is_file() and json.loads(marker.read_text(encoding="utf-8")) == settings:
        return
    shutil.rmtree(subset, ignore_errors=True)
    for i in range(images):
        name = Path(_class_name(i % len(PHOTOS))) / f"{i:06d}.jpg"
        (subset / name.parent).mkdir(parents=True, exist_ok=True)
        try:
            os.link(root / name, subset / name)
        except OSError:
            shutil.copyfile(root / name, subset / name)
    marker.write_text(json.dumps(settings), encoding="utf-8")


# -- the measurements (each in its own subprocess) --------------------------------------------------------------------
def _peak_rss() -> dict:
    """Peak resident memory in MiB of this process and of its largest child so far (ru_maxrss is in KiB on Linux)."""
    scale = 1 / 1024 if sys.platform != "darwin" else 1 / 2**20  # macOS says bytes
    return {
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale,
        "peak_rss_child_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * scale,
    }


def run_decode(a: dict) -> dict:
    """Images/s of stream_batches with a["workers"] workers over up to a["images"] training images of the folder."""
    import torch

    from convscope.data.folder import load_folder
    from convscope.data.stream import stream_batches

    torch.set_num_threads(1)  # the main process only receives batches
    t0 = time.perf_counter()
    data = load_folder(a["folder"], (SIZE, SIZE), 3, memory_budget=0)  # lists and checks every header
    list_seconds = time.perf_counter() - t0
    split = data.train.take(np.arange(min(a["images"], len(data.train))))
    batches = torch.arange(len(split)).split(a["batch_size"])
    t0 = time.perf_counter()
    first = None
    for batch in stream_batches(split, batches, workers=a["workers"]):
        first = first or time.perf_counter() - t0  # includes starting the worker
        assert batch.shape[1:] == (3, SIZE, SIZE)
    seconds = time.perf_counter() - t0
    rest = len(split) - len(batches[0])
    return {
        "workers": a["workers"],
        "images": len(split),
        "listed_images": sum(len(s) for s in (data.train, data.val, data.test) if s is not None),
        "list_seconds": list_seconds,
        "seconds": seconds,
        "first_batch_seconds": first,
        "images_per_s": rest / (seconds - first) if rest else len(split) / seconds,
        **_peak_rss(),
    }


class _StreamingSeen(logging.Handler):
    """Notes whether load_folder logged that it streams the folder."""

    seen = False

    def emit(self, record: logging.LogRecord) -> None:
        if "streaming them from disk" in record.getMessage():
            _StreamingSeen.seen = True


def run_train(a: dict) -> dict:
    """A transfer or from-scratch run on a folder; images/s from metrics.csv's `seconds` (the training loop alone)."""
    from convscope.data.folder import load_folder
    from convscope.tasks.train import train, transfer

    # The number of training images: val_fraction 0 (no validation split), the folder's default test hold-out.
    images = len(load_folder(a["folder"], (SIZE, SIZE), 3, val_fraction=0.0, memory_budget=0).train)
    logger = logging.getLogger("convscope.data.folder")  # only now: the listing above streams, the run may not
    logger.setLevel(logging.INFO)
    logger.addHandler(_StreamingSeen())
    t0 = time.perf_counter()
    common_settings = {"data": a["folder"], "epochs": a["epochs"], "batch_size": a["batch_size"], "val_fraction": 0.0}
    common_settings |= {"threads": a["threads"], "cache_limit": a["cache_limit"], "out": a["out"], "report": False}
    if a["model"] == "transfer":
        transfer("efficientnet-lite0", SIZE, **common_settings)
    else:
        spec = Path(a["out"]).with_name("scratch-224.yaml")
        spec.write_text(SCRATCH_SPEC, encoding="utf-8")
        train(model=str(spec), augment="flip", **common_settings)
    wall = time.perf_counter() - t0
    with open(Path(a["out"]) / "metrics.csv", newline="") as f:
        seconds = [float(row["seconds"]) for row in csv.DictReader(f)]
    timed = seconds[1:] or seconds
    return {
        "model": a["model"],
        "cache_limit": a["cache_limit"],
        "streamed": _StreamingSeen.seen,
        "images": images,
        "epoch_seconds": seconds,
        "images_per_s": images * len(timed) / sum(timed),
        "train_call_seconds": wall,
        **_peak_rss(),
    }


WORKERS = {"decode": run_decode, "train": run_train}


def measure(kind: str, a: dict) -> dict:
    command = [common.python(), str(Path(__file__).resolve()), "--worker", kind, "--worker-args", json.dumps(a)]
    env = {**os.environ, "CONVSCOPE_CACHE_DIR": "off"}  # the in-memory run decodes; nothing is written to ~/.cache
    return common.run_json(command, WORKER_TIMEOUT, env=env)


# -- the benchmark ----------------------------------------------------------------------------------------------------
def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    common.add_common_args(p)
    p.add_argument("--images", type=int, help="photos in the generated folder (default 30000; --quick 600)")
    p.add_argument("--folder", type=Path, help="where the folder is kept (default /tmp/convscope-bench-stream/...)")
    p.add_argument("--decode-images", type=int, help="images decoded in the decode measurement (default 5000)")
    p.add_argument("--train-images", type=int, help="images of the training subset (default 3000; --quick 100)")
    p.add_argument("--epochs", type=int, help="epochs per training run, the first a warm-up (default 3; --quick 1)")
    p.add_argument("--batch-size", type=int, default=32, help="images per step (default 32, as transfer)")
    p.add_argument("--no-train", action="store_true", help="only generate the folder and measure decoding")
    p.add_argument("--models", default="transfer,scratch", help="which networks train on the subset (default both)")
    p.add_argument("--whole-epochs", type=int, default=1, help="epochs of the streamed run on all images (default 1)")
    p.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    p.add_argument("--worker-args", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.images = args.images or (600 if args.quick else 30_000)
    args.decode_images = args.decode_images or 5000
    args.train_images = min(args.train_images or (100 if args.quick else 3000), args.images)
    args.epochs = args.epochs or (1 if args.quick else 3)
    args.folder = args.folder or Path(tempfile.gettempdir()) / "convscope-bench-stream" / f"photos-{args.images}"
    if args.images < 50 or args.train_images < 50 or args.epochs < 1 or args.batch_size < 1:
        p.error("--images and --train-images must be >= 50 (10 classes, a test hold-out), --epochs >= 1")
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.worker:  # inside one measurement's subprocess
        print(json.dumps(WORKERS[args.worker](json.loads(args.worker_args))), flush=True)
        return

    from convscope.data.stream import default_workers

    facts = common.machine_facts(args.threads)
    top_before = common.top_snapshot()
    common.print_machine(facts)
    folder = args.folder.resolve()
    generated = make_folder(folder, args.images)
    size = sum(p.stat().st_size for p in folder.rglob("*.jpg"))
    how = f"generated in {generated:.0f} s" if generated else "reused"
    print(f"{args.images:,} {SIZE}×{SIZE} JPEGs (quality {QUALITY}), {size / 2**20:,.0f} MiB in {folder} ({how})")

    decode = []
    for workers in sorted({1, default_workers()}):
        a = {"folder": str(folder), "images": args.decode_images, "batch_size": args.batch_size, "workers": workers}
        decode.append(measure("decode", a))
        d = decode[-1]
        print(
            f"  decode, {workers} worker(s): {d['images_per_s']:.0f} images/s over {d['images']:,} images "
            f"(first batch {d['first_batch_seconds']:.2f} s); listing {d['listed_images']:,} files with header checks "
            f"{d['list_seconds']:.1f} s; peak RSS {d['peak_rss_mib']:.0f} MiB, worker {d['peak_rss_child_mib']:.0f} MiB"
        )

    train = []
    if not args.no_train:
        subset = folder.with_name(f"{folder.name}-subset-{args.train_images}")
        make_subset(folder, subset, args.train_images)
        ways = (("streamed", "0"), ("in memory", None))
        runs = [(model, way, limit, subset, args.epochs) for model in args.models.split(",") for way, limit in ways]
        if args.whole_epochs:
            runs.append(("transfer", f"streamed, all {args.images:,}", "0", folder, args.whole_epochs))
        with tempfile.TemporaryDirectory(prefix="convscope-bench-") as tmp:
            for i, (model, name, limit, data, epochs) in enumerate(runs):
                a = {
                    "model": model,
                    "folder": str(data),
                    "cache_limit": limit,
                    "epochs": epochs,
                    "batch_size": args.batch_size,
                    "threads": args.threads,
                    "out": str(Path(tmp) / f"run-{i}"),
                }
                train.append({"run": f"{model} {name}", **measure("train", a)})
                t = train[-1]
                print(
                    f"  train {t['run']}: {t['images_per_s']:.1f} images/s ({t['images']:,} images, epochs "
                    + ", ".join(f"{s:.1f}" for s in t["epoch_seconds"])
                    + f" s); peak RSS {t['peak_rss_mib']:.0f} MiB, largest worker {t['peak_rss_child_mib']:.0f} MiB"
                    + ("" if t["streamed"] or limit is None else "  [NOT streamed: the trainer held it in memory]")
                )

    rows = [
        [f"decode, {d['workers']} worker(s)", f"{d['images_per_s']:.0f}", f"{d['peak_rss_mib']:.0f}", ""]
        for d in decode
    ]
    rows += [
        [f"train {t['run']}", f"{t['images_per_s']:.1f}", f"{t['peak_rss_mib']:.0f}", str(t["streamed"]).lower()]
        for t in train
    ]
    common.print_table(
        ["measurement", "images/s", "peak RSS MiB", "streamed"],
        rows,
        f"{SIZE}×{SIZE} JPEG photos, batch {args.batch_size}, {args.threads} threads (machine shared: indicative)",
    )
    path = common.write_json(
        common.result_name("stream_throughput", args),
        {
            "benchmark": "stream_throughput",
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
            "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if "worker" not in k},
            "data": f"{args.images} generated {SIZE}x{SIZE} JPEG photos, quality {QUALITY}, 10 classes ({size} bytes)",
            "page_cache": "warm: the files were just generated or read (decoding is measured, not the disk)",
            "machine": facts,
            "top_before": top_before,
            "top_after": common.top_snapshot(),
            "default_workers": default_workers(),
            "decode": decode,
            "train": train,
        },
    )
    print(f"results: {path.relative_to(common.ROOT)}")


if __name__ == "__main__":
    main()
