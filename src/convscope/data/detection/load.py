"""A detection dataset from a path, for training and evaluation: a YOLO folder or data.yaml, a Pascal VOC folder, a
COCO JSON or a folder of COCO splits (the format table, convscope.data.detection.formats, says which), read into one
DetectionDataset letterboxed to S×S; splits held out (seeded) where the format has none."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

from convscope.data.detection.boxes import DetectionDataset, LabelProblem, hold_out, lint_summary
from convscope.data.detection.formats import format_of
from convscope.data.detection.summary import DataSummary, reading_notes

log = logging.getLogger("convscope.detect")
MIN_TO_HOLD_OUT = 2  # training images needed to hold some out: one to train on, one to validate (as the trainer did)


def load_detection(
    data: str, data_dir: str | None, image_size: int, val_fraction: float, seed: int
) -> DetectionDataset:
    """A YOLO folder (or its data.yaml), a Pascal VOC folder, or a COCO JSON whose images are in `data_dir` (default:
    an `images` folder beside the JSON), or any other layout of the format table. A COCO file is one split:
    val_fraction of it is held out, and serves as the test split too. A VOC folder without ImageSets/Main holds out
    val_fraction for val and as much for test (seeded). Any dataset still without a val split gets one the same way
    (`with_val_split`). A val_fraction of 0 (or None) holds out 0.1. What was said about the splits while reading
    (drawn, held out, no test split) is in the dataset's `notes`. A DataError naming the formats for anything
    else."""
    path = Path(data)
    fmt = format_of(path, by_name=True)  # a .json or .yaml path is read as one, so its reader says what is missing
    fraction = val_fraction or 0.1
    with reading_notes() as notes:  # what is said about the splits: carried to the summary (DataSummary.notes)
        dataset = fmt.load(path, image_size, data_dir=data_dir, seed=seed, val_fraction=fraction)
        dataset = with_val_split(dataset, fraction, seed)
    return replace(dataset, notes=(*dataset.notes, *notes))


def with_val_split(dataset: DetectionDataset, fraction: float, seed: int) -> DetectionDataset:
    """The dataset with a val split: when it has none (or an empty one), a seeded `fraction` of its training images
    (at least one; boxes.hold_out), when train has at least MIN_TO_HOLD_OUT images. Logged, and so is the rule for
    a dataset without a test split: the test score is then taken on the val split, as the trainer and
    `detect evaluate` both do (an optimistic score: the same images chose the best checkpoint)."""
    train, val = dataset.train, dataset.val
    if (val is None or not len(val)) and len(train) >= MIN_TO_HOLD_OUT:
        rest, val = hold_out(train, fraction, seed)
        log.info(
            "%s: no val split: %d of %d training images held out for validation (seed %d)",
            dataset.source,
            len(val),
            len(train),
            seed,
        )
        dataset = replace(dataset, train=replace(rest, problems=train.problems), val=val)
    if dataset.test is None or not len(dataset.test):
        held = len(dataset.val) if dataset.val is not None else 0
        log.info(
            "%s: no test split: the test score will be on the %d validation image(s), which also choose the best "
            "checkpoint (an optimistic score: results.json's test_* numbers and the last line's test mAP are theirs)",
            dataset.source,
            held,
        )
    return dataset


def log_data_summary(summary: DataSummary) -> None:
    """What the data holds, one INFO line each (convscope.data.detection.summary): the dataset and its classes, one
    line per split (images, boxes, boxes per class, images without boxes), then the summary's warnings."""
    for line in summary.lines():
        log.info("%s", line)


def log_label_problems(source: str, problems: tuple[LabelProblem, ...]) -> None:
    """Every label problem (file and line, what was dropped and why) and note, one INFO line each, after a summary.

    The terminal shows them with --verbose only (loading already warned with the summary); train.log keeps them all.
    """
    dropped = [problem for problem in problems if not problem.is_note]
    if dropped:
        log.info(
            "%s: %d label problem(s) while loading (paths relative to the dataset folder): %s",
            source,
            len(dropped),
            lint_summary(dropped),
        )
    for problem in problems:
        log.info("%s: %s", "note" if problem.is_note else "label problem", problem)
