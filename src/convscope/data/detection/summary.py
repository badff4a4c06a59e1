"""What a detection dataset holds, split by split — images, boxes, boxes per class, images without boxes, ignore
regions — with warnings on classes too thin to learn or missing from a split, and the problems only the whole
dataset shows: no training box at all, and images that two splits share ("leak": the same file, or the same bytes
under another name, in train and test inflates the test score).

Built from a RawDataset (`convscope detect lint`: `lint_dataset` reads the dataset once with its format's raw reader,
the same decoding and row checks as the readers' lint, then hashes each image file once, SHA-256 of its bytes) or from
a loaded DetectionDataset (`detect train`: `summarise_dataset`; a split holds names, not paths, so the letterboxed
pixels already decoded are hashed instead: identical files decode to identical pixels, no file is read again).

Images repeated within one split are counted in its line ("3 repeated images"), not listed as problems: a repeat
weighs one image twice in training or scoring, it does not carry an answer from training into a score, and datasets
scraped from the web hold many, so a line each would bury the problems that drop boxes.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from convscope.data.detection.boxes import (
    SPLIT_NAMES,
    Boxes,
    DetectionDataset,
    LabelProblem,
    RawDataset,
    lint_summary,
)
from convscope.data.detection.formats import format_of
from convscope.data.detection.leaks import Entry, digests, file_digest, shared
from convscope.files import dataset_name

MIN_TRAIN_BOXES = 20  # fewer training boxes of a class than this: a warning (a detector needs more to learn it)
SHOWN_PROBLEMS = 20  # a notebook's display of a summary lists this many problems, then how many more
SHOWN_CLASSES = 8  # a compact line (the terminal at training) lists this many classes' box counts, then "… N more"
FORMAT_NAMES = {
    "yolo": "YOLO",
    "voc": "Pascal VOC",
    "coco": "COCO",
    "csv": "TF Object Detection CSV",
    "voc-folders": "Pascal VOC split folders",
    "coco-folders": "COCO split folders",
}  # RawDataset.format → as people name it


# ── the counts ────────────────────────────────────────────────────────────────────────────────────────────────────
@dataclass(frozen=True)
class SplitSummary:
    """One split's counts. `per_class`: boxes per class, in the dataset's class order (ignore regions not counted)."""

    name: str  # "train", "val", "test" ("val/test" when one held-out split serves as both)
    images: int  # images read and kept (an unreadable image is a problem, not counted)
    boxes: int
    per_class: tuple[int, ...]
    without_boxes: int  # kept images with no box (background images)
    ignore: int = 0  # ignore regions: COCO iscrowd, VOC difficult
    repeated: int = 0  # images with the same bytes (pixels) as an earlier image of this split

    @staticmethod
    def of(name: str, n_classes: int, boxes: Sequence[Boxes], ignore: Sequence[Boxes] = ()) -> SplitSummary:
        """The counts of one split from its images' boxes (one Boxes each) and ignore regions (one each, or ())."""
        classes = [b.classes for b in boxes if len(b)]
        counts = np.bincount(np.concatenate(classes), minlength=n_classes) if classes else np.zeros(n_classes, int)
        return SplitSummary(
            name,
            images=len(boxes),
            boxes=int(sum(len(b) for b in boxes)),
            per_class=tuple(int(c) for c in counts[:n_classes]),
            without_boxes=sum(1 for b in boxes if not len(b)),
            ignore=int(sum(len(b) for b in ignore)),
        )

    def line(self, classes: Sequence[str], name_width: int, count_width: int, most: int | None = None) -> str:
        """'train  205 images, 2,789 boxes (RBC 2,347, WBC 219, Platelets 223), 0 without boxes'; `most`: list only
        the first `most` classes' counts, then '… N more'."""
        shown = [f"{c} {n:,}" for c, n in zip(classes, self.per_class, strict=True)]
        if most is not None and len(shown) > most:
            shown = [*shown[:most], f"… {len(shown) - most} more"]
        text = f"{self.name:<{name_width}}  {self.images:>{count_width},} image{_s(self.images)}, "
        text += f"{self.boxes:,} box{'' if self.boxes == 1 else 'es'}"
        text += f" ({', '.join(shown)})" if self.boxes and shown else ""
        text += f", {self.without_boxes:,} without boxes"
        if self.ignore:
            text += f", {self.ignore:,} ignore region{_s(self.ignore)}"
        if self.repeated:
            text += f", {self.repeated:,} repeated image{_s(self.repeated)}"
        return text


