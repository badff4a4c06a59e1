"""TrainConfig: every setting of a training run, validated when created; a run saves it resolved as config.yaml."""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from convscope.data.augment import Augment
from convscope.data.load import BUILT_IN as BUILT_IN_DATA
from convscope.errors import ConfigError
from convscope.memory import parse_bytes
from convscope.presets import preset_recipe
from convscope.yamlfile import read_yaml

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("onecycle", "cosine", "constant")
PRECISIONS = ("fp32", "bf16", "auto")
DEFAULT_LR = {"sgd": 0.05, "adam": 2e-3, "adamw": 2e-3}  # peak learning rates that suit the presets
FINETUNE_LR_SCALE = 0.1  # fine-tuning a pretrained base: small steps, so its features are adjusted, not overwritten
# Upper bounds of the counts: far past any real run, low enough that a typo (an extra digit or ten) is an error,
# not an hours-long loop or an allocation. Every float must also be finite (no nan, no inf).
MAX_EPOCHS = 100_000
MAX_BATCH = 2**20  # images per batch
MAX_IMAGES = 2**31  # per_class
MAX_BLOCKS = 1_000  # unfreeze_blocks (a base has tens)
MAX_THREADS = 1_024
MAX_IMAGE_SIZE = 8_192  # pixels of a detector's square input side
FROM_DATA = ("image_size", "epochs", "finetune_epochs")  # the settings a detector's recipe may choose from its data
DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d{1,3})?")


