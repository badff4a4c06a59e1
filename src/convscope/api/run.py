"""Run: a run folder as a notebook uses it — its model, preprocessing and classes loaded once and kept, and a verb
for each thing people do with a trained convnet. `convscope.train` returns one; `convscope.load_run(path)` opens one.

It is the run folder's record (convscope.run.Run: path, config, spec, data) with verbs on top, so every library
function that takes a run takes it too. Images, wherever a verb takes one: a file path, a sample photo's name
('chelsea', 'coffee', …), a PIL image, or a NumPy array (H×W×C or H×W, uint8 0–255 or float 0–1); `predict` also
takes a list of them or an N×H×W×C array. Each is converted as `convscope predict` converts files (size, gray/RGB).
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from convscope import run as folder
from convscope.api.progress import KERAS_NAMES, epoch_numbers, test_numbers
from convscope.errors import CheckpointError, DataError
from convscope.run import CONFIG
from convscope.run_lock import training_alive
from convscope.show import Picture, heading, img_tag, table


@dataclass(frozen=True, eq=False)
class Run(folder.Run):
    """A trained (or training, or stopped) run with its model kept loaded. See the module's docstring."""

    _kept: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    @classmethod
    def of(cls, record: folder.Run) -> Run:
        return record if isinstance(record, cls) else cls(record.path, record.config, record.spec, record.data)

    # -- what the folder holds ----------------------------------------------------------------------------------------
    @property
    def history(self) -> dict[str, list[float]]:
        """Per epoch, by Keras' names where they exist: loss, accuracy, val_loss, val_accuracy, lr (and a detector's
        val_map50, …), plus epoch and seconds. NaN where an epoch was not validated."""
        rows = self.metrics()
        keys = list(rows[0]) if rows else ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr"]
        return {KERAS_NAMES.get(k, k): [int(row[k]) if k == "epoch" else row[k] for row in rows] for k in keys}

    @property
    def status(self) -> str:
        """'finished', 'training' (another process holds it), 'stopped, resumable' or 'not started'."""
        if training_alive(self.path):
            return "training"
        if self.results():
            return "finished"
        return "stopped, resumable" if (self.path / folder.CHECKPOINT).exists() else "not started"

    def headline(self) -> str:
        """The run's main test number, e.g. 'test accuracy 91.23%' or 'test mAP@0.5 0.884'; '' before testing."""
        return test_numbers(self.results(), ("test_acc", "test_map50", "test_map50_95"))

    def plot(self) -> Picture:
        """The training curves (loss and accuracy or mAP per epoch, training and validation) as a Picture."""
        from convscope.plots import curves_figure

        rows = self.metrics()
        if not rows:
            raise DataError(f"{self.path}: no epoch has finished yet, so there are no curves to draw")
        return curves_figure(rows, self.path.name)

    # -- the model, loaded once ---------------------------------------------------------------------------------------
    @property
    def loaded(self):
        """The run's network with its preprocessing and classes (convscope.loaded.LoadedRun), loaded on the run's
        device at the first verb that needs it, and kept: every verb uses this one."""
        if "loaded" not in self._kept:
            from convscope.loaded import load

            self._kept["loaded"] = load(self, self.config.device)
        return self._kept["loaded"]

    def _predictor(self):
        """The network as the run's task tests it (a classifier's mirror averaging: Task.predictor), kept."""
        if "predictor" not in self._kept:
            from convscope.tasks import task_of

            self._kept["predictor"] = task_of(self).predictor(self.loaded.model, self.config)
        return self._kept["predictor"]

    # -- verbs --------------------------------------------------------------------------------------------------------
    def evaluate(self, data=None, labels=None, data_dir: str | None = None):
        """The test evaluation: the one training saved (evaluation.json, detection.json) while the best weights are
        the ones it was made with, else computed once on the run's test split and saved. With `data`: that dataset's
        test split (a name or folder, as `train` takes), or NumPy images with their `labels` (`run.evaluate(x_test,
        y_test)` or `run.evaluate((x_test, y_test))`, as `train` takes arrays; not saved, their picture apart:
        confusion-NAME.png, confusion-arrays.png, pr_curves-NAME.png). A classifier's Evaluation
        (accuracy, per-class table, confusion matrix) or a detector's DetectionMetrics (COCO mAP). Raises DataError
        for data or arrays that cannot be used."""
        if labels is not None or isinstance(data, tuple | list | np.ndarray):
            return self._evaluate_arrays(data if labels is None else (data, labels))
        from convscope.tasks import task_of

        return task_of(self).evaluation(self, data, data_dir, self.config.device)

    def _evaluate_arrays(self, pair):
        import torch

        from convscope.classify.evaluate import evaluation_from_logits
        from convscope.data.arrays import pair as checked_pair
        from convscope.loaded import model_images
        from convscope.preprocess import predict_logits, to_tensor
        from convscope.tasks import ClassifyTask, task_of

        if task_of(self) is not ClassifyTask:
            raise DataError(f"{self.path} is a detector: evaluate it on a dataset with boxes (data=FOLDER)")
        x, y = checked_pair(pair, "evaluate")
        if y.max() >= len(self.data.classes):
            raise DataError(f"evaluate y: labels up to {y.max()}, the run has {len(self.data.classes)} classes")
        images = model_images(self, x, "evaluate x")
        loaded = self.loaded
        with torch.inference_mode():
            logits = predict_logits(self._predictor(), to_tensor(images), loaded.mean, loaded.std, loaded.device)
        return evaluation_from_logits(self, logits, y, images, data="arrays")

    def predict(self, images, top_k: int = 3):
        """A classifier's top_k classes (probabilities) of one image (a Prediction) or of several (a list of them:
        a list, or an N×H×W×C array), shown in a notebook as each image with bars. A detector's boxes (Found, one per
        image; images as files or sample names). Raises DataError for an image that cannot be read."""
        many = isinstance(images, list | tuple) or (
            isinstance(images, np.ndarray)
            and (images.ndim == 4 or (images.ndim == 3 and images.shape[-1] not in (1, 3)))
        )
        items = list(images) if many else [images]
        from convscope.tasks import task_of

        if top_k < 1:
            raise DataError(f"top_k must be at least 1. Received: {top_k}")
        found = task_of(self).predict(self.loaded, items, top_k)
        if not many:
            return found[0]
        for i, one in enumerate(found):
            if getattr(one, "path", None) == "array":  # an array has no file name: its place in the batch names it
                found[i] = replace(one, path=f"array {i}")
        return found

    def featuremaps(self, image, layer: str | list[str] | None = None):
        """The feature maps (one per filter) of `layer` (a name like 'conv1', a list, or None: every conv and pool
        layer) for one image: FeatureMaps, shown as a sheet per layer. DataError for a layer without maps."""
        from convscope.inspect.featuremaps import feature_maps

        return feature_maps(self.loaded, image, [layer] if isinstance(layer, str) else layer)

    def gradcam(self, image, cls: str | None = None, layer: str | None = None, method: str = "hirescam"):
        """Where in `image` the network found evidence for class `cls` (default: the predicted class): HiResCAM
        (default) or Grad-CAM at `layer` (default: the last layer with feature maps). A GradCam, shown as the image,
        the heatmap and the overlay. DataError for an unknown class or layer."""
        import torch

        from convscope.inspect.gradcam import class_index, gradcam, refuse_detector

        refuse_detector(self)
        loaded = self.loaded
        picture = loaded.fit(image)
        if cls is None:  # the class predict gives (averaged with the mirror image where the run tests so)
            with torch.inference_mode():
                index = int(self._predictor()(loaded.tensor(picture)).argmax(1)[0])
        else:
            index = class_index(self.data.classes, cls, self.path)
        result = gradcam(loaded.model, loaded.tensor(picture), layer=layer, class_index=index, method=method)
        return replace(result, class_name=self.data.classes[result.class_index], image=picture.array)

    def filters(self, layer: str | None = None):
        """The trained filters (weights) of a conv layer (default: the first), shown as a sheet."""
        from convscope.inspect.filters import filter_weights

        return filter_weights(self.loaded, layer)

    def patterns(
        self,
        layer: str | None = None,
        filters: list[int] | None = None,
        steps: int | None = None,
        size: int | None = None,
    ):
        """Images that each filter of `layer` (default: the first conv layer) responds to most (gradient ascent;
        default: its first 16 filters), shown as a sheet. Takes seconds per layer (see convscope.inspect.patterns)."""
        from convscope.inspect.patterns import STEPS, filter_patterns

        if layer is None:
            convs = self.spec.conv_names()
            if not convs:
                raise DataError(f"{self.spec.name} has no conv layer: name the layer, e.g. patterns('base1')")
            layer = convs[0]

        return filter_patterns(self.loaded, layer, filters, steps or STEPS, size)

    def explain(self, image="chelsea", layer: str | None = None, filter: int = 0, at: tuple[int, int] | None = None):
        """One output value of a trained filter, step by step: the window of the image's first channel (values
        0–255, resized to the run's input) it reads, the filter's weights (of that channel), the products and
        their sum (no bias, no activation). layer: a conv layer reading the image (default: the first layer). A
        Walkthrough, shown as text and a picture. DataError for a layer that is not the first conv."""
        from convscope.api.explained import Explained
        from convscope.explain import explain_conv

        first = self.spec.layers[0]
        name = self.spec.layer_names()[0]
        if first.layer_type != "conv" or layer not in (None, name):
            raise DataError(
                f"{self.spec.name}: explain follows the first layer, a conv one; {name} is {first.layer_type}"
            )
        weights = self.loaded.model[0].weight.detach().float().cpu().numpy()  # filters × channels × kh × kw
        if not 0 <= filter < len(weights):
            raise DataError(f"{name} has filters 0 to {len(weights) - 1}. Received: {filter}")
        picture = self.loaded.fit(image)
        x, kernel = picture.array[:, :, 0].astype(np.float64), weights[filter, 0]
        source = f"{picture.name} ({picture.conversion}), channel 1"
        return Explained(explain_conv(x, kernel, first.stride, first.padding, at, source, f"{name} filter {filter}"))

    def filmstrip(self):
        """Watch it learn: the first conv layer's filters and a probe image's feature maps at each conv layer, saved
        by training after every epoch (training/filmstrip.py). A Filmstrip: `.epochs`, `.filters` (E×F×C×kh×kw),
        `.maps[layer]` (E×k×h×w), `.probe` (H×W×C); shown in a notebook as a picture, `.figure(epoch)` for one epoch.
        DataError for a run without one (trained before film strips were saved)."""
        from convscope.training.filmstrip_show import read_filmstrip

        return read_filmstrip(self.path)

    def most_confused(self, min_count: int = 1, most: int | None = None, per_pair: int = 12):
        """The test split's most-confused pairs, as fastai's `most_confused`: (true class, predicted class, count),
        the largest count first, each with up to `per_pair` of its images (the most confidently wrong first). A
        Confusions (convscope.classify.confused); `class_maps(run.loaded, confusions.images[i], pair)` gives an
        image's HiResCAM for both classes. SpecError for a detector, DataError when the test split is unreadable."""
        from convscope.classify.confused import most_confused

        return most_confused(self.loaded, min_count, most, per_pair)

    def report(self):
        """Write report.html (curves, per-class numbers, mistakes, feature maps) and return it: a Report that a
        notebook shows inline and whose `.path` is the file."""
        from convscope.tasks import task_of

        return Report(task_of(self).report(self))

    # -- display ------------------------------------------------------------------------------------------------------
    def __repr__(self) -> str:
        headline = f"; {self.headline()}" if self.headline() else ""
        return f"Run({str(self.path)!r}: {self.spec.name} on {self.data.name}, {self.status}{headline})"

    def _repr_html_(self) -> str:
        rows = self.metrics()
        last = rows[-1] if rows else {}
        numbers = list(epoch_numbers(last).items())  # as the epoch's bar showed them: accuracies in %
        picture = img_tag(self.plot(), "training curves", width=640) if rows else ""
        h, w, c = self.spec.input
        detail = f"{self.spec.name} ({h}×{w}×{c}) on {self.data.name}, {len(rows)} epochs, {self.status}"
        return (
            heading(f"{self.path}: {self.headline() or 'not tested yet'}", detail)
            + (table(("last epoch", "value"), numbers, right=(1,)) if numbers else "")
            + picture
        )


