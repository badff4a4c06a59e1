"""The dataset doctor: every check on one data set, in one pass over its images (see convscope.diagnosis.model).

    list (listing.py) → scan each image once (scan.py) → files, twins, properties, balance → labels (with a run)

Nothing in the data set is written or modified.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np

from convscope.diagnosis.balance import find_imbalance, split_counts
from convscope.diagnosis.listing import Listing, list_data
from convscope.diagnosis.model import Diagnosis, Example, Finding
from convscope.diagnosis.properties import find_outliers, summarise
from convscope.diagnosis.scan import Scan, scan_arrays, scan_files
from convscope.diagnosis.twins import find_twins
from convscope.errors import DataError, OutputError

log = logging.getLogger(__name__)
Progress = Callable[[str, int, int], None]  # (stage, done, total)


def diagnose(
    data: str | Path,
    run: str | Path | None = None,
    data_dir: str | Path | None = None,
    progress: Progress | None = None,
) -> Diagnosis:
    """Examine the data set `data` (an image-class folder, a built-in name, or a detection data set in any layout
    convscope reads; `data_dir`: a COCO JSON's image folder) and return what was found.

    run: a trained run folder; its predictions judge the labels (convscope.diagnosis.labels) and, where test images
    have twins in train, say what the test score is without them. progress(stage, done, total) as it goes.
    Raises DataError (one line) when the data set cannot be read at all; files that cannot be read are findings.
    """
    started = time.perf_counter()
    if run is not None:  # a run that is not one fails now, not after the scan
        from convscope.run import load_run

        load_run(Path(run))
    stages: dict[str, float] = {}
    tick = time.perf_counter()
    listing = list_data(data, data_dir)
    stages["list"] = time.perf_counter() - tick
    tick = time.perf_counter()
    scan = _scan(listing, progress)
    stages["scan"] = time.perf_counter() - tick
    if listing.items and not scan.readable.any():
        _nothing_readable(listing, scan)
    tick = time.perf_counter()
    findings = [*find_unreadable(listing, scan), *find_annotation_problems(listing)]
    twins, twin_notes = find_twins(listing, scan)
    findings += twins
    stages["twins"] = time.perf_counter() - tick
    tick = time.perf_counter()
    properties = summarise(listing, scan)
    findings += find_outliers(listing, scan)
    splits = split_counts(listing, scan)
    findings += find_imbalance(listing, splits)
    stages["properties"] = time.perf_counter() - tick
    notes = [*listing.notes, *(str(p) for p in listing.problems if p.is_note), *twin_notes]
    scores = None
    if run is not None:
        from convscope.diagnosis.labels import judge_labels

        tick = time.perf_counter()
        judged = judge_labels(listing, scan, findings, Path(run), progress)
        findings += judged.findings
        scores, notes = judged.scores, notes + list(judged.notes)
        stages["labels"] = time.perf_counter() - tick
    else:
        notes.append("labels not checked: give a trained run (--run RUN) to judge them by its predictions")
    findings.sort(key=lambda f: (not f.serious, _CHECK_ORDER.index(f.check)))
    return Diagnosis(
        source=str(data),
        layout=listing.layout,
        task=listing.task,
        classes=listing.classes,
        splits=splits,
        properties=properties,
        findings=tuple(findings),
        seconds=time.perf_counter() - started,
        stages={name: round(seconds, 3) for name, seconds in stages.items()},
        run=None if run is None else str(run),
        scores=scores,
        notes=tuple(notes),
        listing=listing,
        pictures={} if run is None else judged.pictures,
    )


_CHECK_ORDER = ("files", "twins", "labels", "balance", "properties")


def _scan(listing: Listing, progress: Progress | None) -> Scan:
    each = None if progress is None else (lambda done, total: progress("scan", done, total))
    if listing.arrays is None:
        return scan_files([item.path for item in listing.items], each)
    # the splits' arrays in listing order (train, val, test), one scan over all: one progress bar, one worker pool
    return scan_arrays(np.concatenate(list(listing.arrays.values())), each)


def check_out(out: str | Path, data: str | Path) -> None:
    """OutputError when the report's folder `out` lies inside the data set `data` (its folder, or a data file's
    folder): the doctor writes nothing into the data, and a report folder there would be read as a class next time."""
    data = Path(data)
    if not data.exists():
        return  # a built-in name, or nothing: diagnose says so
    root = (data if data.is_dir() else data.parent).resolve()
    target = Path(out).resolve()
    if target == root or root in target.parents:
        raise OutputError(
            f"{out}: inside the data set {data}; the doctor writes nothing into the data it examines (a report "
            "folder there would be read as a class): give --out a folder outside it"
        )


def _nothing_readable(listing: Listing, scan: Scan) -> None:
    """DataError (exit 2): not one image of the data set can be read; the first few files and why."""
    shown = [f"{item.name}: {reason}" for item, reason in zip(listing.items, scan.reasons, strict=True)][:3]
    more = "; …" if len(listing.items) > 3 else ""
    raise DataError(
        f"{listing.source}: none of its {len(listing.items):,} image file(s) can be read ({'; '.join(shown)}{more})"
    )


_UNREAD_KINDS = ("unreadable", "missing")  # what a detection reader drops as files, not as annotations


def find_unreadable(listing: Listing, scan: Scan) -> list[Finding]:
    """One problem listing every file that could not be read as an image, with its reason: the scan's, and the
    images a detection reader could not read or find."""
    examples = [
        Example(
            item.name, item.split, None if item.label is None else listing.classes[item.label], reason, index=item.index
        )
        for item, reason in zip(listing.items, scan.reasons, strict=True)
        if reason is not None
    ]
    examples += [Example(p.path, "", None, p.message) for p in listing.problems if p.kind in _UNREAD_KINDS]
    if not examples:
        return []
    kinds = Counter(example.why.split(" (")[0] for example in examples)
    title = f"{len(examples)} file(s) cannot be read as images: " + ", ".join(
        f"{why} ({count})" for why, count in kinds.most_common()
    )
    advice = "training leaves them out; fix or remove them (nothing was modified)"
    return [Finding("files", "unreadable", title, len(examples), True, tuple(examples), advice)]


def find_annotation_problems(listing: Listing) -> list[Finding]:
    """Detection: what the format's reader dropped (boxes outside the image, unknown classes, …), as one problem."""
    from convscope.data.detection.boxes import lint_summary

    dropped = [problem for problem in listing.problems if not problem.is_note and problem.kind not in _UNREAD_KINDS]
    if not dropped:
        return []
    examples = tuple(
        Example(p.path, "", None, p.message if p.line is None else f"line {p.line}: {p.message}") for p in dropped
    )
    return [
        Finding(
            "labels",
            "annotations",
            f"{len(dropped)} annotation problem(s): {lint_summary(dropped)}",
            len(dropped),
            True,
            examples,
            "`convscope detect lint DATA` lists them too; training drops those rows",
        )
    ]
