"""evaluate: accuracy, per-class precision / recall / F1, the confusion matrix and the most-confused pairs."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from convscope.errors import CheckpointError
from convscope.files import atomic_write_text
from convscope.run import CONFUSION, EVALUATION, Run, classifier_run, load_predictor, model_images

log = logging.getLogger("convscope.evaluate")


@dataclass(frozen=True)
class Evaluation:
    classes: tuple[str, ...]
    confusion: np.ndarray  # [true class, predicted class] counts
    loss: float
    labels: np.ndarray | None = field(default=None, repr=False)  # N true classes of the test images
    probabilities: np.ndarray | None = field(default=None, repr=False)  # N×classes softmax outputs
    images: np.ndarray | None = field(default=None, repr=False)  # N×H×W×C uint8, as the model saw them

    def confidently_wrong(self, k: int = 8) -> list[int]:
        """Indices of the k wrong predictions the model was most sure of."""
        predicted = self.probabilities.argmax(1)
        wrong = np.flatnonzero(predicted != self.labels)
        confidence = self.probabilities[wrong, predicted[wrong]]
        return [int(i) for i in wrong[np.argsort(-confidence, kind="stable")][:k]]

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


def evaluate(
    run: Run | str | Path, data: str | None = None, data_dir: str | None = None, device: str = "auto"
) -> Evaluation:
    """Evaluate a run's best weights on the test split of its data (or of `data`), writing confusion.png. The
    network runs on `device` (convscope.device.resolve_device: ConfigError when this machine lacks it)."""
    import torch

    from convscope.data.load import load_dataset
    from convscope.device import resolve_device
    from convscope.preprocess import predict_logits, run_stats, to_tensor

    run = classifier_run(run, "evaluate")
    torch.set_num_threads(run.config.threads or torch.get_num_threads())
    device = resolve_device(device)  # refused before the data is read
    dataset = load_dataset(data or run.config.data, data_dir or run.config.data_dir, run.spec.input, run.config.seed)
    test_images = model_images(run, dataset.test.images, dataset.name)
    model = load_predictor(run, device=device)
    mean, std = run_stats(run)
    images = to_tensor(test_images)
    logits = predict_logits(model, images, mean, std, device)
    own = data is None or data == run.config.data
    return evaluation_from_logits(run, logits, dataset.test.labels, test_images, None if own else data)


def evaluation_from_logits(
    run: Run, logits, labels: np.ndarray, images: np.ndarray, data: str | None = None
) -> Evaluation:
    """The Evaluation of test logits (N×classes tensor) against their labels; writes the run's confusion.png, and
    evaluation.json when these are the run's own test images (`data` None)."""
    import torch
    import torch.nn.functional as F

    from convscope.plots import plot_confusion

    target = torch.from_numpy(labels).long()
    n = len(run.data.classes)
    confusion = np.zeros((n, n), dtype=np.int64)
    np.add.at(confusion, (labels, logits.argmax(1).numpy()), 1)
    loss = float(F.cross_entropy(logits, target))
    probabilities = torch.softmax(logits, 1).numpy()
    result = Evaluation(run.data.classes, confusion, loss, labels, probabilities, images)
    plot_confusion(result, run.path / CONFUSION, title=f"{run.path.name}: test accuracy {result.accuracy:.2%}")
    if data is None:  # the run's own test split: kept, so viewers read it back instead of computing it again
        atomic_write_text(run.path / EVALUATION, json.dumps({"images": int(len(labels)), **result.to_dict()}))
    return result


def saved_evaluation(run: Run) -> Evaluation | None:
    """The evaluation of the run's own test split saved by training or `evaluate` (evaluation.json), without the
    per-image arrays; None when there is none. Raises CheckpointError when the file is damaged."""
    path = run.path / EVALUATION
    if not path.is_file():
        return None
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
        confusion = np.asarray(saved["confusion"], dtype=np.int64)
        classes = tuple(saved["classes"])
        if confusion.shape != (len(classes), len(classes)) or classes != run.data.classes:
            raise ValueError("its classes do not match the run's")
        return Evaluation(classes, confusion, float(saved["loss"]))
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path}: damaged evaluation ({err})") from None


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