class Report:
    """report.html of a run: `.path`, shown inline in a notebook (the page carries its pictures inside)."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def __fspath__(self) -> str:
        return str(self.path)

    def __repr__(self) -> str:
        return f"Report({str(self.path)!r})"

    def _repr_html_(self) -> str:
        page = html.escape(self.path.read_text(encoding="utf-8"), quote=True)
        return f'<iframe srcdoc="{page}" style="width:100%;height:720px;border:1px solid #ccc"></iframe>'


def load_run(path: str | Path) -> Run:
    """The run in a folder (`runs/NAME`), ready to use: its model is loaded at the first verb and kept. Raises
    CheckpointError when the folder is not a run or its files are damaged."""
    path = Path(path)
    if path.is_dir() and not (path / CONFIG).is_file() and (path / "runs").is_dir():
        raise CheckpointError(f"{path}: not a run folder; the runs are inside it, in {path / 'runs'}")
    return Run.of(folder.load_run(path))


def featuremaps(run, image, layer: str | list[str] | None = None):
    """`load_run(run).featuremaps(image, layer)`: a run folder's (or Run's) feature maps of one image."""
    return (run if isinstance(run, Run) else load_run(run)).featuremaps(image, layer)


def gradcam(run, image, cls: str | None = None, layer: str | None = None, method: str = "hirescam"):
    """`load_run(run).gradcam(image, cls, layer, method)`: where the network found evidence for a class."""
    return (run if isinstance(run, Run) else load_run(run)).gradcam(image, cls, layer, method)