def _s(count: int) -> str:
    return "" if count == 1 else "s"


@dataclass(frozen=True)
class DataSummary:
    """A dataset's counts per split (in SPLIT_NAMES order), for people (`lines`) and for JSON (`as_dict`)."""

    name: str  # the dataset's folder (or file) name
    format: str  # as people name it ("Pascal VOC"), or "" when not known (a dataset loaded for training)
    classes: tuple[str, ...]
    splits: tuple[SplitSummary, ...]
    notes: tuple[str, ...] = ()  # what reading said about the splits: drawn from the files, held out, no test split
    problems: tuple[LabelProblem, ...] = ()  # convscope.lint_detection's: every problem, then the notes (kind)

    def split(self, name: str) -> SplitSummary | None:
        return next((s for s in self.splits if s.name == name), None)

    @property
    def warnings(self) -> tuple[str, ...]:
        """A class with fewer than MIN_TRAIN_BOXES training boxes; a class with no box in a split that has boxes of
        others (its AP cannot be measured there)."""
        found = []
        train = self.split("train")
        if train is not None:
            for name, count in zip(self.classes, train.per_class, strict=True):
                if count < MIN_TRAIN_BOXES:
                    found.append(
                        f"class {name} has {count or 'no'} training box{'' if count == 1 else 'es'}: a detector needs "
                        f"more (≥ {MIN_TRAIN_BOXES})"
                    )
        for split in self.splits:
            if split.name == "train" or not split.boxes:
                continue
            for name, count in zip(self.classes, split.per_class, strict=True):
                if not count:
                    found.append(
                        f"class {name} has no box in {split.name}, which has {split.boxes:,} "
                        f"box{'' if split.boxes == 1 else 'es'} of other classes: its AP cannot be measured on "
                        f"{split.name}"
                    )
        return tuple(found)

    def lines(self, most: int | None = None) -> list[str]:
        """The header, one line per split, the notes ('  note: …': how the splits were made), then the warnings
        ('warning: …'). `most` (a compact summary): each split lists the first `most` classes' counts, and at most
        `most` warnings are shown, then how many more."""
        head = f"{self.name} ({self.format})" if self.format else self.name
        lines = [f"{head}: {len(self.classes)} class{'' if len(self.classes) == 1 else 'es'}"]
        name_width = max((len(s.name) for s in self.splits), default=0)
        count_width = max((len(f"{s.images:,}") for s in self.splits), default=0)
        lines += ["  " + s.line(self.classes, name_width, count_width, most) for s in self.splits]
        lines += [f"  note: {text}" for text in self.notes]  # under the splits: how they were made
        warnings = [f"warning: {text}" for text in self.warnings]
        if most is not None and len(warnings) > most:
            warnings = [*warnings[:most], f"warning: … {len(warnings) - most} more (the run's train.log has them all)"]
        return lines + warnings

    @property
    def problem_count(self) -> int:
        """The problems in `problems` (notes not counted): what `convscope detect lint` exits 1 on."""
        return sum(1 for problem in self.problems if not problem.is_note)

    def __repr__(self) -> str:
        found = [p for p in self.problems if not p.is_note]
        tail = [f"{len(found)} label problem(s): {lint_summary(found)}"] if found else []
        return "\n".join(self.lines() + tail)

    def _repr_html_(self) -> str:
        """For a notebook: a table of the splits (images, boxes, without boxes, ignore regions, repeated images), one
        of boxes per class and split, then the notes, the warnings and the problems (count by kind, the first
        SHOWN_PROBLEMS listed)."""
        from html import escape

        from convscope.show import heading, table

        found = [p for p in self.problems if not p.is_note]
        head = f"{self.name} ({self.format})" if self.format else self.name
        counts = f"{len(found)} label problem(s)" if found else "no label problems"
        html = heading(f"{head}: {len(self.classes)} class{'' if len(self.classes) == 1 else 'es'}", counts)
        header = ("split", "images", "boxes", "without boxes", "ignore regions", "repeated images")
        rows = [(s.name, f"{s.images:,}", f"{s.boxes:,}", f"{s.without_boxes:,}", f"{s.ignore:,}", f"{s.repeated:,}")
                for s in self.splits]  # fmt: skip
        html += table(header, rows, right=range(1, 6))
        per_class = [(c, *(f"{s.per_class[i]:,}" for s in self.splits)) for i, c in enumerate(self.classes)]
        html += table(
            ("boxes of class", *(s.name for s in self.splits)), per_class, right=range(1, len(self.splits) + 1)
        )
        items = [f"note: {n}" for n in self.notes] + [f"warning: {w}" for w in self.warnings]
        if found:
            items.append(f"{len(found)} label problem(s): {lint_summary(found)}")
            items += [str(p) for p in found[:SHOWN_PROBLEMS]]
            items += [f"… {len(found) - SHOWN_PROBLEMS} more"] if len(found) > SHOWN_PROBLEMS else []
        return html + ("<ul>" + "".join(f"<li>{escape(i)}</li>" for i in items) + "</ul>" if items else "")

    def as_dict(self) -> dict:
        """JSON-ready: {name, format, classes, splits: {split: {images, boxes, boxes_per_class (a list in class
        order), without_boxes, ignore, repeated}}, warnings, notes}. `from_dict` reads it back."""
        splits = {
            s.name: {
                "images": s.images,
                "boxes": s.boxes,
                "boxes_per_class": list(s.per_class),
                "without_boxes": s.without_boxes,
                "ignore": s.ignore,
                "repeated": s.repeated,
            }
            for s in self.splits
        }
        return {
            "name": self.name,
            "format": self.format,
            "classes": list(self.classes),
            "splits": splits,
            "warnings": list(self.warnings),
            "notes": list(self.notes),
        }

    @staticmethod
    def from_dict(doc: dict) -> DataSummary:
        """The summary `as_dict` wrote (warnings are computed again from the counts)."""
        splits = tuple(
            SplitSummary(
                name,
                s["images"],
                s["boxes"],
                tuple(s["boxes_per_class"]),
                s["without_boxes"],
                s["ignore"],
                s["repeated"],
            )
            for name, s in doc["splits"].items()
        )
        return DataSummary(doc["name"], doc["format"], tuple(doc["classes"]), splits, tuple(doc.get("notes", ())))


