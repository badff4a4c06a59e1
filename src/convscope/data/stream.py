"""Image folders larger than memory: splits kept as file lists, decoded batch by batch in DataLoader workers.

`load_folder(..., memory_budget=B)` returns FileSplits instead of decoded arrays when the decoded images of every
split together would take more than B bytes (`memory_budget` turns the `cache_limit` setting into B). The trainer
then asks `stream_batches` for each batch of indices, in its own seeded order; the images come out bit-identical to
the in-memory loader's (both use `decode_into`, which lives here because folder.py imports this module), whatever the
number of workers.

Unreadable files: the in-memory loader decodes everything at load time and leaves out (and records in
`Dataset.skipped`) what it cannot read. Decoding 30,000 photos only to check them would cost as much as an epoch, so
when streaming, `check_headers` reads each file's header while the folder is listed (a few KB, ~0.04 ms per file):
an empty file, a text file named .jpg, a format outside the allowlist or a decompression bomb is left out and
recorded exactly as the in-memory loader would. What only a full decode finds (a truncated or damaged body, a file
deleted or changed since listing) raises DataError naming the file at the batch that reads it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import PIL
from PIL import Image, UnidentifiedImageError

from convscope.data.dataset import Split
from convscope.data.images import ALLOWED_FORMATS, open_image, to_array
from convscope.errors import DataError
from convscope.files import check_regular_file, reader_warnings
from convscope.memory import parse_bytes

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)
Progress = Callable[[int, int], None]  # (images read so far, images in all)

FALLBACK_MEMORY = 4 * 2**30  # bytes assumed available when the system does not say
MAX_WORKERS = 4  # see default_workers
PREFETCH_BATCHES = 2  # per worker: enough to hide one slow file, few enough that big batches do not pile up


# -- decoding ---------------------------------------------------------------------------------------------------------
def decode_into(out: np.ndarray, index: int, path: Path, channels: int) -> str | None:
    """Decode `path` into out[index] (uint8 H×W×C, fitted to out's H×W); return None, or why it cannot be read.

    The one decoding of image-folder files, in memory (folder.py) and streamed (here), so both give the same bits."""
    try:
        array = to_array(open_image(path), channels)
        height, width = out.shape[1:3]
        if array.shape[:2] != (height, width):
            img = Image.fromarray(array[:, :, 0] if channels == 1 else array)
            # Pillow's resize is antialiased (the filter support grows with the shrink factor, unlike bilinear in
            # torch or TF), so shrinking a 4000-px photo to 32 px does not alias. reducing_gap=3 first box-reduces by
            # an integer factor while keeping ≥3× the target size: 4000×3000 → 32×32 took 12 ms instead of 32, and
            # differed from the exact filter by 0.6 grey levels on average (at most 9, on fine detail).
            img = img.resize((width, height), Image.Resampling.BILINEAR, reducing_gap=3.0)
            array = np.asarray(img, dtype=np.uint8).reshape(height, width, channels)
        out[index] = array
        return None
    except DataError as err:
        return str(err).removeprefix(f"{path}: ")
    except (OSError, ValueError) as err:  # a mode Pillow cannot convert or resize
        return f"cannot convert to {channels} channel(s) ({err})"


@dataclass(frozen=True, eq=False)  # eq=False: comparing NumPy labels with == has no single truth value
class FileSplit:
    """A split kept on disk: image i is `paths[i]` with label `labels[i]`, decoded and fitted to `shape` when read.

    paths: tuple of N file paths (str); labels: int64, N; shape: (H, W, C) of every decoded image, C 1 (gray) or 3.
    Decoding is `decode_into`, as in load_folder, so an image read from here equals the in-memory one bit for bit.
    """

    paths: tuple[str, ...]
    labels: np.ndarray  # int64, N
    shape: tuple[int, int, int]  # H, W, C

    def __post_init__(self) -> None:
        if self.labels.dtype != np.int64 or self.labels.shape != (len(self.paths),):
            raise DataError(
                f"{len(self.paths)} image files but labels of {self.labels.dtype} {self.labels.shape}; expected "
                f"int64 ({len(self.paths)},)"
            )
        h, w, c = self.shape
        if h < 1 or w < 1 or c not in (1, 3):
            raise DataError(f"image shape must be (height, width, 1 or 3 channels). Received: {self.shape}")

    def __len__(self) -> int:
        return len(self.paths)

    def take(self, index: np.ndarray) -> FileSplit:
        """The images at `index` (integer array or boolean mask, as NumPy indexes), in that order."""
        chosen = np.arange(len(self))[index]
        return FileSplit(tuple(self.paths[i] for i in chosen), self.labels[chosen], self.shape)

    @property
    def nbytes(self) -> int:
        """Bytes the decoded images would take in memory (uint8 N·H·W·C)."""
        h, w, c = self.shape
        return len(self) * h * w * c

    def load(self, progress: Progress | None = None) -> Split:
        """Every image decoded into memory (uint8 N×H×W×C), for splits small enough (validation, test).

        progress(done, total) is called as images are decoded. Raises DataError naming the first unreadable file."""
        return Split(_decode_many(self, range(len(self)), progress), self.labels.copy())

    def sample(self, n: int, seed: int) -> np.ndarray:
        """A seeded random min(n, N) of the images, decoded (uint8 n×H×W×C, in file order): enough for per-channel
        mean and std of a split too large to decode whole. Raises DataError naming an unreadable file."""
        chosen = np.random.default_rng(seed).choice(len(self), size=min(n, len(self)), replace=False)
        return _decode_many(self, np.sort(chosen), None)


def _decode_one(split: FileSplit, index: int) -> np.ndarray | str:
    """Image `index` as uint8 H×W×C, or why it could not be read."""
    out = np.empty((1, *split.shape), dtype=np.uint8)
    reason = decode_into(out, 0, Path(split.paths[index]), split.shape[2])
    return out[0] if reason is None else reason


def _unreadable(path: str, reason: str) -> DataError:
    return DataError(f"{path}: {reason} (while streaming from disk; the file was a readable image when listed)")


def _decode_many(split: FileSplit, indices: Iterable[int], progress: Progress | None) -> np.ndarray:
    """uint8 n×H×W×C of the images at `indices`, decoded with threads (Pillow releases the GIL while decoding)."""
    indices = list(indices)
    out = np.empty((len(indices), *split.shape), dtype=np.uint8)
    every = max(1, len(indices) // 200)  # about 200 progress updates, whatever the size
    with ThreadPoolExecutor(max_workers=os.cpu_count()) as pool:
        jobs = pool.map(lambda j: decode_into(out, j, Path(split.paths[indices[j]]), split.shape[2]), range(len(out)))
        for j, reason in enumerate(jobs):
            if reason is not None:
                raise _unreadable(split.paths[indices[j]], reason)
            if progress and ((j + 1) % every == 0 or j + 1 == len(out)):
                progress(j + 1, len(out))
    return out


# -- listing ----------------------------------------------------------------------------------------------------------
def header_problem(path: Path) -> str | None:
    """None when `path` opens as an image in an allowed format and size (only its header is read), else why not, in
    the words `images.open_image` would use."""
    try:
        check_regular_file(path, "image file")
        with reader_warnings(path, PIL, errors=(Image.DecompressionBombWarning,)):
            Image.open(path, formats=ALLOWED_FORMATS).close()
        return None
    except DataError as err:
        return str(err).removeprefix(f"{path}: ")
    except FileNotFoundError:
        return "no such image file"
    except UnidentifiedImageError:
        return f"not an image in an allowed format ({', '.join(ALLOWED_FORMATS)})"
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as err:
        return f"refused, too many pixels for an image ({err})"
    except (OSError, SyntaxError, ValueError) as err:
        return f"damaged or truncated image ({err})"


def check_headers(
    files: list[tuple[Path, int]], progress: Progress | None = None
) -> tuple[list[tuple[Path, int]], list[tuple[Path, str]]]:
    """(readable (path, label) pairs in their order, (path, reason) of the others), by `header_problem`.

    One file after the other: 0.04 ms a file here (224×224 JPEGs in the page cache; 30,000 in about 1 s), and threads
    were 3× slower, as the header is read under files.reader_warnings' process-wide lock."""
    kept, failed = [], []
    every = max(1, len(files) // 200)
    for i, item in enumerate(files):
        reason = header_problem(item[0])
        if reason is None:
            kept.append(item)
        else:
            failed.append((item[0], reason))
        if progress and ((i + 1) % every == 0 or i + 1 == len(files)):
            progress(i + 1, len(files))
    return kept, failed


def file_split(files: list[tuple[Path, int]], shape: tuple[int, int, int]) -> FileSplit:
    """A FileSplit of (path, label) pairs, in their order."""
    labels = np.array([label for _, label in files], dtype=np.int64)
    return FileSplit(tuple(str(path) for path, _ in files), labels, shape)


# -- streaming --------------------------------------------------------------------------------------------------------
class _Failure:
    """Returned by a worker instead of a batch: DataLoader would re-raise an exception with the worker's traceback
    folded into its message, and a DataError is one line."""

    def __init__(self, path: str, reason: str) -> None:
        self.path, self.reason = path, reason


class _Decoder:
    """The map-style dataset the DataLoader workers index: item i is image i (uint8 H×W×C) or (path, reason)."""

    def __init__(self, split: FileSplit) -> None:
        self.split = split

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: int) -> np.ndarray | tuple[str, str]:
        image = _decode_one(self.split, index)
        return (self.split.paths[index], image) if isinstance(image, str) else image


def _stack(shape: tuple[int, int, int], items: list) -> torch.Tensor | _Failure:
    """uint8 N×H×W×C tensor of one batch's images (in a worker), or the batch's first unreadable file."""
    import torch

    for item in items:
        if isinstance(item, tuple):
            return _Failure(*item)
    return torch.from_numpy(np.stack(items) if items else np.empty((0, *shape), dtype=np.uint8))


def _checked(batches: Iterable, n: int) -> Iterator[list[int]]:
    """Each batch as a list of ints (what batch_sampler hands the workers), every index in [0, n)."""
    for batch in batches:
        index = np.asarray(batch.cpu() if hasattr(batch, "cpu") else batch)
        if index.ndim != 1 or (index.size and (index.dtype.kind not in "iu" or index.min() < 0 or index.max() >= n)):
            raise IndexError(f"a batch must be 1-D integer indices in [0, {n}). Received: {index.dtype} {index.shape}")
        yield index.tolist()


def stream_batches(
    split: FileSplit, batches: Iterable, workers: int | None = None, pin_memory: bool = False
) -> Iterator[torch.Tensor]:
    """For each batch of indices in `batches` (1-D int tensors or arrays, in order): its images decoded, as a uint8
    N×C×H×W tensor in channels_last memory.

    Decoding runs in `workers` DataLoader worker processes (None: default_workers(); 0: in this process), a few
    batches ahead; the batches come out in the caller's order, with the same images whatever `workers` is. Workers
    start at the first batch and stop when the iteration ends (no persistent workers between epochs). pin_memory:
    page-locked batches for a faster copy to a CUDA GPU (ignored without one). An empty batch gives 0×C×H×W.

    Raises DataError naming the file when one cannot be read (deleted, truncated or damaged since listing), and
    IndexError for an index outside [0, N).
    """
    import torch
    from torch.utils.data import DataLoader

    workers = default_workers() if workers is None else workers
    loader = DataLoader(
        _Decoder(split),
        batch_sampler=_checked(batches, len(split)),  # the caller's batches, so the order is exactly theirs
        collate_fn=partial(_stack, split.shape),  # a partial of a module-level function: workers can unpickle it
        num_workers=workers,
        pin_memory=pin_memory and torch.cuda.is_available(),  # DataLoader warns when asked with no GPU
        prefetch_factor=PREFETCH_BATCHES if workers else None,
        persistent_workers=False,
        # Its own generator: without one, each epoch's DataLoader draws its workers' seeds from torch's global random
        # state, and a streamed run would initialise, drop out and augment differently from an in-memory one.
        generator=torch.Generator(),
    )
    for batch in loader:
        if isinstance(batch, _Failure):
            raise _unreadable(batch.path, batch.reason)
        yield batch.permute(0, 3, 1, 2)  # N×H×W×C memory seen as N×C×H×W: channels_last, without a copy


def default_workers() -> int:
    """Decode workers to start: the usable cores less one, at least 1 and at most MAX_WORKERS (4).

    Decoding only has to keep up with training. One core decodes (and fits to 224×224) about 3,000 JPEGs a second
    that are 224×224 already, 600 of 500×375, 200 of 1024×768, 20 of 3000×2000 (measured on a shared 2-core EPYC;
    see bench/stream_throughput.py), while training at 224×224 on a CPU takes tens of images a second. So on a CPU
    one worker keeps up with all but camera-sized photos, and each further one takes a core from the training
    threads: `cores - 1` gives 1 worker on a 2-core machine, 3 on a 4-core one. At least 1 (not 0, in process): the
    worker decodes the next batches while the training step runs, and waits on the disk without stalling it. At
    most 4: on a GPU the trainer leaves the CPU to the workers, and 4 decode thousands of small images a second;
    pass `workers` for more (or resize a folder of large photos once, which helps every epoch).
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return min(MAX_WORKERS, max(1, cores - 1))


# -- memory -----------------------------------------------------------------------------------------------------------
def memory_budget(cache_limit: str | None) -> int:
    """Bytes of decoded images allowed in memory.

    cache_limit: a size for memory.parse_bytes ('6GiB', '500MB', '0' = always stream); None: half the memory
    available now (MemAvailable of /proc/meminfo, lowered to what the process's cgroup still allows; else psutil's
    figure; else 4 GiB). Half, because the model, the batches and the page cache that streaming reads through need
    room too. Raises ConfigError for text that is not a size."""
    if cache_limit is not None:
        return parse_bytes(cache_limit, "cache_limit")
    return _available_memory() // 2


def _available_memory() -> int:
    available = _meminfo_available()
    if available is None:
        try:
            import psutil  # not a dependency: used where it is installed and /proc is not there (macOS)

            available = int(psutil.virtual_memory().available)
        except Exception:  # ImportError, or psutil unable to read the system
            available = FALLBACK_MEMORY
    limit = _cgroup_room()
    return min(available, limit) if limit is not None else available


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024  # the value is in kB
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_room() -> int | None:
    """Bytes the process's cgroup (v2) may still take: in a container, MemAvailable counts the whole host's memory,
    and decoding past the container's limit gets the run killed."""
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text(encoding="ascii").strip()
        if limit == "max":
            return None
        used = int(Path("/sys/fs/cgroup/memory.current").read_text(encoding="ascii"))
        return max(0, int(limit) - used)
    except (OSError, ValueError):
        return None
