"""evaluate: accuracy, per-class precision / recall / F1, the confusion matrix and the most-confused pairs.

Training saves the test split's evaluation in the run folder (evaluation.json, stamped with the best weights'
sha256); `evaluation_of` reads it back while those weights are the same, so `convscope evaluate`, the report, the
studio and `Run.evaluate` never score the same images twice. Only another dataset, or a run whose saved
evaluation is missing or stale, is scored again. Another dataset's evaluation is never saved, and its confusion
matrix has its own picture (`confusion_path`: confusion-NAME.png), so the run's own test results are never overwritten.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from convscope.errors import CheckpointError
from convscope.loaded import load, model_images, with_test_flips
from convscope.run import CONFUSION, EVALUATION, Run, load_run, read_evaluation, write_evaluation

log = logging.getLogger("convscope.evaluate")
WRONG_KEPT = 16  # the most confidently wrong test images named in evaluation.json, for the report's pictures


@dataclass(frozen=True)
class Mistake:
    """A test image the model got wrong: its index in the test split, its true and predicted class indices and the
    probability the model gave its (wrong) prediction."""

    index: int
    true: int
    predicted: int
    probability: float


@dataclass(frozen=True)
class Evaluation:
    classes: tuple[str, ...]
    confusion: np.ndarray  # [true class, predicted class] counts
    loss: float
    labels: np.ndarray | None = field(default=None, repr=False)  # N true classes of the test images
    probabilities: np.ndarray | None = field(default=None, repr=False)  # N×classes softmax outputs
    images: np.ndarray | None = field(default=None, repr=False)  # N×H×W×C uint8, as the model saw them
    # read back from evaluation.json (no probabilities): its WRONG_KEPT most confidently wrong test images
    saved_mistakes: tuple[Mistake, ...] = field(default=(), repr=False)

    def mistakes(self, k: int = 8) -> list[Mistake]:
        """The k wrong predictions the model was most sure of, most sure first (at most WRONG_KEPT of a saved
        evaluation)."""
        if self.probabilities is None:
            return list(self.saved_mistakes[:k])
        predicted = self.probabilities.argmax(1)
        wrong = np.flatnonzero(predicted != self.labels)
        confidence = self.probabilities[wrong, predicted[wrong]]
        order = wrong[np.argsort(-confidence, kind="stable")][:k]
        return [
            Mistake(int(i), int(self.labels[i]), int(predicted[i]), float(self.probabilities[i, predicted[i]]))
            for i in order
        ]

    def confidently_wrong(self, k: int = 8) -> list[int]:
        """Indices of the k wrong predictions the model was most sure of."""
        return [m.index for m in self.mistakes(k)]

    @property
    def accuracy(self) -> float:
        return float(np.trace(self.confusion) / self.confusion.sum())

    def per_class(self) -> list[dict]:
        tp = np.diag(self.confusion).astype(float)
        predicted, actual = self.confusion.sum(0), self.confusion.sum(1)
        precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
        recall = np.divide(tp, actual, out=np.zeros_like(tp), where=actual > 0)
        f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros_like(tp), where=precision + recall > 0)
        return [
            {"class": c, "precision": float(p), "recall": float(r), "f1": float(f), "support": int(n)}
            for c, p, r, f, n in zip(self.classes, precision, recall, f1, actual, strict=True)
        ]

    def most_confused(self, k: int = 5) -> list[tuple[str, str, int]]:
        """(true class, predicted as, count) for the k largest off-diagonal cells."""
        off = self.confusion.copy()
        np.fill_diagonal(off, 0)
        order = np.argsort(off, axis=None)[::-1][:k]
        pairs = [np.unravel_index(i, off.shape) for i in order]
        return [(self.classes[t], self.classes[p], int(off[t, p])) for t, p in pairs if off[t, p] > 0]

    def __repr__(self) -> str:
        return f"Evaluation(accuracy {self.accuracy:.2%}, loss {self.loss:.4f}, {int(self.confusion.sum()):,} images)"

    def _repr_html_(self) -> str:
        """Accuracy, the per-class table and the confusion matrix, for a notebook."""
        from convscope.plots import confusion_figure
        from convscope.show import heading, img_tag, table

        rows = [
            (r["class"], f"{r['precision']:.1%}", f"{r['recall']:.1%}", f"{r['f1']:.3f}", f"{r['support']:,}")
            for r in self.per_class()
        ]
        confused = "; ".join(f"{t} → {p} ({n})" for t, p, n in self.most_confused())
        return (
            heading(f"test accuracy {self.accuracy:.2%}", f"loss {self.loss:.4f}, {int(self.confusion.sum()):,} images")
            + (f"<p>most confused: {confused}</p>" if confused else "")
            + table(("class", "precision", "recall", "F1", "images"), rows, right=(1, 2, 3, 4))
            + img_tag(confusion_figure(self, "confusion matrix"), "confusion matrix")
        )

    def to_dict(self) -> dict:
        return {
            "accuracy": self.accuracy,
            "loss": self.loss,
            "per_class": self.per_class(),
            "confusion": self.confusion.tolist(),
            "classes": list(self.classes),
            "most_confused": [{"true": t, "predicted": p, "count": n} for t, p, n in self.most_confused()],
        }


def evaluation_of(
    run: Run | str | Path, data: str | None = None, data_dir: str | None = None, device: str = "auto"
) -> Evaluation:
    """A classifier run's test evaluation: the one saved in the run folder while its best weights are those it was
    made with (no per-image arrays), else `evaluate` (which saves it again when the data is the run's own). The
    network, if it has to run, runs on `device`."""
    run = load_run(run)
    if run.trained_on(data, data_dir) and (saved := saved_evaluation(run)) is not None:
        if not (run.path / CONFUSION).is_file():  # the picture `convscope evaluate` names
            _plot(run, saved)
        return saved
    return evaluate(run, data, data_dir, device)


def evaluate(
    run: Run | str | Path, data: str | None = None, data_dir: str | None = None, device: str = "auto"
) -> Evaluation:
    """Evaluate a classifier run's best weights on the test split of its data (or of `data`), writing confusion.png
    and evaluation.json for its own data; for other data only its own picture, confusion-NAME.png (`confusion_path`):
    the run's own results are left as they are. The network runs on `device` (convscope.device.resolve_device:
    ConfigError when this machine lacks it)."""
    import torch

    from convscope.device import resolve_device
    from convscope.preprocess import predict_logits, to_tensor

    run = load_run(run)
    torch.set_num_threads(run.config.threads or torch.get_num_threads())
    device = resolve_device(device)  # refused before the data is read
    test_images, labels = load_test_split(run, data, data_dir)
    loaded = load(run, device)
    model = with_test_flips(loaded.fused, run.config)  # batchnorms folded: same logits, less work
    logits = predict_logits(model, to_tensor(test_images), loaded.mean, loaded.std, device)
    other = None if run.trained_on(data, data_dir) else data or run.config.data  # None: the run's own test split
    return evaluation_from_logits(run, logits, labels, test_images, other)


def load_test_split(run: Run, data: str | None = None, data_dir: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The test split of the run's data (or of `data`): uint8 N×H×W×C images as the run's network takes them, and
    their N class indices. DataError when it cannot be read or its images do not fit the network."""
    from convscope.data.load import load_dataset

    dataset = load_dataset(data or run.config.data, data_dir or run.config.data_dir, run.spec.input, run.config.seed)
    return model_images(run, dataset.test.images, dataset.name), dataset.test.labels