@dataclass(frozen=True)
class TrainConfig:
    # Each field's metadata describes its command-line flag: "help", and the argparse keywords it needs beyond what
    # its annotation implies ("choices", "metavar"). convscope.cli_args.add_config_flags builds the flags from it.
    model: str = field(
        default="fashion-fast",
        metadata={"help": "preset or spec file (default fashion-fast); cifar-fast brings its own settings (a recipe)"},
    )
    data: str = field(
        default="fashion-mnist",
        metadata={"help": "fashion-mnist (default), mnist, cifar10, cifar100 or an image folder"},
    )
    data_dir: str | None = field(
        default=None,
        metadata={
            "help": "folder of the fashion-mnist, mnist or cifar files (default: the system copy)",
            "metavar": "DIR",
        },
    )
    epochs: int = field(
        default=8, metadata={"help": "epochs to train (default 8, or the model's recipe)", "metavar": "N"}
    )
    batch_size: int = field(
        default=128, metadata={"help": "images per batch (default 128, or the model's recipe)", "metavar": "N"}
    )
    lr: float | None = field(
        default=None,  # None: DEFAULT_LR of the optimizer
        metadata={
            "help": "peak learning rate (default: the optimizer's, "
            + ", ".join(f"{rate:g} for {name}" for name, rate in DEFAULT_LR.items())
            + ")",
            "metavar": "RATE",
        },
    )
    optimizer: str = field(default="adamw", metadata={"help": "default adamw", "choices": OPTIMIZERS})
    schedule: str = field(
        default="onecycle", metadata={"help": "learning-rate schedule (default onecycle)", "choices": SCHEDULES}
    )
    momentum: float = field(default=0.9, metadata={"help": "sgd only: Nesterov momentum (default 0.9)", "metavar": "M"})
    weight_decay: float = field(default=5e-4, metadata={"help": "weight decay (default 5e-4)", "metavar": "DECAY"})
    label_smoothing: float = field(
        default=0.0,
        metadata={
            "help": "share of each target spread evenly over all classes, in [0, 1) (default 0)",
            "metavar": "AMOUNT",
        },
    )
    # 'flip,translate=2,cutout=8' | 'none' (classifiers), 'flip,scale,color' | 'none' (detectors); None: the task's
    # default
    augment: str | None = field(
        default=None,
        metadata={"help": "e.g. flip,translate=2,cutout=8 or none (default: suited to the data)", "metavar": "WORDS"},
    )
    tta_flip: bool | None = field(
        default=None,
        metadata={
            "help": "classify each test image and its mirror image, average the two (default: when training flips)"
        },
    )
    val_fraction: float = field(
        default=0.1,
        metadata={
            "help": "share of the training images held out for validation when the data has no val split (default 0.1)",
            "metavar": "FRACTION",
        },
    )
    # Detectors: the side S of the S×S input the images are letterboxed to. None: chosen from the training boxes'
    # sizes where from_data names it (lite0-det, scenes-det: convscope.detect.data_recipe), else the model's own.
    image_size: int | None = field(
        default=None,
        metadata={
            "help": "detectors: the side of the square input, in pixels (default: chosen from the training boxes' "
            "sizes for lite0-det and scenes-det, else the model's)",
            "metavar": "S",
        },
    )
    # Which settings a new run chooses from its training data (detectors: image_size, epochs, finetune_epochs),
    # comma-separated: the model's recipe names them, less the settings given. A run records what it chose with the
    # reasons after a colon ("image_size,epochs: input 256×256: …"); a resumed run reuses the recorded values.
    from_data: str = field(
        default="",
        metadata={
            "help": "settings chosen from the training data when a run starts, e.g. image_size,epochs (default: "
            "the model's recipe, less the settings given; none for none)",
            "metavar": "NAMES",
        },
    )
    patience: int | None = field(
        default=None,
        metadata={
            "help": "early stopping: stop after N validations without a better score (accuracy; detectors: "
            "mAP@0.5:0.95)",
            "metavar": "N",
        },
    )
    # Validate after every `val_every` epochs and after the last epoch of each phase (a detector's validation mAP
    # can cost as much as its training epoch); the best checkpoint is chosen among the validated epochs.
    val_every: int = field(
        default=1, metadata={"help": "validate every N epochs and at the end (default 1)", "metavar": "N"}
    )
    per_class: int | None = field(
        default=None, metadata={"help": "train on only N labelled images per class (seeded)", "metavar": "N"}
    )
    # Transfer learning (a spec whose first layer is a base): `epochs` train the new head on the frozen base, then
    # `finetune_epochs` also train the base's last `unfreeze_blocks` blocks at a learning rate FINETUNE_LR_SCALE× lower.
    finetune_epochs: int = field(
        default=0,
        metadata={
            "help": "with a pretrained base: epochs that also train its last blocks, at a tenth of the learning rate "
            "(default 0; lite0-det: its recipe's 36, or chosen from the data unless --epochs is given)",
            "metavar": "N",
        },
    )
    unfreeze_blocks: int = field(
        default=0,
        metadata={
            "help": "with a pretrained base: how many of its last blocks fine-tuning trains (default 0)",
            "metavar": "N",
        },
    )
    cache_features: bool = field(
        default=False,  # frozen phase: compute the base's features once, then train only the head on them
        metadata={"help": "with a pretrained base: train the head on the base's features, computed once"},
    )
    # An exponential moving average of the weights (training/ema.py, as YOLOv5's ModelEMA): validation, the test and
    # the saved weights use it; 0 turns it off. Its decay ramps up as decay·(1 − exp(−step/ema_tau)).
    ema_decay: float = field(
        default=0.0,
        metadata={
            "help": "moving average of the weights, used to validate, test and save: its decay per step in "
            "[0, 1), 0 for none (default 0, or the model's recipe)",
            "metavar": "DECAY",
        },
    )
    ema_tau: float = field(
        default=2000.0,
        metadata={
            "help": "steps over which the moving average's decay ramps up (default 2000, or the recipe)",
            "metavar": "STEPS",
        },
    )
    # Detectors: a GIoU loss between the predicted and the true box at each object's centre, added to CenterNet's
    # L1 on size and offset with this weight (detect/loss.py); 0 turns it off.
    giou_weight: float = field(
        default=0.0,
        metadata={
            "help": "detectors: weight of a GIoU box loss at the object centres, 0 for none (default 0, or "
            "the model's recipe)",
            "metavar": "WEIGHT",
        },
    )
    # bf16: the forward pass in bfloat16 (torch.autocast; weights, optimizer and evaluation stay float32). Much faster
    # on CPUs with bf16 instructions (AMX or AVX512-BF16: cifar-3conv trained 2.0x faster here), slower on CPUs
    # without. auto (the default): on the CPU, bf16 only where it measures faster at the start of the run
    # (training/autotune.py), float32 for runs too short to measure; on a GPU, device.autocast_dtype's rule.
    precision: str = field(
        default="auto",
        metadata={
            "help": "fp32, bf16, or auto (default): bf16 only where it measures faster on this machine",
            "choices": PRECISIONS,
        },
    )
    seed: int = field(default=0, metadata={"help": "for the split, initialisation, order and augmentation (default 0)"})
    threads: int | None = field(
        default=None,
        metadata={
            "help": "torch CPU threads (default: the fastest count, measured when a long enough run starts and again "
            "when its steps slow down; all cores for a short run)",
            "metavar": "N",
        },
    )
    # Where the model, the batches, augmentation and the loss run: auto (CUDA when a GPU is there, then Apple's MPS,
    # else the CPU), cpu, cuda, cuda:N or mps (convscope.device).
    device: str = field(
        default="auto",
        metadata={"help": "auto (default: a CUDA GPU, else Apple's MPS, else the CPU), cpu, cuda, cuda:N or mps"},
    )
    # Under torchrun on CUDA GPUs: BatchNorm normalises with the statistics of every process's images
    # (torch.nn.SyncBatchNorm, which runs only on GPUs). Without it each process uses its own part of the step's
    # images, and rank 0's running statistics are the ones saved.
    sync_bn: bool = field(
        default=False,
        metadata={"help": "with several processes on CUDA GPUs: BatchNorm over every process's images (SyncBatchNorm)"},
    )
    # An image folder larger than this is decoded batch by batch by DataLoader workers.
    cache_limit: str | None = field(
        default=None,
        metadata={
            "help": "decoded training images kept in memory at most: a size like 6GiB or 500MB, or 0 to always "
            "stream (default: half the memory available when training starts)",
            "metavar": "SIZE",
        },
    )
    out: str | None = field(
        default=None, metadata={"help": "run folder (default runs/MODEL-DATA, never overwriting)", "metavar": "DIR"}
    )

    def __post_init__(self) -> None:
        _count(self.epochs, "epochs", 1, MAX_EPOCHS)
        _count(self.batch_size, "batch_size", 1, MAX_BATCH)
        if self.lr is not None:
            _check(self.lr, float, "lr", "a finite positive number", lambda v: v > 0)
        _check(self.optimizer, str, "optimizer", "one of " + ", ".join(OPTIMIZERS), lambda v: v in OPTIMIZERS)
        _check(self.schedule, str, "schedule", "one of " + ", ".join(SCHEDULES), lambda v: v in SCHEDULES)
        _check(self.momentum, float, "momentum", "a number in [0, 1)", lambda v: 0 <= v < 1)
        _check(self.weight_decay, float, "weight_decay", "a number in [0, 1]", lambda v: 0 <= v <= 1)
        _check(self.label_smoothing, float, "label_smoothing", "a number in [0, 1)", lambda v: 0 <= v < 1)
        _check(self.val_fraction, float, "val_fraction", "a number in [0, 0.9]", lambda v: 0 <= v <= 0.9)
        if self.image_size is not None:
            _count(self.image_size, "image_size", 16, MAX_IMAGE_SIZE)
        _check(self.from_data, str, "from_data", "names of " + ", ".join(FROM_DATA), lambda v: True)
        if unknown := set(self.chosen_keys()) - set(FROM_DATA):
            raise ConfigError(f"from_data: expected names of {', '.join(FROM_DATA)}. Received: {sorted(unknown)[0]!r}")
        if self.patience is not None:
            _count(self.patience, "patience", 1, MAX_EPOCHS)
        _count(self.val_every, "val_every", 1, MAX_EPOCHS)
        if self.per_class is not None:
            _count(self.per_class, "per_class", 1, MAX_IMAGES)
        _count(self.finetune_epochs, "finetune_epochs", 0, MAX_EPOCHS)
        _count(self.unfreeze_blocks, "unfreeze_blocks", 0, MAX_BLOCKS)
        if self.finetune_epochs and not self.unfreeze_blocks:
            raise ConfigError("finetune_epochs needs unfreeze_blocks >= 1 (how many of the base's top blocks to train)")
        _check(self.cache_features, bool, "cache_features", "true or false", lambda v: True)
        _check(self.ema_decay, float, "ema_decay", "a number in [0, 1)", lambda v: 0 <= v < 1)
        _check(self.ema_tau, float, "ema_tau", "a positive number of steps", lambda v: v > 0)
        _check(self.giou_weight, float, "giou_weight", "a number >= 0", lambda v: v >= 0)
        if self.tta_flip is not None:
            _check(self.tta_flip, bool, "tta_flip", "true or false", lambda v: True)
        _check(self.precision, str, "precision", "one of " + ", ".join(PRECISIONS), lambda v: v in PRECISIONS)
        _check(self.seed, int, "seed", "an integer from 0 to 2**32 - 1", lambda v: 0 <= v < 2**32)  # NumPy's range
        if self.threads is not None:
            _count(self.threads, "threads", 1, MAX_THREADS)
        _check(self.device, str, "device", "auto, cpu, cuda, cuda:N or mps", lambda v: DEVICE.fullmatch(v) is not None)
        _check(self.sync_bn, bool, "sync_bn", "true or false", lambda v: True)
        if self.cache_limit is not None:
            _check(self.cache_limit, str, "cache_limit", "a size such as 6GiB, 500MB or 0", lambda v: True)
            parse_bytes(self.cache_limit, "cache_limit")
        if self.augment is not None:  # the words of both tasks; each task refuses the other's (scale: detectors)
            words = [w for w in self.augment.split(",") if w.strip() not in ("scale", "color")]
            Augment.parse(",".join(words) or "none")
        for key in ("model", "data"):
            _check(getattr(self, key), str, key, "text", lambda v: bool(v))

    def with_absolute_paths(self) -> TrainConfig:
        """This config with `data` (a folder or file, not a built-in dataset's name) and `data_dir` made absolute, so
        that the run's record still finds them from another working folder (evaluate, report, resume)."""
        changes = {}
        if self.data not in BUILT_IN_DATA and Path(self.data).exists():
            changes["data"] = str(Path(self.data).resolve())
        if self.data_dir is not None and Path(self.data_dir).exists():
            changes["data_dir"] = str(Path(self.data_dir).resolve())
        return replace(self, **changes)

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else DEFAULT_LR[self.optimizer]

    def augmentation(self) -> Augment:
        if self.augment is not None:
            return Augment.parse(self.augment)
        # Digits change meaning when mirrored. Fashion-MNIST's items are centred, and in a short run shifts slow the
        # fit (fashion-fast measured: flips alone 92.6% test accuracy after 8 epochs; flips + 2-pixel shifts 90.9%
        # after 6 epochs).
        return {"mnist": Augment(), "fashion-mnist": Augment(flip=True)}.get(self.data, Augment(flip=True, translate=2))

    def flips_at_test(self) -> bool:
        """Test-time augmentation: a network trained on mirrored images classifies both an image and its mirror
        image, and their logits are averaged (fashion-fast measured: 92.64% -> 92.83% test accuracy)."""
        return self.augmentation().flip if self.tta_flip is None else self.tta_flip

    def chosen_keys(self) -> tuple[str, ...]:
        """The settings from_data names ('image_size,epochs: why…' → ('image_size', 'epochs'); 'none' → ())."""
        names = self.from_data.split(":", 1)[0]
        return tuple(n.strip() for n in names.split(",") if n.strip() and n.strip() != "none")

    def recipe_line(self) -> str:
        """'cifar-fast trains with its recipe: epochs 2 (given; recipe 14), batch_size 256, ...': each recipe setting
        with the value this config uses, saying which were given and which were chosen from the data (and why: the
        reasons from_data records); '' when the model has no recipe."""
        recipe = preset_recipe(self.model)
        if not recipe:
            return ""
        recipe.pop("from_data", None)
        chosen = set(self.chosen_keys()) if ":" in self.from_data else set()
        parts = [f"image_size {self.image_size} (chosen from the data)"] if "image_size" in chosen else []
        for key, value in recipe.items():
            used = self.learning_rate if key == "lr" else getattr(self, key)
            if key in chosen:
                parts.append(f"{key} {used} (chosen from the data; recipe {value})")
            elif used == value:
                parts.append(f"{key} {value}")
            elif key == "lr" and self.lr is None:
                parts.append(
                    f"lr {used} ({self.optimizer}'s default; the recipe's {value} is for "
                    f"{recipe.get('optimizer', TrainConfig.optimizer)})"
                )
            else:
                parts.append(f"{key} {used} (given; recipe {value})")
        line = f"{self.model} trains with its recipe: " + ", ".join(parts)
        return line + (f". Chosen from the training data: {self.from_data.split(':', 1)[1].strip()}" if chosen else "")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "config") -> TrainConfig:
        """The settings in `data`; those not given come from the model's preset recipe (presets.preset_recipe), then
        from the defaults above. Raises ConfigError naming `where` for an unknown or invalid setting."""
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: expected a mapping of settings. Received: {type(data).__name__}")
        model = data.get("model", cls.model)
        recipe = preset_recipe(model) if isinstance(model, str) else {}
        recipe_optimizer = recipe.get("optimizer", cls.optimizer)
        if data.get("optimizer", recipe_optimizer) != recipe_optimizer:
            recipe.pop("lr", None)  # the recipe's rate suits its own optimizer only (SGD's 0.2 would wreck AdamW)
        if "from_data" in recipe and "from_data" not in data:  # the recipe's choices, less the settings given
            given = set(data)
            if given & {"epochs", "finetune_epochs"}:  # one phase's length given: the other is the recipe's
                given |= {"epochs", "finetune_epochs"}  # (`--epochs 1` is a short run, not 1 + 40 epochs)
            recipe["from_data"] = ",".join(k for k in recipe["from_data"].split(",") if k not in given)
        data = recipe | data
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            close = difflib.get_close_matches(str(unknown[0]), known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"{where}: unknown setting {unknown[0]!r}{hint}. Settings: {', '.join(sorted(known))}")
        try:
            return cls(**data)
        except ConfigError as err:
            raise ConfigError(f"{where}: {err}") from None

    @classmethod
    def load(cls, path: str | Path, **overrides: Any) -> TrainConfig:
        """A YAML file of settings; `overrides` (the CLI flags that were given) win."""
        path = Path(path)
        data = read_yaml(path, ConfigError, "config file") or {}  # bounded: see convscope.yamlfile
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping of settings. Received: {type(data).__name__}")
        return cls.from_dict({**data, **overrides}, where=str(path))


def _check(value: Any, kind: type, key: str, expected: str, ok) -> None:
    # YAML gives ints for '1' where a float is meant; accept ints for floats, never bools for numbers.
    good_type = isinstance(value, kind) or (kind is float and isinstance(value, int))
    finite = kind is not float or not good_type or _finite(value)  # nan and inf pass some comparisons
    if (isinstance(value, bool) and kind is not bool) or not good_type or not finite or not ok(value):
        raise ConfigError(f"{key} must be {expected}. Received: {_shown(value)}")


def _count(value: Any, key: str, low: int, high: int) -> None:
    _check(value, int, key, "a positive integer" if low == 1 else f"an integer >= {low}", lambda v: v >= low)
    _check(value, int, key, f"at most {high:,}", lambda v: v <= high)


def _finite(value: float | int) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an int past float's range, e.g. lr: 1e400 written out as digits
        return False


def _shown(value: Any) -> str:
    text = repr(value) if not isinstance(value, int) or value.bit_length() < 1000 else "an integer of over 300 digits"
    return text if len(text) <= 80 else text[:79] + "…"
