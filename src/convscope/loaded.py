"""One loaded run: a run folder's network with its weights, in eval mode on a device, and what an image needs before
the network sees it (fitted to the spec's input H×W×C, gray or RGB; standardised with the run's per-channel mean
and std), with the run's classes. Made once, used by every inference entry point: predict, Grad-CAM, feature maps,
top activations, patterns, filters, detection, export, the studio and the notebook's Run.

>>> loaded = load("runs/demo", device="cpu")                 # the weights are read here, once   # doctest: +SKIP
>>> picture = loaded.fit("chelsea")                          # decoded once                      # doctest: +SKIP
>>> picture.array.shape, picture.conversion                                                      # doctest: +SKIP
((28, 28, 1), 'RGB 451×300 → gray 28×28')
>>> loaded.model(loaded.tensor(picture)).shape               # 1×C×H×W in, 1×classes out          # doctest: +SKIP
torch.Size([1, 10])

It holds the plain network. What a task runs at test time around it (a classifier's mirror averaging) is the task's
to say (`Task.predictor(loaded.model, loaded.run.config)`), and which task a run is, is asked above this floor
(convscope.tasks). `cached(folder)` keeps one LoadedRun per run folder for a server (the studio), loaded again when
the folder's weights change.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from convscope.builder import build
from convscope.config import TrainConfig
from convscope.data.arrays import images_uint8
from convscope.data.images import resolve_image
from convscope.data.resize import fit_images
from convscope.device import resolve_device
from convscope.errors import CheckpointError, DataError
from convscope.fused import inference_copy
from convscope.layers import MirrorAverage
from convscope.preprocess import fit_image, normalise, prepare, run_stats, to_tensor
from convscope.pretrained.bases import spec_base
from convscope.run import CHECKPOINT, CONFIG, SPEC, WEIGHTS, Run, load_run, weights_file
from convscope.weights import load_weights

EXIF_ORIENTATION = 0x0112  # the EXIF tag that says how the stored pixels are turned; 1 = upright
CACHED_RUNS = 8  # run folders `cached` keeps loaded (a transfer run's network is ~15 MB, the demo's 0.4 MB)


@dataclass(frozen=True)
class FittedImage:
    """One image as the network takes it, before standardisation."""

    array: np.ndarray  # uint8 H×W×C: the spec's input
    conversion: str  # how the image became that, e.g. 'RGB 451×300 → gray 28×28'
    name: str  # what to call it: the file or sample photo as given, 'PIL image' or 'array'


@dataclass(frozen=True, eq=False)
class LoadedRun:
    """A run's network loaded once, with its preprocessing and classes (see the module's docstring)."""

    run: Run
    model: torch.nn.Module  # the network with the run's `which` weights, in eval mode, on `device`
    device: torch.device
    mean: torch.Tensor  # float32 1×C×1×1 on `device`: the run's per-channel mean of its training images in [0, 1]
    std: torch.Tensor  # float32 1×C×1×1 on `device`
    which: str = "best"  # 'best' or 'last' weights

    @property
    def input(self) -> tuple[int, int, int]:
        """The image the network takes, H×W×C."""
        return self.run.spec.input

    @property
    def classes(self) -> tuple[str, ...]:
        return self.run.data.classes

    @cached_property
    def fused(self) -> torch.nn.Module:
        """`model` with each batchnorm folded into its conv (convscope.fused.inference_copy), made on first use: what
        evaluation and prediction run. Inspection (feature maps, Grad-CAM, filters) uses `model`, whose layers it
        keeps."""
        return inference_copy(self.model)

    def __repr__(self) -> str:
        where = f"{self.which} weights on {self.device}"
        return f"LoadedRun({str(self.run.path)!r}: {self.run.spec.name} {_text(self.input)}, {where})"

    def fit(self, image) -> FittedImage:
        """`image` as the network takes it, converted as `convscope predict` converts files (size, gray/RGB).

        `image`: a file path or a sample photo's name ('chelsea'), decoded by data.images.open_image (upright, a
        format allowlist); a PIL image (turned upright by its EXIF orientation); a NumPy array (H×W×C or H×W, uint8
        0–255 or float 0–1); or a FittedImage of this input, returned as it is (nothing is decoded twice). Raises
        DataError for an image that cannot be read or used.
        """
        if isinstance(image, FittedImage):
            if image.array.shape != self.input:
                raise DataError(
                    f"{image.name} was fitted to {_text(image.array.shape)}; {self.run.spec.name} takes "
                    f"{_text(self.input)}"
                )
            return image
        if isinstance(image, str | Path):
            return FittedImage(*prepare(resolve_image(str(image)), self.input), str(image))
        if isinstance(image, Image.Image):
            return FittedImage(*fit_image(upright(image), self.input), "PIL image")
        array = images_uint8(np.asarray(image)[None], "image")[0]
        picture = Image.fromarray(array[:, :, 0] if array.shape[-1] == 1 else array)
        array, conversion = fit_image(picture, self.input)
        return FittedImage(array, conversion.replace(picture.mode, "array", 1), "array")

    def image(self, image) -> np.ndarray:
        """uint8 H×W×C: `image` as the network takes it (see `fit`)."""
        return self.fit(image).array

    def tensor(self, images) -> torch.Tensor:
        """float32 N×C×H×W on the device, channels_last, standardised with the run's mean and std, of uint8 images:
        one H×W×C (N = 1), N×H×W×C, or a FittedImage."""
        array = images.array if isinstance(images, FittedImage) else np.asarray(images)
        if array.ndim == 3:
            array = array[None]
        return normalise(to_tensor(array).to(self.device, non_blocking=True), self.mean, self.std)


def load(run: LoadedRun | Run | str | Path, device="auto", which: str = "best") -> LoadedRun:
    """The run (a folder, or its convscope.run.Run) with its `which` ('best' or 'last') weights on `device` (a
    torch.device, or a name for convscope.device.resolve_device: auto, cpu, cuda, cuda:N, mps). A LoadedRun is
    returned as it is. Raises CheckpointError for a folder that is not a run or whose weights are missing or damaged,
    ConfigError for a device this machine lacks."""
    if isinstance(run, LoadedRun):
        return run
    run = load_run(run)
    device = device if isinstance(device, torch.device) else resolve_device(device)
    model = load_model(run, which, device)
    mean, std = (t.to(device) for t in run_stats(run))
    return LoadedRun(run, model, device, mean, std, which)


def upright(image: Image.Image) -> Image.Image:
    """A PIL image turned as its EXIF orientation says (data.images.open_image does this when it decodes a file);
    one without the tag, or already turned, is returned as it is, without a copy."""
    if image.getexif().get(EXIF_ORIENTATION, 1) == 1:
        return image
    return ImageOps.exif_transpose(image)


# -- one LoadedRun per run folder, for a server ---------------------------------------------------------------------
_kept: OrderedDict[tuple[str, str, str], tuple[tuple, LoadedRun]] = OrderedDict()
_kept_lock = threading.Lock()


def cached(folder: str | Path, device="cpu", which: str = "best") -> LoadedRun:
    """`load(folder, device, which)`, kept: the same LoadedRun while the folder's weights, config.yaml and spec.yaml
    are unchanged (modification time and size), loaded again when a training replaces them. At most CACHED_RUNS
    folders are kept (the least recently used goes first). Thread-safe; raises what `load` raises."""
    path = Path(folder).resolve()
    key = (str(path), str(device), which)
    stamp = _stamp(path, which)
    with _kept_lock:  # a folder asked for by several requests at once is loaded once
        hit = _kept.get(key)
        if hit is not None and hit[0] == stamp:
            _kept.move_to_end(key)
            return hit[1]
        loaded = load(path, device, which)
        _kept[key] = (stamp, loaded)
        _kept.move_to_end(key)
        while len(_kept) > CACHED_RUNS:
            _kept.popitem(last=False)
        return loaded


def _stamp(path: Path, which: str) -> tuple:
    """(modification time in ns, size in bytes) of the files a LoadedRun is made from; None for a missing one."""
    stamps = []
    for file in (path / WEIGHTS / weights_file(which), path / CONFIG, path / SPEC):
        try:
            stat = file.stat()
            stamps.append((stat.st_mtime_ns, stat.st_size))
        except OSError:
            stamps.append(None)
    return tuple(stamps)


def _text(shape: tuple[int, ...]) -> str:
    return "×".join(map(str, shape))


def load_model(run: Run, which: str = "best", device="cpu"):
    """The run's network with its `best` or `last` weights, in eval mode, on `device` (a torch.device, or a name for
    convscope.device.resolve_device: auto, cpu, cuda, cuda:N, mps; ConfigError when this machine lacks it)."""
    path = run.weights / weights_file(which)
    if not path.exists() and not (run.path / CHECKPOINT).exists():  # started, stopped before its first epoch's end
        raise CheckpointError(
            f"{run.path}: no epoch has finished yet, so it has no weights to use; train it on with "
            f"`convscope train --resume {run.path}`"
        )
    model = build(run.spec, pretrained=False)  # the run's own weights replace any pretrained ones
    load_weights(path, model)
    device = device if isinstance(device, torch.device) else resolve_device(device)
    return model.to(device).train(False)


def load_predictor(run: Run, which: str = "best", device="cpu"):
    """What classifies images for a classifier's run: its network, averaged with mirror images when its config says
    so (`with_test_flips`). A run of another task gets its test-time predictor from its task
    (`Task.predictor(model, config)`); a detector's maps are never averaged with mirrored ones. Each batchnorm is
    folded into its conv (convscope.fused.inference_copy): the same outputs, less work per image."""
    return with_test_flips(inference_copy(load_model(run, which, device)), run.config)


def with_test_flips(model, config: TrainConfig):
    """A classifier's network as it is tested: its logits averaged with those of the mirror image when the run
    trained on mirrored images (`TrainConfig.flips_at_test`), else the network itself."""
    return MirrorAverage(model) if config.flips_at_test() else model


def model_images(run: Run, images, dataset: str):
    """uint8 N×H×W×C images of `dataset` as the run's network takes them.

    A transfer run (its spec starts with a base) resizes and converts them to the base's input, as in training; any
    other network was fitted to its data, so images of another shape are an error.
    """
    if tuple(images.shape[1:]) == run.spec.input:
        return images
    if spec_base(run.spec) is None:
        shape = "×".join(map(str, images.shape[1:]))
        raise DataError(
            f"{dataset}: images are {shape}, the model {run.spec.name} takes {'×'.join(map(str, run.spec.input))}"
        )
    return fit_images(images, run.spec.input)
