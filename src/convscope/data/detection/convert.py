"""`convscope detect convert`: a detection dataset from one format to another — YOLO, COCO, Pascal VOC — in the images'
own pixels (not letterboxed), splits kept, images copied byte for byte (the source is never changed).

Every reader's raw mode (`Format.read_raw` of the format table, convscope.data.detection.formats) lints as loading
does: the rows it drops are not written, and the summary counts them. What each format writes, as the usual tools read
it, is in convscope.data.detection.write; YOLO has no ignore regions, so COCO crowds and VOC difficult objects are left
out (counted in the summary) when converting to it.

A COCO source is one JSON (split "train"; images in --data-dir, default images/ beside it, else the JSON's folder), or
a folder of split JSONs (train.json, val.json, test.json, or instances_train2017.json …, there or in annotations/).
File names are unique in the output: the second a.jpg (from another split or folder) becomes a_2.jpg.

Everything is written into a temporary folder beside OUT, which is renamed to OUT at the end: a failure leaves no
half-written OUT (the temporary folder is removed).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from convscope.data.detection.boxes import RawDataset, lint_summary
from convscope.data.detection.formats import FORMATS, format_of
from convscope.errors import DataError, OutputError


@dataclass(frozen=True)
class ConvertSummary:
    source_format: str
    target: str
    out: Path
    splits: dict[str, tuple[int, int, int]]  # split → (images, boxes, classes with a box) written
    problems: str  # lint_summary of what the readers dropped ("no problems")
    dropped: int  # label problems whose rows were not written (notes not counted)
    ignore_dropped: int  # ignore regions the target cannot hold (YOLO)

    def line(self) -> str:
        """One line: what went where, per split, and what was left out."""
        parts = [f"{s} {_n(i, 'image')}, {_n(b, 'box')}, {_n(c, 'class')}" for s, (i, b, c) in self.splits.items()]
        text = f"{self.source_format} → {self.target} in {self.out}: " + "; ".join(parts)
        dropped = f"{self.dropped} label problem(s) dropped ({self.problems})" if self.dropped else "no label problems"
        text += f"; {dropped}"
        if self.ignore_dropped:
            holder = _HOLDS_NONE.get(self.target, self.target)
            text += f"; {self.ignore_dropped} ignore region(s) (crowd/difficult) not written: {holder} has none"
        return text


def _n(count: int, noun: str) -> str:
    """'1 image', '2 images', '1 box', '3 boxes'."""
    return f"{count:,} {noun}" if count == 1 else f"{count:,} {noun}{'es' if noun.endswith(('s', 'x')) else 's'}"


_HOLDS_NONE = {"yolo": "YOLO", "csv": "the CSV"}  # how the summary names a format without ignore regions


# ── reading ───────────────────────────────────────────────────────────────────────────────────────────────────────
def read_raw(src: str | Path, data_dir: str | Path | None = None, *, seed: int = 0, val_fraction: float = 0.1):
    """A YOLO folder (or data.yaml), a Pascal VOC folder, a COCO JSON or a folder of COCO split JSONs, read as a
    `RawDataset` (each image's boxes in its own pixels). `data_dir`: a COCO source's image folder. `seed` and
    `val_fraction`: a VOC folder without ImageSets is split as load_voc splits it. DataError when it cannot be read."""
    path = Path(src)
    return format_of(path).read_raw(path, data_dir=data_dir, seed=seed, val_fraction=val_fraction)


# ── file names ───────────────────────────────────────────────────────────────────────────────────────────────────────
def _unique_names(data: RawDataset) -> dict[tuple[str, int], str]:
    """(split, index) → a file name unique in the whole output, stems compared without case (VOC ids, label files)."""
    taken, names = set(), {}
    for split, images in data.splits.items():
        for i, image in enumerate(images):
            stem, suffix, n = image.path.stem, image.path.suffix, 1
            candidate = stem
            while candidate.lower() in taken:
                n += 1
                candidate = f"{stem}_{n}"
            taken.add(candidate.lower())
            names[split, i] = candidate + suffix
    return names


# ── the command ───────────────────────────────────────────────────────────────────────────────────────────────────
def _check_out(out: Path, src: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataError(f"{out}: not an empty folder; convert writes into a new or empty one, and changes nothing else")
    if src.is_dir() and out.resolve().is_relative_to(src.resolve()):
        raise DataError(f"{out}: inside the source {src}; convert never writes into the dataset it reads")


def convert(
    src: str | Path,
    to: str,
    out: str | Path,
    data_dir: str | Path | None = None,
    *,
    seed: int = 0,
    val_fraction: float = 0.1,
) -> ConvertSummary:
    """Convert the dataset at `src` (any of FORMATS, see `read_raw`) to format `to` in the new or empty folder `out`.

    Boxes keep their pixels (within half a pixel for VOC's whole pixels), classes and their order, splits, and ignore
    regions (as iscrowd / difficult; YOLO and the CSV have none). Returns the summary (`.line()` is the CLI's).
    DataError when the source cannot be read, `to` is not a format, or `out` is not empty or lies inside the source;
    OutputError when writing fails (then nothing is left at `out`).
    """
    if to not in FORMATS:
        raise DataError(f"expected --to {', '.join(FORMATS)}. Received: {to!r}")
    src, out = Path(src), Path(out)
    _check_out(out, src)
    data = read_raw(src, data_dir, seed=seed, val_fraction=val_fraction)
    tmp = None
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
        names = _unique_names(data)
        FORMATS[to].write(data, tmp, names)
        os.chmod(tmp, 0o755)  # mkdtemp makes it 0700
        if out.exists():
            out.rmdir()  # empty (checked above): rename needs the name free on every system
        os.rename(tmp, out)
    except OSError as err:
        raise OutputError(f"{out}: cannot write ({err.strerror or err}); nothing was written") from None
    finally:
        if tmp is not None and tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    dropped = [problem for problem in data.problems if not problem.is_note]
    splits = {}
    for split, images in data.splits.items():
        boxes = sum(len(image.boxes) for image in images)
        present = {int(c) for image in images for c in image.boxes.classes}
        splits[split] = (len(images), boxes, len(present))
    written = FORMATS[to].ignore_regions
    ignore = 0 if written else sum(len(image.ignore) for images in data.splits.values() for image in images)
    return ConvertSummary(data.format, to, out, splits, lint_summary(dropped), len(dropped), ignore)
