"""Settings chosen from a detection dataset when a run starts: the input size from the training boxes' sizes, and the
epochs from the number of training images (TrainConfig.from_data names which; settings given by the user never are).

The input size must be known before the images are letterboxed to it, so it is chosen from a raw pass
(`raw_box_stats`: the format's raw reader, boxes in each image's own pixels, nothing resized or kept — on BCCD's 364
photos 0.8 s against 2.1 s for the letterboxed load). Box sizes are taken relative to their image's longer side,
which letterboxing keeps (x' = x·S/longer side), so the same numbers come back from the letterboxed data
(`split_box_stats`) to word the choice and to pick the epochs.

Input size (`choose_size`): the smallest of SIZES at which the smallest common box — per class the 10th percentile of
the boxes' shorter side, then the smallest over the classes — still spans `min_box_px` input pixels: 3 cells of the
stride-4 CenterNet output (12 px), and for a pretrained base at least one cell of its features (16 px for lite0-det's
stride-16 cut). Not below 256 for a pretrained base (ImageNet weights learnt at 224), nor past the photos' own size
(the smallest of SIZES covering their median longer side), nor past 640. BCCD (platelets: 4.7% of the longer side)
gets 416, where its recipe was measured; its white cells alone (18%) get 256.

Epochs (`choose_epochs`, a pretrained base trained in two phases): the fine-tuning epochs that make
FINETUNE_IMAGE_EPOCHS image passes at 416×416, scaled by (416/S)² (a step's cost: measured 6.8 s at 256, 11.1 s at
320, 16.2 s at 416 for 16 images, loaded 2-core Xeon, bf16), between 10 and 40; a third of them with the base
frozen (on cached features: cheap), between 4 and 15. BCCD's 205 training images at 416 get its measured 12 + 36.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from convscope.config import TrainConfig
from convscope.data.detection.boxes import DetectionDataset, DetectionSplit, RawDataset
from convscope.data.detection.formats import format_of
from convscope.errors import DataError
from convscope.pretrained.bases import spec_base
from convscope.spec import NetSpec

log = logging.getLogger("convscope.detect")

SIZES = (128, 160, 192, 256, 320, 416, 512, 640)  # input sides chosen from (multiples of 32: every stride divides)
BASE_FLOOR = 256  # a pretrained base: not below (its ImageNet weights were learnt at 224×224)
COMMON = 10  # the smallest common box: this percentile of a class's shorter box sides
MIN_CELLS = 3  # the smallest common box spans at least this many cells of the detect head's output
# lite0-det's measured recipe on BCCD: 36 fine-tuning epochs of 205 images at 416×416 (12 + 36 epochs, 784 s of
# training on a 2-core CPU with bf16, README "Detection on real photos").
FINETUNE_IMAGE_EPOCHS = 7_400
REFERENCE_SIZE = 416
FINETUNE_RANGE = (10, 40)  # past 40 the large-object set over-fitted (val mAP fell from 0.33 at 25 epochs)
FROZEN_RANGE = (4, 15)


@dataclass(frozen=True)
class BoxStats:
    """What the choice reads from the training split: relative sizes are box side / its image's longer side."""

    images: int  # training images
    boxes: int
    smallest: float  # the smallest common box's shorter side, relative (0 when there are no boxes)
    smallest_class: str  # the class it belongs to
    longer_side: int  # the training images' median longer side, in their own pixels (letterboxed: S)


def _stats(sides: list[float], classes: list[int], names: tuple[str, ...], images: int, longer: list[int]) -> BoxStats:
    """BoxStats of relative shorter sides `sides` with their class ids, `images` images of longer sides `longer`."""
    smallest, which = 0.0, ""
    if sides:
        side, cls = np.asarray(sides, np.float64), np.asarray(classes)
        common = {int(c): float(np.percentile(side[cls == c], COMMON)) for c in np.unique(cls)}
        which_id = min(common, key=common.__getitem__)
        smallest, which = common[which_id], names[which_id] if which_id < len(names) else str(which_id)
    median = int(np.median(longer)) if longer else 0
    return BoxStats(images, len(sides), smallest, which, median)


def raw_box_stats(data: str, data_dir: str | None, seed: int, val_fraction: float) -> BoxStats:
    """BoxStats of the training split of the dataset at `data` (any format of the format table), read raw: images
    decoded for their size, nothing resized or kept. A DataError as loading raises; a dataset without a train split
    is a DataError."""
    path = Path(data)
    raw: RawDataset = format_of(path, by_name=True).read_raw(
        path, data_dir=data_dir, seed=seed, val_fraction=val_fraction or 0.1
    )
    train = raw.splits.get("train", ())
    if not train:
        raise DataError(f"{raw.source}: expected training images to choose the input size from, found none")
    sides, classes, longer = [], [], []
    for image in train:
        side = max(image.width, image.height)
        longer.append(side)
        wh = image.boxes.xyxy[:, 2:] - image.boxes.xyxy[:, :2]
        sides += (wh.min(axis=1) / side).tolist()
        classes += image.boxes.classes.tolist()
    return _stats(sides, classes, raw.classes, len(train), longer)


