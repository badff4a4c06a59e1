"""Why the decoded-image cache's key is made of `stat` fields, not of the files' bytes: the time to key an image
folder both ways, and what checking an entry on every read costs.

    .venv/bin/python bench/cache_key.py [--folder DIR] [--repeats 3] [--quick]

The folder (default `../shared/data/cifar10-jpg`: CIFAR-10 as 60,000 JPEGs) is listed as `load_folder` lists it,
then keyed:
- by stat (`convscope.data.cache.key`: path, label, size, mtime, inode and ctime of every file), the key in use;
- by content: the SHA-256 of every file's bytes, cold (each file's pages first dropped from the page cache with
  posix_fadvise DONTNEED, so the bytes come from the disk as in a first run after a reboot) and warm (read again at
  once). The file metadata `stat` reads stays cached (only the whole machine's caches could be dropped): the stat key
  is timed warm, as a second run, the one the cache is for, finds it.
Then an entry of the folder's size (random pixels; N×32×32×3 for CIFAR-10) is written and read back through
`cache.store` and `cache.load` in a temporary cache folder: the read checks headers, key, labels and the SHA-256 of
the arrays. Results: bench/results/cache_key.json.

On the 2-core development machine (a VM: "cold" is cold for its page cache, the host's may still hold the disk),
CIFAR-10, two runs at load average 4-5: stat key 0.82 s and 0.57 s; content hash cold 4.59 s and 5.85 s, warm 0.91 s
and 0.64 s; a 176 MiB entry written in 0.71 s and 0.55 s, read and checked in 0.15 s and 0.14 s.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402 (bench/ is not a package: scripts run as files)

FOLDER = common.ROOT.parent / "shared" / "data" / "cifar10-jpg"
QUICK_FILES = 2000  # --quick: the first files only


def listed(folder: Path) -> list[tuple[Path, int]]:
    """(path, label) of every image, split folders (train/, test/, …) or not, as load_folder lists them."""
    from convscope.data.folder import _class_folders, image_files

    tops = _class_folders(folder)
    splits = [tops[name] for name in ("train", "val", "valid", "validation", "test") if name in tops] or [folder]
    out = []
    for split in splits:
        for label, (_, class_folder) in enumerate(sorted(_class_folders(split).items())):
            out += [(p, label) for p in image_files(class_folder, True)]
    return out


def drop_pages(paths: list[Path]) -> None:
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def content_key(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for path in paths:
        h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


def timed(work, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        work()
        times.append(time.perf_counter() - t0)
    return times


def entry_round_trip(files: list[tuple[Path, int]], repeats: int) -> dict:
    from convscope.data import cache

    k = cache.key(files, (32, 32), 3)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (len(files), 32, 32, 3), dtype=np.uint8)
    labels = np.array([label for _, label in files], np.int64)
    with tempfile.TemporaryDirectory() as where:
        os.environ["CONVSCOPE_CACHE_DIR"] = where
        os.environ["CONVSCOPE_CACHE_MAX_GB"] = "100"
        writes = timed(lambda: cache.store(k, images, labels, []), repeats)
        reads = timed(lambda: cache.load(k), repeats)  # from the page cache: the checks, not the disk
        assert cache.load(k) is not None
        size = (Path(where) / k.filename).stat().st_size
    return {"entry_bytes": size, "store_s": writes, "load_s": reads}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common.add_common_args(parser)
    parser.add_argument("--folder", type=Path, default=FOLDER)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if not args.folder.is_dir():
        sys.exit(f"{args.folder}: no such folder (CIFAR-10 as JPEGs: see ../shared/data/README.md)")
    from convscope.data import cache

    machine = common.machine_facts(args.threads)
    common.print_machine(machine)
    files = listed(args.folder)[: QUICK_FILES if args.quick else None]
    paths = [p for p, _ in files]
    megabytes = sum(p.stat().st_size for p in paths) / 1e6
    stat_s = timed(lambda: cache.key(files, (32, 32), 3), args.repeats)
    drop_pages(paths)
    cold_s = timed(lambda: content_key(paths), 1)
    warm_s = timed(lambda: content_key(paths), args.repeats)
    entry = entry_round_trip(files, args.repeats)
    med = statistics.median

    def spread(times: list[float]) -> str:
        return f"{min(times):.2f}–{max(times):.2f}"

    rows = [
        ["stat key (cache.key: size, mtime, inode, ctime)", f"{med(stat_s):.2f}", spread(stat_s)],
        ["content hash, cold (SHA-256 of every file)", f"{cold_s[0]:.2f}", "one run"],
        ["content hash, warm (page cache)", f"{med(warm_s):.2f}", spread(warm_s)],
        [f"write an entry ({entry['entry_bytes'] / 2**20:.0f} MiB)", f"{med(entry['store_s']):.2f}", "fsync'ed"],
        ["read and check that entry", f"{med(entry['load_s']):.2f}", "headers, key, labels, SHA-256"],
    ]
    title = f"{args.folder}: {len(files):,} files, {megabytes:.0f} MB; seconds, median of {args.repeats}"
    common.print_table(["what", "s", "range"], rows, title)
    results = {"folder": str(args.folder), "files": len(files), "megabytes": megabytes, "stat_key_s": stat_s}
    results |= {"content_cold_s": cold_s, "content_warm_s": warm_s, **entry}
    path = common.write_json(common.result_name("cache_key", args), {"machine": machine, "results": results})
    print(f"\nwritten: {path}")


if __name__ == "__main__":
    main()
