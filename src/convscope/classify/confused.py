"""The most-confused pairs of a classifier (fastai's `ClassificationInterpretation.most_confused`), with their images.

A pair is (true class, predicted class, count): an off-diagonal cell of the test split's confusion matrix, the
largest first. Each pair keeps up to `per_pair` of its test images, most confidently wrong first (the highest
probability given to the wrong class), with the probabilities of the true and of the predicted class, so that a
viewer can show where the network looked for each (`class_maps`: HiResCAM, convscope.inspect.gradcam's default).

Evaluation saves the confusion matrix and only the 16 most confidently wrong images (evaluation.json), not every
image's prediction, so the pairs' images need the test split predicted again: one batched pass, no progress bar, by
the network and test-time averaging `convscope evaluate` uses (its counts are the saved confusion matrix's while the
best weights are the same).

>>> found = most_confused("runs/fashion")                       # doctest: +SKIP
>>> found.pairs[0]                                              # doctest: +SKIP
ConfusedPair(shirt → T-shirt/top: 112 images, 12 kept)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from convscope.errors import DataError, SpecError
from convscope.loaded import LoadedRun, load, with_test_flips
from convscope.run import Run
from convscope.show import Drawable

PER_PAIR = 12  # images kept per pair: a gallery's worth
SHOWN_PAIRS, SHOWN_IMAGES = 6, 6  # the notebook picture's rows and columns


@dataclass(frozen=True)
class ConfusedImage:
    """One test image of a pair: its index in the test split (as `convscope evaluate` counts them) and the softmax
    probabilities the network gave its true class and the class it predicted."""

    index: int
    true_probability: float
    predicted_probability: float


@dataclass(frozen=True)
class ConfusedPair:
    true: str
    predicted: str
    true_index: int  # class indices
    predicted_index: int
    count: int  # test images of class `true` predicted as `predicted`
    images: tuple[ConfusedImage, ...]  # at most per_pair of them, most confidently wrong first

    def __repr__(self) -> str:
        return f"ConfusedPair({self.true} → {self.predicted}: {self.count} images, {len(self.images)} kept)"

    def to_dict(self) -> dict:
        return {
            "true": self.true,
            "predicted": self.predicted,
            "count": self.count,
            "images": [vars(image) for image in self.images],
        }


@dataclass(frozen=True)
class Confusions(Drawable):
    """The most-confused pairs of a run's test split, and the kept images as the network took them. Shown in a
    notebook as a picture: a row per pair (the largest SHOWN_PAIRS), its first SHOWN_IMAGES images."""

    classes: tuple[str, ...]
    tested: int  # test images
    wrong: int  # of them predicted wrong
    pairs: tuple[ConfusedPair, ...]
    images: dict[int, np.ndarray] = field(default_factory=dict, repr=False)  # test index → uint8 H×W×C, kept ones

    @property
    def accuracy(self) -> float:
        return 1 - self.wrong / self.tested if self.tested else float("nan")

    def pair_of(self, index: int) -> tuple[ConfusedPair, ConfusedImage] | None:
        """The pair a kept test image belongs to, and its entry there; None for an image not kept."""
        for pair in self.pairs:
            for image in pair.images:
                if image.index == index:
                    return pair, image
        return None

    def __repr__(self) -> str:
        shown = "; ".join(f"{p.true} → {p.predicted} ({p.count})" for p in self.pairs[:5])
        return f"Confusions({self.wrong} of {self.tested:,} test images wrong: {shown or 'no mistakes'})"

    def figure(self):
        """A row per pair (the largest SHOWN_PAIRS), each with its first SHOWN_IMAGES images (H×W×C as the network
        took them), titled with the probability of the class it was taken for."""
        from convscope.show import new_figure

        pairs = self.pairs[:SHOWN_PAIRS]
        if not pairs:
            fig = new_figure(figsize=(6, 1))
            fig.text(0.5, 0.5, f"no mistakes: all {self.tested:,} test images right", ha="center", va="center")
            return fig
        fig = new_figure(figsize=(1.6 * SHOWN_IMAGES, 1.9 * len(pairs) + 0.3), layout="constrained")
        grid = fig.subplots(len(pairs), SHOWN_IMAGES, squeeze=False)
        for row, pair in zip(grid, pairs, strict=True):
            row[0].set_ylabel(f"{pair.true} →\n{pair.predicted}\n({pair.count})", fontsize=9)
            for i, ax in enumerate(row):
                ax.set_xticks([]), ax.set_yticks([])
                if i >= len(pair.images):
                    ax.set_frame_on(False)
                    continue
                image = self.images[pair.images[i].index]
                ax.imshow(image[:, :, 0] if image.shape[2] == 1 else image, cmap="gray", vmin=0, vmax=255)
                ax.set_title(f"{100 * pair.images[i].predicted_probability:.0f}% {pair.predicted}"[:24], fontsize=8)
        fig.suptitle(f"most confused: {self.wrong:,} of {self.tested:,} test images wrong", fontsize=10)
        return fig

    def to_dict(self) -> dict:
        return {
            "classes": list(self.classes),
            "tested": self.tested,
            "wrong": self.wrong,
            "accuracy": self.accuracy,
            "pairs": [pair.to_dict() for pair in self.pairs],
        }


def confused_pairs(
    labels: np.ndarray,
    probabilities: np.ndarray,
    classes: tuple[str, ...],
    min_count: int = 1,
    most: int | None = None,
    per_pair: int = PER_PAIR,
) -> list[ConfusedPair]:
    """The pairs (true, predicted) with at least `min_count` test images, the largest count first (ties: by true
    class, then predicted class, in class order), at most `most` of them (None: all). labels: N true class indices;
    probabilities: N×classes softmax outputs (the prediction is their argmax)."""
    if min_count < 1:
        raise DataError(f"min_count must be at least 1. Received: {min_count}")
    if per_pair < 0:
        raise DataError(f"per_pair must be at least 0. Received: {per_pair}")
    labels = np.asarray(labels, dtype=np.int64)
    probabilities = np.asarray(probabilities)
    n = len(classes)
    if probabilities.shape != (len(labels), n):
        raise DataError(f"probabilities must be {len(labels)}×{n} (images × classes). Received {probabilities.shape}")
    predicted = probabilities.argmax(1)
    confusion = np.zeros((n, n), dtype=np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    np.fill_diagonal(confusion, 0)
    cells = [(t, p) for t, p in zip(*np.nonzero(confusion >= min_count), strict=True)]  # row-major: class order
    cells.sort(key=lambda cell: -confusion[cell])  # stable: ties stay in class order
    pairs = []
    for t, p in cells[:most]:
        members = np.flatnonzero((labels == t) & (predicted == p))
        order = members[np.argsort(-probabilities[members, p], kind="stable")][:per_pair]
        images = tuple(ConfusedImage(int(i), float(probabilities[i, t]), float(probabilities[i, p])) for i in order)
        pairs.append(ConfusedPair(classes[t], classes[p], int(t), int(p), int(confusion[t, p]), images))
    return pairs


def most_confused(
    run: LoadedRun | Run | str | Path,
    min_count: int = 1,
    most: int | None = None,
    per_pair: int = PER_PAIR,
    device="cpu",
) -> Confusions:
    """The most-confused pairs of a classifier run's test split (`confused_pairs`), predicted by its best weights on
    `device` (a LoadedRun: where it is loaded) as `convscope evaluate` predicts them, with the kept images as the
    network took them. Raises SpecError for a detector, DataError when the test split cannot be read."""
    from convscope.classify.evaluate import load_test_split

    loaded = load(run, device)
    refuse_detector(loaded)
    images, labels = load_test_split(loaded.run)
    return confusions_of(loaded, images, labels, min_count, most, per_pair)


def refuse_detector(loaded: LoadedRun) -> None:
    """SpecError for a detector's run: its mistakes are boxes, not a confusion of classes."""
    if loaded.run.spec.is_detector:
        raise SpecError(
            f"{loaded.run.path}: the most-confused pairs are for classifiers; {loaded.run.spec.name} is a detector"
        )