def with_test_images(run: Run, evaluation: Evaluation) -> Evaluation:
    """The evaluation with the test images and labels its pictures need (the report's mistakes, its feature maps): a
    saved one gets them from the run's test split, read again (the network does not run), unless that split is no
    longer the one it was made on; then the split is evaluated again."""
    if evaluation.images is not None:
        return evaluation
    images, labels = load_test_split(run)
    same = len(labels) == int(evaluation.confusion.sum()) and all(
        m.index < len(labels) and labels[m.index] == m.true for m in evaluation.saved_mistakes
    )
    return replace(evaluation, images=images, labels=labels) if same else evaluate(run)


def evaluation_from_logits(
    run: Run, logits, labels: np.ndarray, images: np.ndarray, data: str | None = None
) -> Evaluation:
    """The Evaluation of test logits (N×classes tensor) against their labels. The run's own test images (`data`
    None) write the run's confusion.png and evaluation.json; other images (`data`: their dataset, or "arrays") only
    RUN/confusion-NAME.png (`confusion_path`)."""
    import torch
    import torch.nn.functional as F

    target = torch.from_numpy(labels).long()
    n = len(run.data.classes)
    confusion = np.zeros((n, n), dtype=np.int64)
    np.add.at(confusion, (labels, logits.argmax(1).numpy()), 1)
    loss = float(F.cross_entropy(logits, target))
    probabilities = torch.softmax(logits, 1).numpy()
    result = Evaluation(run.data.classes, confusion, loss, labels, probabilities, images)
    _plot(run, result, data)
    if data is None:  # the run's own test split: kept, so viewers read it back instead of computing it again
        mistakes = [vars(m) for m in result.mistakes(WRONG_KEPT)]
        write_evaluation(run, EVALUATION, {"images": len(labels), **result.to_dict(), "mistakes": mistakes})
    return result


