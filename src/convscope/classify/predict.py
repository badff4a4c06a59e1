"""predict: class probabilities for image files of any size and mode, converted to what the model takes.

A file that cannot be predicted (missing, not an image, damaged, a named pipe: refused without being opened) gets a
Prediction with `error` set and the others still are; the caller decides what that means (the CLI: exit status 1).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from convscope.data.folder import IMAGE_SUFFIXES, image_files
from convscope.data.images import describe, open_image, resolve_image, to_array
from convscope.errors import CheckpointError, DataError, SpecError
from convscope.files import check_regular_file
from convscope.loaded import LoadedRun, load, with_test_flips
from convscope.onnx_model import load_onnx
from convscope.preprocess import normalise, prepare, to_tensor
from convscope.run import Run
from convscope.show import Picture, new_figure, png_bytes


@dataclass(frozen=True)
class Prediction:
    path: str
    top: list[tuple[str, float]] = field(default_factory=list)  # (class, probability), most likely first
    conversion: str = ""  # e.g. 'RGB 451×300 → gray 28×28'
    error: str = ""  # why this file could not be predicted, without its path (the others still are)
    image: np.ndarray | None = field(default=None, repr=False, compare=False)  # uint8 H×W×C as the model saw it

    def __repr__(self) -> str:
        if self.error:
            return f"Prediction({self.path!r}: {self.error})"
        return f"Prediction({self.path!r}: " + ", ".join(f"{c} {p:.1%}" for c, p in self.top) + ")"

    def _repr_png_(self) -> bytes | None:
        return None if self.error else png_bytes(predictions_figure([self]))

    def to_dict(self) -> dict:
        if self.error:
            return {"path": self.path, "error": self.error}
        return {
            "path": self.path,
            "conversion": self.conversion,
            "top": [{"class": c, "probability": p} for c, p in self.top],
        }


class Predictions(list):
    """A list of Prediction that a notebook shows as one picture: each image with its top classes as bars."""

    def _repr_png_(self) -> bytes | None:
        shown = [p for p in self if not p.error]
        return png_bytes(predictions_figure(shown)) if shown else None


def predictions_figure(predictions: list[Prediction], most: int = 12) -> Picture:
    """The first `most` predictions, one row each: the image as the model saw it (H×W×C) and a bar per top class
    (probability 0–1). Returns a Picture (a matplotlib Figure, 7 inches wide, 1.6 per row)."""
    rows = predictions[:most]
    fig = new_figure(figsize=(7, 1.6 * len(rows)), layout="constrained")
    for i, p in enumerate(rows):
        image_ax, bars_ax = (
            fig.add_subplot(len(rows), 3, 3 * i + 1),
            fig.add_subplot(len(rows), 3, (3 * i + 2, 3 * i + 3)),
        )
        if p.image is not None:
            gray = p.image.shape[-1] == 1
            image_ax.imshow(p.image[:, :, 0] if gray else p.image, cmap="gray" if gray else None, vmin=0, vmax=255)
        image_ax.set_axis_off()
        image_ax.set_title(Path(p.path).name if len(p.path) > 24 else p.path, fontsize=8)
        names, probs = [c for c, _ in p.top][::-1], [v for _, v in p.top][::-1]
        bars_ax.barh(range(len(names)), probs, color="#4c72b0")
        bars_ax.set_yticks(range(len(names)), names, fontsize=8)
        bars_ax.set_xlim(0, 1)
        for y, v in enumerate(probs):
            bars_ax.text(min(v, 0.8) + 0.01, y, f"{v:.1%}", va="center", fontsize=8)
        bars_ax.tick_params(axis="x", labelsize=7)
    return fig


def image_paths(items: list[str]) -> list[Path]:
    """Files as given; a folder stands for the image files directly inside it (sorted)."""
    paths: list[Path] = []
    for item in items:
        path = resolve_image(item)  # a file, a folder, or a sample photo's name ('chelsea')
        if path.is_dir():
            found = image_files(path)
            if not found:
                raise DataError(f"{path}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) in this folder")
            paths += found
        else:
            paths.append(path)
    return paths


def predict(
    run: LoadedRun | Run | str | Path, items: list[str], top_k: int = 3, device: str = "auto"
) -> list[Prediction]:
    """The top_k classes of each image in `items` (files, folders, sample photo names) by a run folder (or a
    LoadedRun: computed where it is loaded) or an exported .onnx file, in the order given (a folder's images sorted).
    A file that cannot be read gets a Prediction whose `error` says why; the rest are still predicted. A run's
    network runs on `device` (convscope.device; an .onnx file on ONNX Runtime's CPU provider), averaged with the
    mirror image where the run was trained so (loaded.with_test_flips). Raises DataError / CheckpointError for an
    unusable run or model, SpecError for a network that gives no class scores (a detector's: `convscope predict`
    refuses one before, naming `convscope detect predict`), ConfigError for a device this machine lacks.
    """
    import torch

    if not isinstance(run, LoadedRun | Run) and Path(run).suffix.lower() == ".onnx":  # a `convscope export`ed model
        check_regular_file(run, "model file", CheckpointError)
        return predict_onnx(run, items, top_k)
    loaded = load(run, device)
    predictor = with_test_flips(loaded.fused, loaded.run.config)

    def logits_of(x: torch.Tensor) -> torch.Tensor:
        return class_scores(predictor(x).float().cpu(), loaded)

    def fit(path: Path) -> tuple[np.ndarray, str]:
        picture = loaded.fit(path)
        return picture.array, picture.conversion

    with torch.inference_mode():
        return classify_files(logits_of, fit, loaded.tensor, loaded.classes, items, top_k)


def predict_image(loaded: LoadedRun, image, top_k: int = 3) -> Prediction:
    """The top_k classes of one image by a loaded classifier, as `predict` gives them (averaged with the mirror
    image where the run was trained so). `image`: what LoadedRun.fit takes (a file or sample photo's name, a PIL
    image, an array, an image already fitted); the Prediction carries the image as the network saw it. Raises
    DataError for an image that cannot be read."""
    import torch

    picture = loaded.fit(image)
    predictor = with_test_flips(loaded.fused, loaded.run.config)
    with torch.inference_mode():
        logits = class_scores(predictor(loaded.tensor(picture)).float().cpu(), loaded)
    return Prediction(picture.name, top_classes(logits, loaded.classes, top_k), picture.conversion, "", picture.array)


def class_scores(logits, loaded: LoadedRun):
    """`logits` (N×classes), checked: a network of another task (a detector's N×C×h×w maps) is refused with a
    SpecError. Which task a run is for is asked where the commands start (convscope.tasks.task_of); this is what a
    Python call that skipped that question meets."""
    if logits.ndim != 2 or logits.shape[1] != len(loaded.classes):
        shape = "×".join(map(str, logits.shape))
        raise SpecError(
            f"{loaded.run.path}: predict is for classifiers, whose network gives one score per class "
            f"({len(loaded.classes)}); {loaded.run.spec.name} gives {shape}"
        )
    return logits


def classify_files(logits_of, fit, tensor, classes, items: list[str], top_k: int) -> list[Prediction]:
    """The top_k classes of each image file in `items`, by `logits_of` (normalised 1×C×H×W tensor -> 1×classes
    logits) of `tensor(array)` for `fit(path)` = (uint8 H×W×C array, how it was converted); an unreadable file gets
    an error and the rest go on."""
    if top_k < 1:
        raise DataError(f"--top-k must be at least 1. Received: {top_k}")
    results: list[Prediction] = []
    for path in image_paths(items):
        try:
            array, conversion = fit(path)
        except DataError as err:
            results.append(Prediction(str(path), error=_reason(err, path)))
            continue
        top = top_classes(logits_of(tensor(array)), classes, top_k)
        results.append(Prediction(str(path), top, conversion))
    return results


def top_classes(logits, classes, top_k: int) -> list[tuple[str, float]]:
    """(class, softmax probability) of the top_k classes of one image's logits (1×classes tensor), best first."""
    import torch

    values, index = torch.softmax(logits, dim=1)[0].topk(min(top_k, len(classes)))
    return [(classes[i], float(v)) for v, i in zip(values, index, strict=True)]


def predict_onnx(path: str | Path, items: list[str], top_k: int = 3) -> list[Prediction]:
    """`predict`, with an exported ONNX classifier run by ONNX Runtime instead of PyTorch."""
    import torch

    model = load_onnx(path)
    if model.info["outputs"] != "logits":
        raise DataError(f"{model.path} is a detector's export: it outputs {model.info['outputs']}, not class scores")
    c = model.input[2]
    mean, std = (torch.tensor(model.info[k], dtype=torch.float32).view(1, c, 1, 1) for k in ("mean", "std"))

    def fit(path: Path) -> tuple[np.ndarray, str]:
        return prepare(path, model.input)

    def tensor(array: np.ndarray) -> torch.Tensor:
        return normalise(to_tensor(array[None]), mean, std)

    return classify_files(lambda x: torch.from_numpy(model(x)), fit, tensor, model.info["classes"], items, top_k)


def _reason(err: DataError, path: Path) -> str:
    """The error's message without the path it starts with (a Prediction carries the path once, in `path`)."""
    return str(err).removeprefix(f"{path}: ")


BASES = ("efficientnet-lite0",)


def predict_imagenet(base: str, items: list[str], top_k: int = 5) -> list[Prediction]:
    """ImageNet classes from a pretrained base (no run folder needed): the base's own 1000-class head."""
    import torch

    from convscope.pretrained.efficientnet import efficientnet_lite0, imagenet_classes, preprocess

    if base not in BASES:
        raise DataError(f"unknown base {base!r}. Bases: {', '.join(BASES)}")
    model = efficientnet_lite0(pretrained=True).to(memory_format=torch.channels_last)
    classes = [f"{name} ({i})" for i, name in enumerate(imagenet_classes())]  # each with its ImageNet index
    results: list[Prediction] = []
    for path in image_paths(items):
        try:
            img = open_image(path)
            x = preprocess(to_array(img, 3)).contiguous(memory_format=torch.channels_last)
        except DataError as err:
            results.append(Prediction(str(path), error=_reason(err, path)))
            continue
        with torch.inference_mode():
            top = top_classes(model(x), classes, top_k)
        conversion = f"{describe(img)} → RGB 224×224 (shorter side 256, centre crop)"
        results.append(Prediction(str(path), top, conversion))
    return results