def confusions_of(
    loaded: LoadedRun,
    images: np.ndarray,
    labels: np.ndarray,
    min_count: int = 1,
    most: int | None = None,
    per_pair: int = PER_PAIR,
) -> Confusions:
    """`most_confused` of test images already read (uint8 N×H×W×C as the network takes them, N class indices): one
    batched pass of the run's test-time predictor (batchnorms folded, mirror averaging where it trained so)."""
    import torch

    from convscope.preprocess import predict_logits, to_tensor

    refuse_detector(loaded)
    predictor = with_test_flips(loaded.fused, loaded.run.config)
    logits = predict_logits(predictor, to_tensor(images), loaded.mean, loaded.std, loaded.device)
    probabilities = torch.softmax(logits, 1).numpy()
    pairs = confused_pairs(labels, probabilities, loaded.classes, min_count, most, per_pair)
    wrong = int((probabilities.argmax(1) != labels).sum())
    kept = {image.index: images[image.index].copy() for pair in pairs for image in pair.images}
    return Confusions(loaded.classes, len(labels), wrong, tuple(pairs), kept)


def class_maps(loaded: LoadedRun, image: np.ndarray, pair: ConfusedPair, layer: str | None = None) -> tuple:
    """The class maps (GradCam, HiResCAM at the default layer) of one test image (uint8 H×W×C as the network takes
    it) for the pair's true class and for its predicted class, in that order."""
    from dataclasses import replace

    from convscope.inspect.gradcam import gradcam

    x = loaded.tensor(image)
    maps = []
    for index in (pair.true_index, pair.predicted_index):
        found = gradcam(loaded.model, x, layer=layer, class_index=index)
        maps.append(replace(found, class_name=loaded.classes[index], image=image))
    return tuple(maps)