def split_box_stats(split: DetectionSplit, names: tuple[str, ...]) -> BoxStats:
    """BoxStats of a letterboxed split (uint8 N×S×S×3): every box's shorter side / S."""
    size = int(split.images.shape[1])
    sides, classes = [], []
    for target in split.targets:
        wh = target.xyxy[:, 2:] - target.xyxy[:, :2]
        sides += (wh.min(axis=1) / size).tolist()
        classes += target.classes.tolist()
    return _stats(sides, classes, names, len(split), [size] * len(split))


def min_box_px(spec: NetSpec) -> int:
    """Input pixels the smallest common box should span: MIN_CELLS cells of the detect head's output, and with a
    pretrained base at least one cell of its features (its stride; 32 when the whole base is used)."""
    need = MIN_CELLS * spec.layers[-1].stride
    base = spec_base(spec)
    return max(need, base.stride or 32) if base is not None else need


def choose_size(stats: BoxStats, spec: NetSpec) -> int:
    """The input side S for `spec` on data of these statistics, as the module docstring says (the spec's own input
    when there are no boxes to measure)."""
    if stats.smallest <= 0:
        return spec.input[0]
    floor = BASE_FLOOR if spec_base(spec) is not None else SIZES[0]
    native = next((s for s in SIZES if s >= stats.longer_side), SIZES[-1])
    ceiling = max(floor, native)
    wanted = min_box_px(spec) / stats.smallest  # the side at which the smallest common box spans min_box_px
    return next((s for s in SIZES if max(wanted, floor) <= s <= ceiling), ceiling)


def size_reason(stats: BoxStats, size: int, spec: NetSpec) -> str:
    """Why S = `size`, in words: 'input 256×256: the smallest common box (WBC, 10th percentile of the shorter side)
    is 18.5% of the image's longer side, 47 px at 256 (12 output cells; 16 px wanted)'."""
    if stats.smallest <= 0:
        return f"input {size}×{size}: no boxes to measure, the model's own size"
    need, px = min_box_px(spec), stats.smallest * size
    short = f"; under the {need} px wanted: {size} is the largest input chosen for these photos" if px < need else ""
    return (
        f"input {size}×{size}: the smallest common box ({stats.smallest_class}, {COMMON}th percentile of the shorter "
        f"side) is {stats.smallest:.1%} of the image's longer side, {px:.0f} px at {size} "
        f"({px / spec.layers[-1].stride:.0f} output cells; {need} px wanted){short}"
    )


def choose_epochs(images: int, size: int) -> tuple[int, int, str]:
    """(frozen epochs, fine-tuning epochs, why) for `images` training images at S = `size`."""
    cost = (size / REFERENCE_SIZE) ** 2  # a step's cost relative to 416×416
    finetune = round(FINETUNE_IMAGE_EPOCHS / cost / max(images, 1))
    finetune = min(max(finetune, FINETUNE_RANGE[0]), FINETUNE_RANGE[1])
    frozen = min(max(round(finetune / 3), FROZEN_RANGE[0]), FROZEN_RANGE[1])
    why = (
        f"{frozen} + {finetune} epochs for {images} training images at {size}×{size} "
        f"({FINETUNE_IMAGE_EPOCHS:,} fine-tuning image passes at {REFERENCE_SIZE}, ×(416/{size})², "
        f"kept in {FINETUNE_RANGE[0]}–{FINETUNE_RANGE[1]})"
    )
    return frozen, finetune, why


def chosen_size(config: TrainConfig, spec: NetSpec) -> int:
    """The S×S the data is loaded at: the config's image_size, else chosen from a raw pass over the data when the
    config says so (from_data names image_size), else the spec's own. Logs the choice."""
    if config.image_size is not None:
        return config.image_size
    if "image_size" not in config.chosen_keys():
        return spec.input[0]
    stats = raw_box_stats(config.data, config.data_dir, config.seed, config.val_fraction)
    size = choose_size(stats, spec)
    log.info(
        "chosen from the training data (%d images, %d boxes): %s",
        stats.images,
        stats.boxes,
        size_reason(stats, size, spec),
    )
    return size


def fitted_config(config: TrainConfig, spec: NetSpec, data: DetectionDataset) -> TrainConfig:
    """`config` with the settings that from_data names chosen from the loaded data (image_size: the size it was
    loaded at; epochs and finetune_epochs: choose_epochs, for a spec with a pretrained base), and the reasons
    recorded in from_data after a colon. `config` itself when it names none."""
    keys = config.chosen_keys()
    if not keys:
        return config
    size = int(data.train.images.shape[1])
    changes, reasons = {}, []
    if "image_size" in keys:
        changes["image_size"] = size
        reasons.append(size_reason(split_box_stats(data.train, data.classes), size, spec))
    if {"epochs", "finetune_epochs"} & set(keys) and spec_base(spec) is not None:
        frozen, finetune, why = choose_epochs(len(data.train), size)
        for key, value in (("epochs", frozen), ("finetune_epochs", finetune)):
            if key in keys:
                changes[key] = value
        reasons.append(why)
    return replace(config, **changes, from_data=f"{','.join(keys)}: {'; '.join(reasons)}")