# ── what reading says ──────────────────────────────────────────────────────────────────────────────────────────────
NOTE_LOGGERS = ("convscope.data.detection", "convscope.detect")  # the readers' loggers, and load_detection's


class _Notes(logging.Handler):
    def __init__(self, into: list[str]) -> None:
        super().__init__(logging.INFO)
        self.into = into

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno < logging.WARNING:  # warnings reach the terminal already
            self.into.append(record.getMessage())


@contextmanager
def reading_notes() -> Iterator[list[str]]:
    """The INFO lines the readers log while the block reads a dataset (splits drawn from the files or held out, no
    test split, classes found in the files), collected into the list it yields, one string each: a training logs
    them before its train.log exists, and the terminal shows INFO lines with -v only, so the summary carries them.
    The readers' loggers log INFO while the block runs; their levels are put back after."""
    into: list[str] = []
    handler = _Notes(into)
    loggers = [logging.getLogger(name) for name in NOTE_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        if not logger.isEnabledFor(logging.INFO):
            logger.setLevel(logging.INFO)
    try:
        yield into
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.removeHandler(handler)
            logger.setLevel(level)


def _with_repeats(splits: Sequence[SplitSummary], repeated: dict[str, int]) -> tuple[SplitSummary, ...]:
    return tuple(
        SplitSummary(s.name, s.images, s.boxes, s.per_class, s.without_boxes, s.ignore, repeated.get(s.name, 0))
        for s in splits
    )


# ── from a raw read (lint) and from a loaded dataset (training) ───────────────────────────────────────────────────
def summarise_raw(raw: RawDataset) -> tuple[DataSummary, list[LabelProblem]]:
    """The counts of a raw read, and the problems of the whole dataset: no training image with a box (kind
    "no-box": training would be refused) and images in two splits (kind "leak", by SHA-256 of each file's bytes,
    each file read once)."""
    k = len(raw.classes)
    order = [name for name in SPLIT_NAMES if name in raw.splits] + [n for n in raw.splits if n not in SPLIT_NAMES]
    splits = [
        SplitSummary.of(name, k, [i.boxes for i in raw.splits[name]], [i.ignore for i in raw.splits[name]])
        for name in order
    ]
    images = [(name, image) for name in order for image in raw.splits[name]]
    keys = [os.path.realpath(image.path) for _, image in images]
    unique = list(dict.fromkeys(keys))  # a file listed twice (VOC image sets) is hashed once
    by_key = dict(zip(unique, digests(len(unique), lambda i: file_digest(Path(unique[i]))), strict=True))
    entries = [Entry(name, image.name, key, by_key[key]) for (name, image), key in zip(images, keys, strict=True)]
    problems, repeated = shared(entries, "bytes")
    fmt = FORMAT_NAMES.get(raw.format, raw.format)
    summary = DataSummary(dataset_name(raw.source), fmt, raw.classes, _with_repeats(splits, repeated))
    train = summary.split("train")
    if train is not None and not train.boxes:
        why = "no training image with a valid box: training would be refused"
        problems.insert(0, LabelProblem(Path(raw.source).name, None, why, "no-box"))
    return summary, problems


def summarise_dataset(data: DetectionDataset) -> tuple[DataSummary, list[LabelProblem]]:
    """The counts of a dataset loaded for training, and its images in two splits (kind "leak", by SHA-256 of the
    decoded, letterboxed pixels: no file is read again). One held-out split serving as val and test (a COCO JSON) is
    counted once, as "val/test"."""
    k = len(data.classes)
    parts = [("train", data.train), ("val", data.val), ("test", data.test)]
    if data.test is not None and data.test is data.val:
        parts = [("train", data.train), ("val/test", data.val)]
    parts = [(name, split) for name, split in parts if split is not None]
    splits = [SplitSummary.of(name, k, split.targets, split.crowds) for name, split in parts]
    entries = []
    for name, split in parts:
        images = split.images
        found = digests(len(split), lambda i, images=images: hashlib.sha256(np.ascontiguousarray(images[i])).digest())
        entries += [Entry(name, shown, shown, d) for shown, d in zip(split.names, found, strict=True)]
    problems, repeated = shared(entries, "pixels")
    summary = DataSummary(dataset_name(data.source), "", data.classes, _with_repeats(splits, repeated), data.notes)
    return summary, problems


def lint_dataset(path: str | Path, data_dir: str | Path | None = None) -> tuple[DataSummary, list[LabelProblem]]:
    """`convscope detect lint`: the dataset at `path` read once by its format's raw reader (every image decoded, no
    pixels kept), its summary, and every problem: the readers' (rows dropped), then the whole dataset's (no training
    box, images in two splits), then the notes. A DataError when the dataset cannot be read at all (formats.format_of,
    the readers). A VOC folder without ImageSets is split as training would split it by default (seed 0, 10%)."""
    path = Path(path)
    with reading_notes() as notes:
        raw = format_of(path).read_raw(path, data_dir=data_dir, seed=0, val_fraction=0.1)
    summary, found = summarise_raw(raw)
    summary = replace(summary, notes=(*notes, *_training_splits(raw)))
    dropped = [problem for problem in raw.problems if not problem.is_note]
    notes = [problem for problem in raw.problems if problem.is_note]
    return summary, dropped + found + notes


def _training_splits(raw: RawDataset) -> tuple[str, ...]:
    """What `detect train` makes of missing splits (data.detection.load.with_val_split), said by the lint."""
    held = "holds out a seeded 10% of the training images (--val-fraction, --seed) for validation"
    if "val" not in raw.splits and "test" not in raw.splits:
        return (f"no val or test split: `detect train` {held} and reports its test score on them (optimistic)",)
    if "val" not in raw.splits:
        return (f"no val split: `detect train` {held}",)
    if "test" not in raw.splits:
        return ("no test split: `detect train` reports its test score on the validation images (optimistic)",)
    return ()
