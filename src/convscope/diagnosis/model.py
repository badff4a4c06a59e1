"""What the dataset doctor found, as data: findings with their examples, counts per split and class, image properties.

A `Diagnosis` is what `convscope doctor`, `convscope.doctor(...)` and the studio's Doctor page show: the terminal
lines (`lines`), a dict for `--json` (`as_dict`, read back by `from_dict`), the HTML report
(convscope.diagnosis.report). Its exit code is 0 when nothing serious was found, 1 when something was; data that
cannot be read at all is a DataError before any Diagnosis exists (the CLI's exit 2).

Serious findings are those that make a score wrong or cost a training: unreadable files, images two splits share
(exact or near twins: a leak), a class missing from a split, suspicious labels. The others (repeats within a split,
imbalance, odd sizes, modes, EXIF rotations, near-blank images) are warnings: worth a look, not an error.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from convscope.diagnosis.report_tiles import score_text

if TYPE_CHECKING:
    from convscope.diagnosis.listing import Listing

# Every check, in the order the report shows them, and what it looks at.
CHECKS = {
    "files": "files that cannot be read as images",
    "twins": "exact and near duplicates, within a split and across splits (leaks)",
    "properties": "image sizes, aspect ratios, modes, EXIF rotations, brightness and contrast",
    "balance": "images (and boxes) per class and split",
    "labels": "labels that disagree with a trained network, and annotation problems",
}


# Every kind of finding, by check: what Diagnosis.finding(kind) and count(kind) take.
KINDS = {
    "files": ("unreadable",),
    "twins": ("leak", "near-leak", "duplicate", "near-duplicate"),
    "properties": ("tiny", "huge", "aspect", "mode", "exif", "near-blank"),
    "balance": ("missing-class", "imbalance"),
    "labels": ("conflicting-labels", "suspicious-label", "missed-box", "unlabelled-object", "annotations"),
}


@dataclass(frozen=True)
class Example:
    """One image a finding points at (or a pair of them: `other` is the twin), as shown to people."""

    name: str  # the file relative to the data set's folder ("train/cat/0001.jpg"), or "train[123]" for arrays
    split: str  # "train", "val", "test", or "all" for a folder that training splits itself
    label: str | None = None  # the class name given (classification), None for detection images and unreadable files
    why: str = ""  # one line: "truncated JPEG", "Hamming distance 3", "labelled cat, predicted dog (0.97)"
    other: str | None = None  # the twin of a pair (duplicates, leaks)
    other_split: str | None = None
    other_label: str | None = None
    score: float | None = None  # what the finding ranks by (a confidence, a distance); None when not ranked
    box: tuple[float, float, float, float] | None = None  # detection: x1, y1, x2, y2 in the image's pixels
    index: int | None = None  # the image's index in its split (built-in arrays are shown from it)
    other_index: int | None = None


@dataclass(frozen=True)
class Finding:
    """One kind of problem and every image it concerns, worst first."""

    check: str  # a key of CHECKS
    kind: str  # "unreadable", "leak", "near-leak", "duplicate", "near-duplicate", "tiny", "gray", …
    title: str  # one line with the count: "12 test images have a twin in train (same bytes)"
    count: int  # the images (or pairs, or classes) concerned; the title says which
    serious: bool
    examples: tuple[Example, ...] = ()
    advice: str = ""  # one line: what to do about it

    @property
    def level(self) -> str:
        return "problem" if self.serious else "warning"


@dataclass(frozen=True)
class SplitCounts:
    """One split: its images per class (and boxes per class for detection), the files it lists and how many read."""

    name: str
    folder: str  # where its images are, as shown ("train/", "validation/", "Annotations/ + ImageSets/Main/test.txt")
    files: int  # images listed
    readable: int
    per_class: dict[str, int]  # images per class (detection: images holding at least one box of the class)
    boxes_per_class: dict[str, int] | None = None  # detection only
    box_sizes: dict[str, tuple[float, float, float]] | None = None  # detection: 10th, 50th, 90th pct of √(w·h), px


@dataclass(frozen=True)
class Properties:
    """The readable images' sizes and looks, all splits together (the report's histograms are drawn from these)."""

    widths: tuple[int, int, int]  # min, median, max in pixels (after EXIF orientation)
    heights: tuple[int, int, int]
    aspects: tuple[float, float, float]  # width / height: min, median, max
    modes: dict[str, int]  # Pillow modes as stored ("RGB", "L", "P", "RGBA", "I;16", …) → images
    formats: dict[str, int]  # "JPEG", "PNG", … → images
    exif_rotated: int  # images with an EXIF orientation other than 1 (turned upright when read)
    brightness: tuple[float, float, float]  # mean gray level 0–255: 1st percentile, median, 99th percentile
    contrast: tuple[float, float, float]  # standard deviation of the gray levels: the same percentiles
    by_class: dict[str, dict[str, float]] = field(default_factory=dict)  # classification: medians per class


@dataclass
class Diagnosis:
    """Everything the doctor found in one data set. Display it in a notebook, print `lines()`, save `as_dict()`."""

    source: str  # the data set as given
    layout: str  # "image folders (train/ val/ test/)", "built-in cifar10", "Pascal VOC", …
    task: str  # "classification" or "detection"
    classes: tuple[str, ...]
    splits: tuple[SplitCounts, ...]
    properties: Properties | None  # None when no image could be read
    findings: tuple[Finding, ...]
    seconds: float  # the whole diagnosis, wall clock
    stages: dict[str, float] = field(default_factory=dict)  # seconds per stage ("scan", "twins", "labels", …)
    run: str | None = None  # the run whose predictions judged the labels
    scores: dict[str, float] | None = None  # with a run: {"test accuracy": …, "test accuracy without twins": …}
    notes: tuple[str, ...] = ()  # what the doctor could not check, and why ("no run: labels not checked")
    out: str | None = None  # the folder its report was written to, when it was
    # the images examined (to show an example's pixels); not saved, absent from a diagnosis read back from JSON
    listing: Listing | None = field(default=None, repr=False, compare=False)
    # pictures drawn for examples, by example name (the class-activation maps of suspicious labels): uint8 H×W×3;
    # not saved to JSON
    pictures: dict[str, np.ndarray] = field(default_factory=dict, repr=False, compare=False)

    @property
    def problems(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.serious)

    @property
    def warnings(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if not f.serious)

    @property
    def exit_code(self) -> int:
        """0: nothing serious found; 1: something serious (see the module docstring)."""
        return 1 if self.problems else 0

    def finding(self, kind: str) -> Finding | None:
        """The finding of this kind (one of KINDS: "leak" for exact copies across splits, "near-leak" for near ones,
        …), or None when there is none. Raises ValueError for a kind that does not exist."""
        known = [name for kinds in KINDS.values() for name in kinds]
        if kind not in known:
            raise ValueError(f"no finding is of kind {kind!r}; the kinds: {', '.join(known)}")
        return next((f for f in self.findings if f.kind == kind), None)

    def count(self, kind: str) -> int:
        """How many images (pairs, classes) the finding of this kind counts; 0 when there is none."""
        found = self.finding(kind)
        return found.count if found else 0

    def lines(self, examples: int = 0) -> list[str]:
        """The terminal's summary: the data set, its splits, then each finding with its first `examples` images."""
        out = [f"{self.source}: {self.layout}, {self.task}, {len(self.classes)} classes"]
        for split in self.splits:
            unread = f", {split.files - split.readable:,} unreadable" if split.readable < split.files else ""
            counts, spread = sorted(split.per_class.values()), ""
            if counts:
                many = f"{counts[0]:,}" if counts[0] == counts[-1] else f"{counts[0]:,}–{counts[-1]:,}"
                spread = f"; {many} images per class"
            boxes = f"; {sum(split.boxes_per_class.values()):,} boxes" if split.boxes_per_class is not None else ""
            out.append(f"  {split.name:5} {split.files:>7,} images in {split.folder}{unread}{spread}{boxes}")
        if self.scores:
            out.append("  " + ", ".join(f"{name} {score_text(name, value)}" for name, value in self.scores.items()))
        for finding in self.findings:
            out.append(f"{finding.level}: {finding.title}")
            out += [f"    {_example_line(example)}" for example in finding.examples[:examples]]
            if 0 < examples < len(finding.examples):
                out.append(f"    … {len(finding.examples) - examples:,} more")
        out += [f"note: {note}" for note in self.notes]
        verdict = (
            f"{len(self.problems)} problem(s), {len(self.warnings)} warning(s)" if self.findings else "nothing found"
        )
        out.append(f"{verdict} in {self.seconds:.1f} s")
        return out

    def __repr__(self) -> str:
        return "\n".join(self.lines())

    def _repr_html_(self) -> str:
        from convscope.diagnosis.report import notebook_html

        return notebook_html(self)

    def as_dict(self) -> dict:
        """JSON-ready: every field (the listing aside), findings with all their examples."""
        doc = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("listing", "pictures")}
        return asdict(_Saved(doc)).get("doc", {}) | {"exit_code": self.exit_code}

    def image(self, name: str, split: str, index: int | None = None) -> np.ndarray | None:
        """The pixels of an example's image (uint8 H×W×3, upright) or of its twin: from the data set's arrays, or its
        file decoded again; None when it cannot be read (an unreadable file) or the listing is gone (read from JSON).
        """
        if self.listing is None:
            return None
        from convscope.data.images import open_image, to_array
        from convscope.errors import DataError

        if self.listing.arrays is not None and index is not None:
            pixels = self.listing.arrays[split][index]
            return np.repeat(pixels, 3, axis=2) if pixels.shape[2] == 1 else pixels
        root = Path(self.listing.source)
        path = root / name if root.is_dir() else root.parent / name
        try:
            return to_array(open_image(path), 3)
        except DataError:
            return None

    @staticmethod
    def from_dict(doc: dict) -> Diagnosis:
        """The inverse of as_dict (the studio reads a saved diagnosis back with it)."""
        props = doc.get("properties")
        return Diagnosis(
            source=doc["source"],
            layout=doc["layout"],
            task=doc["task"],
            classes=tuple(doc["classes"]),
            splits=tuple(SplitCounts(**split) for split in doc["splits"]),
            properties=None if props is None else Properties(**{k: _tuple(v) for k, v in props.items()}),
            findings=tuple(
                Finding(**(f | {"examples": tuple(Example(**(e | {"box": _tuple(e["box"])})) for e in f["examples"])}))
                for f in doc["findings"]
            ),
            seconds=doc["seconds"],
            stages=doc.get("stages", {}),
            run=doc.get("run"),
            scores=doc.get("scores"),
            notes=tuple(doc.get("notes", ())),
            out=doc.get("out"),
        )


@dataclass
class _Saved:  # asdict turns nested dataclasses (findings, examples) into dicts; this wraps the top level's fields
    doc: dict


def _tuple(value):
    return tuple(value) if isinstance(value, list) else value


def _example_line(example: Example) -> str:
    # the label when there is one (classification), else the split (a detection image's name may not say it)
    line = _named(example.name, example.label or example.split)
    if example.other:
        line += " ↔ " + _named(example.other, example.other_label or example.other_split)
    return f"{line}: {example.why}" if example.why else line


def _named(name: str, detail: str | None) -> str:
    if not name:
        return detail or ""
    return f"{name} ({detail})" if detail and detail != name else name
