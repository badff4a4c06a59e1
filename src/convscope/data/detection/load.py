"""A detection dataset from a path: a YOLO folder or data.yaml, a Pascal VOC folder, a COCO JSON or a folder of COCO
splits, read into one DetectionDataset letterboxed to S×S; splits held out (seeded) where the format has none."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from convscope.data.detection.boxes import (
    SPLIT_NAMES,
    DetectionDataset,
    DetectionSplit,
    LabelProblem,
    coco_split_files,
    dataset_format,
    lint_summary,
)
from convscope.data.detection.coco import coco_images_folder, load_coco
from convscope.data.detection.voc import load_voc
from convscope.data.detection.yolo import load_yolo
from convscope.errors import DataError

log = logging.getLogger("convscope.detect")


def load_detection(data: str, data_dir: str | None, image_size: int, val_fraction: float, seed: int):
    """A YOLO folder (or its data.yaml), a Pascal VOC folder, or a COCO JSON whose images are in `data_dir` (default:
    an `images` folder beside the JSON). A COCO file is one split: val_fraction of it is held out, and serves as the
    test split too. A VOC folder without ImageSets/Main holds out val_fraction for val and as much for test (seeded).
    A DataError naming the three formats for anything else."""
    path = Path(data)
    if path.suffix.lower() == ".json":
        images = Path(data_dir) if data_dir else path.parent / "images"
        split, classes = load_coco(path, images, image_size)
        train, held = hold_out(split, val_fraction or 0.1, seed)
        log.info("%s: %d images for training, %d held out for validation and test", path, len(train), len(held))
        return DetectionDataset(path.stem, classes, train, held, held, str(path), split.problems)
    if path.suffix.lower() in (".yaml", ".yml"):
        return load_yolo(path, image_size)
    kind = dataset_format(path)  # a DataError naming the three formats when it is none of them
    if kind == "coco-splits":
        return _load_coco_folder(path, coco_split_files(path), data_dir, image_size)
    if kind == "voc":
        return load_voc(path, image_size, seed=seed, val_fraction=val_fraction or 0.1)
    return load_yolo(path, image_size)


def _load_coco_folder(root: Path, files: dict[str, Path], data_dir: str | None, image_size: int):
    """A folder of COCO split JSONs (train.json, val.json, test.json, as `detect convert --to coco` writes them, or
    COCO 2017's instances_train2017.json …), each split with its own images."""
    if "train" not in files:
        raise DataError(f"{root}: expected a train JSON among the COCO split files, found {sorted(files)}")
    splits, classes = {}, None
    for name in SPLIT_NAMES:
        if name in files:
            splits[name], names = load_coco(files[name], coco_images_folder(root, files[name], data_dir), image_size)
            if classes is not None and names != classes:
                raise DataError(f"{files[name]}: categories {list(names)} differ from the train JSON's {list(classes)}")
            classes = names
    problems = tuple(problem for split in splits.values() for problem in split.problems)
    return DetectionDataset(
        root.name, classes, splits["train"], splits.get("val"), splits.get("test"), str(root), problems
    )


def hold_out(split: DetectionSplit, fraction: float, seed: int) -> tuple[DetectionSplit, DetectionSplit]:
    order = np.random.default_rng(seed).permutation(len(split))
    n = max(1, round(len(split) * fraction))
    return _take(split, np.sort(order[n:])), _take(split, np.sort(order[:n]))


def _take(split: DetectionSplit, index: np.ndarray) -> DetectionSplit:
    crowds = tuple(split.crowds[i] for i in index) if split.crowds else ()
    targets, names = tuple(split.targets[i] for i in index), tuple(split.names[i] for i in index)
    return DetectionSplit(split.images[index], targets, names, crowds=crowds)


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
