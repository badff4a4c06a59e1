"""What training and testing a detector needs: reading any of the three dataset formats, CenterNet's loss, the
detector's maps (with mirror averaging), detections of a split and their COCO mAP. The detection task
(tasks/detect.py) puts them into the trainer; `detect predict` and `detect evaluate` use them too.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from convscope.detect.coco import coco_images_folder, load_coco
from convscope.detect.data import (
    SPLIT_NAMES,
    DetectionDataset,
    DetectionSplit,
    LabelProblem,
    coco_split_files,
    dataset_format,
    lint_summary,
)
from convscope.detect.decode import decode, encode_targets, focal_loss, regression_loss
from convscope.detect.head import split_outputs
from convscope.detect.metrics import DetectionMetrics, coco_evaluate
from convscope.detect.voc import load_voc
from convscope.detect.yolo import load_yolo
from convscope.errors import ConfigError, DataError
from convscope.spec import Detect
from convscope.training.config import TrainConfig
from convscope.training.tensors import batch_for, normalise, to_tensor

log = logging.getLogger("convscope.detect")

# CenterNet's loss: heatmap + 0.1 · size L1 + 1 · offset L1, its L1s averaged per coordinate (÷ 2 per object);
# regression_loss averages per object, so the same balance is 0.05 and 0.5 here. Sizes are pixels, offsets cells.
SIZE_WEIGHT, OFFSET_WEIGHT = 0.05, 0.5
AUGMENTS = ("flip", "scale")  # the box-aware augmentations; `augment: flip,scale` (the default) or `none`


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


def detection_loss(out: torch.Tensor, boxes: list, classes: list, head: Detect) -> torch.Tensor:
    """Focal loss on the centre heatmaps + L1 on box sizes and centre offsets, per object (CenterNet's balance)."""
    heat, size, offset = split_outputs(out, head.classes)
    t = encode_targets(boxes, classes, head.classes, tuple(out.shape[-2:]), head.stride)
    return (
        focal_loss(heat, t["heatmap"])
        + SIZE_WEIGHT * regression_loss(size, t["size"], t["mask"])
        + OFFSET_WEIGHT * regression_loss(offset, t["offset"], t["mask"])
    )


def detector_maps(model, x: torch.Tensor, flip: bool = False) -> torch.Tensor:
    """The detector's N×(K+4)×h×w maps of normalised images x (N×3×H×W). With `flip`, those of the images and of
    their mirror images averaged, as CenterNet tests ("Objects as Points", Zhou et al. 2019, flip augmentation):
    heatmap probabilities and box sizes are averaged (the mirror's maps flipped back), centre offsets are the
    image's own (a mirrored offset points the other way within its cell)."""
    out = model(x)
    if not flip:
        return out
    k = model.spec.layers[-1].classes
    mirror = model(x.flip(-1)).flip(-1)
    heat = (out[:, :k].sigmoid() + mirror[:, :k].sigmoid()) / 2
    size = (out[:, k : k + 2] + mirror[:, k : k + 2]) / 2
    return torch.cat([torch.logit(heat, eps=1e-6), size, out[:, k + 2 :]], dim=1)


def flips_at_test(config: TrainConfig) -> bool:
    """Test-time mirror averaging: tta_flip when set, else when the detector was trained on mirrored images."""
    return config.tta_flip if config.tta_flip is not None else "flip" in augments(config)


@torch.inference_mode()
def detect_split(
    model, split: DetectionSplit, mean: torch.Tensor, std: torch.Tensor, flip: bool = False, device=None
) -> tuple[list, float]:
    """Detections (numpy boxes, scores, classes) for every image of `split`, and the mean loss against its boxes.
    flip: average with the mirror images' maps (detector_maps). The batches run on `device` (default: where mean
    and std are), the detections come back to the CPU."""
    model.train(False)
    device = mean.device if device is None else device
    mean, std = mean.to(device), std.to(device)
    head: Detect = model.spec.layers[-1]
    images = to_tensor(split.images)
    found, loss_sum = [], 0.0
    step = batch_for(images, 256)
    for start in range(0, len(images), step):
        x = normalise(images[start : start + step].to(device, non_blocking=True), mean, std)
        out = detector_maps(model, x, flip).float()
        targets = split.targets[start : start + step]
        boxes = [torch.from_numpy(t.xyxy).to(device) for t in targets]
        classes = [torch.from_numpy(t.classes).to(device) for t in targets]
        loss_sum += float(detection_loss(out, boxes, classes, head)) * len(targets)
        for b, s, c in decode(*split_outputs(out, head.classes), stride=head.stride):
            found.append((b.float().cpu().numpy(), s.float().cpu().numpy(), c.cpu().numpy()))
    return found, loss_sum / max(len(images), 1)


def split_metrics(split: DetectionSplit, found: list, classes: tuple[str, ...]) -> DetectionMetrics:
    """COCO mAP of detections `found` against the split's boxes (in the letterboxed images' pixels); its crowd
    regions (COCO iscrowd) are ignore regions, as in pycocotools."""
    truth = [(t.xyxy, t.classes) for t in split.targets]
    crowds = [(c.xyxy, c.classes) for c in split.crowds] if split.crowds else None
    return coco_evaluate(truth, found, list(classes), tuple(split.images.shape[1:3]), crowds)


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


def augments(config: TrainConfig) -> set[str]:
    text = config.augment if config.augment is not None else "flip,scale"
    chosen = {word.strip() for word in text.split(",") if word.strip()} - {"none"}
    if unknown := chosen - set(AUGMENTS):
        raise ConfigError(f"augment for detection: {sorted(unknown)[0]!r} is not one of {', '.join(AUGMENTS)}, none")
    return chosen