def confusion_path(run: Run, data: str | None = None, data_dir: str | None = None) -> Path:
    """Where the confusion matrix of an evaluation goes: RUN/confusion.png for the run's own data, else
    RUN/confusion-NAME.png (NAME: the other dataset's name, folder or file name; convscope.plots.picture_path)."""
    from convscope.plots import picture_path

    return picture_path(run.path, CONFUSION, None if run.trained_on(data, data_dir) else data or run.config.data)


def _plot(run: Run, result: Evaluation, data: str | None = None) -> None:
    """The confusion matrix as a picture: the run's own (`data` None) or another dataset's (`confusion_path`)."""
    from convscope.plots import picture_path, plot_confusion

    on = "test" if data is None else f"on {data}:"
    title = f"{run.path.name}: {on} accuracy {result.accuracy:.2%}"
    plot_confusion(result, picture_path(run.path, CONFUSION, data), title=title)


def saved_evaluation(run: Run) -> Evaluation | None:
    """The evaluation of the run's own test split saved by training or `evaluate` (evaluation.json), without the
    per-image arrays; None when there is none, or when it was made with other best weights or by an older convscope
    (convscope.run.read_evaluation). Raises CheckpointError when the file is damaged."""
    saved = read_evaluation(run, EVALUATION)
    if saved is None:
        return None
    try:
        confusion = np.asarray(saved["confusion"], dtype=np.int64)
        classes = tuple(saved["classes"])
        if confusion.shape != (len(classes), len(classes)) or classes != run.data.classes:
            raise ValueError("its classes do not match the run's")
        mistakes = tuple(Mistake(int(m["index"]), int(m["true"]), int(m["predicted"]), float(m["probability"]))
                         for m in saved["mistakes"])  # fmt: skip
        return Evaluation(classes, confusion, float(saved["loss"]), saved_mistakes=mistakes)
    except (ValueError, KeyError, TypeError) as err:
        raise CheckpointError(f"{run.path / EVALUATION}: damaged evaluation ({err})") from None


def warn_if_one_class(predicted, labels, classes: tuple[str, ...]) -> None:
    """A warning (shown on screen) when the model gives one class to at least 90% of the test images although that
    class is under half of them: it has not learned to tell the classes apart (too few images or steps, or a
    learning rate too high for them), and its accuracy, pictures and maps mean little. predicted, labels: N class
    indices (torch tensors)."""
    import torch

    counts = torch.bincount(predicted, minlength=len(classes))
    top = int(counts.argmax())
    share, truth = float(counts[top]) / len(predicted), float((labels == top).float().mean())
    if len(classes) > 1 and share >= 0.9 and truth < 0.5:
        log.warning(
            "the model predicts %s for %.0f%% of the test images (%.0f%% of them are %s): it has not learned to tell "
            "the classes apart; train on more images or for more epochs, or with a smaller --lr",
            classes[top],
            100 * share,
            100 * truth,
            classes[top],
        )
