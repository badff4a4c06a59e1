"""A detection dataset from a path, for training and evaluation: a YOLO folder or data.yaml, a Pascal VOC folder, a
COCO JSON or a folder of COCO splits (the format table, convscope.data.detection.formats, says which), read into one
DetectionDataset letterboxed to S×S; splits held out (seeded) where the format has none."""

from __future__ import annotations

import logging
from pathlib import Path

from convscope.data.detection.boxes import DetectionDataset, LabelProblem, lint_summary
from convscope.data.detection.formats import format_of
from convscope.data.detection.summary import DataSummary

log = logging.getLogger("convscope.detect")


def load_detection(
    data: str, data_dir: str | None, image_size: int, val_fraction: float, seed: int
) -> DetectionDataset:
    """A YOLO folder (or its data.yaml), a Pascal VOC folder, or a COCO JSON whose images are in `data_dir` (default:
    an `images` folder beside the JSON). A COCO file is one split: val_fraction of it is held out, and serves as the
    test split too. A VOC folder without ImageSets/Main holds out val_fraction for val and as much for test (seeded).
    A val_fraction of 0 (or None) holds out 0.1. A DataError naming the three formats for anything else."""
    path = Path(data)
    fmt = format_of(path, by_name=True)  # a .json or .yaml path is read as one, so its reader says what is missing
    return fmt.load(path, image_size, data_dir=data_dir, seed=seed, val_fraction=val_fraction or 0.1)


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
