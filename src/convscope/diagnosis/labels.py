"""Suspicious labels: images whose given class a trained run confidently disagrees with (classification), boxes a
detector finds nothing near and objects it finds where no box is (detection: labels_detection.py).

Classification, confident learning (Northcutt et al. 2021, through cleanlab's `find_label_issues`, ranked by
self-confidence: the probability of the given class). It needs out-of-sample class probabilities for every image:
- images the run did not train on (val and test splits, the seeded hold-outs of a folder training split itself, or
  every image when the run trained on another data set): the run's own network, as `convscope predict` runs it
  (mirror-averaged where the run was trained so);
- the run's own training images, which the network has memorised: K-fold cross-validation (K = 5, seeded,
  stratified) of a multinomial logistic regression on the network's penultimate-layer features (the input of its
  last dense layer), the approach cleanlab recommends for images.
The two kinds of probability are calibrated differently, so each group is judged on its own (confident learning's
per-class thresholds are means over a group), then all are ranked together.

Images are decoded once, at the run's input size, as training decodes them (data.stream.decode_into); a split that
training read is taken from the decoded-image cache (data/cache.py) without decoding, and a split decoded here is
put there, so the next diagnosis or training starts from it.

With a test split: the test accuracy, and without the test images that have a twin in train (the twins check's
findings), what the issue asks: how much the leak inflates the score.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from convscope.diagnosis.labels_predict import Probabilities, class_probabilities, image_of
from convscope.diagnosis.listing import Listing
from convscope.diagnosis.model import Example, Finding
from convscope.diagnosis.scan import Scan
from convscope.diagnosis.twins import twinned_rows, with_and_without_twins
from convscope.errors import DataError

log = logging.getLogger(__name__)
PICTURES = 24  # suspicious examples drawn with their class-activation maps
PICTURE_SIDE = 128  # px: smaller images are enlarged (nearest neighbour) to at least this height
_GAP = 4  # px of white between the given class's map and the predicted class's


@dataclass
class Judged:
    """What judging the labels found, for doctor.diagnose."""

    findings: list[Finding] = field(default_factory=list)
    scores: dict[str, float] | None = None  # {"test accuracy": …, "test accuracy without the N images …": …}
    notes: list[str] = field(default_factory=list)
    pictures: dict[str, np.ndarray] = field(default_factory=dict)  # example name → uint8 H×W×3


def judge_labels(listing: Listing, scan: Scan, findings: list[Finding], run_dir: Path, progress=None) -> Judged:
    """Judge the labels of `listing` by the run in `run_dir` (see the module's docstring). `findings`: the doctor's
    findings so far (the twins give the scores without leaked test images). Raises DataError (one line) when the run
    is of the other task or was trained on other classes; CheckpointError when it is not a run."""
    from convscope.loaded import load
    from convscope.run import load_run

    run = load_run(run_dir)
    check_run_fits(run, listing)
    loaded = load(run, device="auto")
    if listing.task == "detection":
        from convscope.diagnosis.labels_detection import judge_boxes

        found, scores, notes = judge_boxes(loaded, listing, scan, findings, progress)
        return Judged(found, scores, notes)
    probs = class_probabilities(loaded, listing, scan, _progress(progress))
    judged = Judged(notes=probs.notes)
    issues = suspicious(probs, listing, judged.notes)
    if issues:
        judged.findings.append(_finding(issues, probs))
        judged.pictures = _pictures(loaded, listing, issues[:PICTURES], judged.notes)
    judged.scores = test_scores(probs, listing, findings, judged.notes)
    return judged


def check_run_fits(run, listing: Listing) -> None:
    """DataError unless the run is of the data set's task and knows exactly its classes, in its order."""
    from convscope.tasks import task_of

    task = task_of(run).name
    if task != listing.task:
        how = "convscope detect train" if task == "detection" else "convscope train or transfer"
        raise DataError(
            f"{run.path}: a {task} run ({how}) cannot judge the labels of {listing.source}, a {listing.task} data "
            f"set; give --run a {listing.task} run"
        )
    if tuple(run.data.classes) != tuple(listing.classes):
        raise DataError(
            f"{run.path}: trained on the classes ({', '.join(run.data.classes)}), but {listing.source} has "
            f"({', '.join(listing.classes)}); give --run a run trained on these classes"
        )


def _progress(progress):
    return None if progress is None else (lambda done, total: progress("labels", done, total))


# -- confident learning -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Issue:
    row: int  # in listing.items
    given: int
    predicted: int
    confidence: float  # the probability of the predicted class
    self_confidence: float  # the probability of the given class: the ranking, lowest first


def suspicious(probs: Probabilities, listing: Listing, notes: list[str]) -> list[Issue]:
    """The label issues cleanlab finds, each group of probabilities (held out, cross-validated) judged on its own,
    worst (lowest self-confidence) first. A group whose accuracy is under STRONG_ENOUGH's bar is not judged (a note
    says why): a weak network disagrees with right labels as often as with wrong ones."""
    labels = np.array([item.label for item in listing.items], dtype=np.int64)
    issues = []
    for rows in _groups(probs, len(listing.classes)):
        weak = _too_weak(probs, labels, rows, len(listing.classes))
        if weak:
            notes.append(weak)
            continue
        for row in rows[_find_issues(labels[rows], probs.values[rows])]:
            p = probs.values[row]
            predicted = int(p.argmax())
            issues.append(Issue(int(row), int(labels[row]), predicted, float(p[predicted]), float(p[labels[row]])))
    return sorted(issues, key=lambda issue: (issue.self_confidence, issue.row))


def _too_weak(probs: Probabilities, labels: np.ndarray, rows: np.ndarray, classes: int) -> str | None:
    """Why the group `rows` is not judged, or None: its accuracy is under halfway between chance (1/classes) and
    100% (2 classes: 75%; 10 classes: 55%)."""
    bar = (1 + 1 / classes) / 2
    accuracy = float((probs.values[rows].argmax(1) == labels[rows]).mean())
    if accuracy >= bar:
        return None
    how = "cross-validated on the run's features" if probs.cross_validated[rows].all() else "of the run"
    return (
        f"labels of {len(rows):,} images not judged: their predictions ({how}) are {accuracy:.1%} right, under "
        f"the {bar:.0%} needed to tell a wrong label from the network's own mistakes (halfway between chance and "
        "100%); train a stronger run"
    )


def _groups(probs: Probabilities, classes: int) -> list[np.ndarray]:
    """Rows judged together: the held-out ones and the cross-validated ones apart, unless either is too small to
    estimate per-class thresholds from (under 5 images per class): then together."""
    held = np.flatnonzero(probs.judged & ~probs.cross_validated)
    crossed = np.flatnonzero(probs.judged & probs.cross_validated)
    if min(len(held), len(crossed)) < 5 * classes:
        together = np.flatnonzero(probs.judged)
        return [together] if len(together) else []
    return [held, crossed]


def _find_issues(labels: np.ndarray, pred_probs: np.ndarray) -> np.ndarray:
    """Positions (into `labels`) of cleanlab's label issues, by self-confidence, lowest first."""
    from cleanlab.filter import find_label_issues

    if len(labels) < 2:
        return np.zeros(0, dtype=np.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "too few examples in class k": a small class is judged all the same
        # n_jobs=1: cleanlab's worker processes would fork this process and its torch thread pools
        found = find_label_issues(labels, pred_probs, return_indices_ranked_by="self_confidence", n_jobs=1)
    return np.asarray(found, dtype=np.int64)


def _finding(issues: list[Issue], probs: Probabilities) -> Finding:
    listing = probs.listing
    classes = listing.classes
    examples = []
    for issue in issues:
        item = listing.items[issue.row]
        why = f"labelled {classes[issue.given]}, the network says {classes[issue.predicted]} ({issue.confidence:.2f})"
        if probs.cross_validated[issue.row]:
            why += ", cross-validated"
        examples.append(Example(item.name, item.split, classes[issue.given], why, score=issue.self_confidence,
                                index=item.index))  # fmt: skip
    per_split: dict[str, int] = {}
    for example in examples:
        per_split[example.split] = per_split.get(example.split, 0) + 1
    breakdown = ", ".join(f"{count} in {split}" for split, count in per_split.items())
    return Finding(
        check="labels",
        kind="suspicious-label",
        title=f"{len(examples)} image(s) whose label the network confidently disagrees with ({breakdown})",
        count=len(examples),
        serious=True,
        examples=tuple(examples),
        advice="look at each, worst first: move a mislabelled file to its class folder, or remove it",
    )


# -- the test score with and without leaked images --------------------------------------------------------------------
def test_scores(probs: Probabilities, listing: Listing, findings: list[Finding], notes: list[str]) -> dict | None:
    """{"test accuracy": a} over the run's test images that were read, and with a twin in train among them,
    {f"test accuracy without the {n} images that have a twin in train": b}; None without test images."""
    test = probs.test & probs.judged
    if not test.any():
        return None
    labels = np.array([item.label for item in listing.items], dtype=np.int64)
    right = probs.values.argmax(1) == labels
    twinned = twinned_rows(listing, findings, probs.test, probs.train_side)
    return with_and_without_twins("test accuracy", lambda rows: float(right[rows].mean()), test, twinned, notes)


# -- class-activation maps of the worst examples ----------------------------------------------------------------------
def _pictures(loaded, listing: Listing, issues: list[Issue], notes: list[str]) -> dict[str, np.ndarray]:
    """example name → uint8 H×W×3: the HiResCAM of the given class and of the predicted class, side by side, each
    over the image as the network takes it."""
    from convscope.inspect.gradcam import gradcam, overlay

    pictures = {}
    for issue in issues:
        item = listing.items[issue.row]
        image = image_of(loaded, listing, item)
        if image is None:
            continue
        x = loaded.tensor(image)
        try:
            maps = [gradcam(loaded.model, x, class_index=k).heatmap for k in (issue.given, issue.predicted)]
        except DataError as err:  # a network without feature maps: nothing to localise
            notes.append(f"no class-activation maps: {err}")
            return {}
        pictures[item.name] = side_by_side([overlay(image, heatmap) for heatmap in maps])
    return pictures


def side_by_side(panels: list[np.ndarray]) -> np.ndarray:
    """uint8 H×W×3 panels in a row, white gaps between, enlarged by a whole factor to at least PICTURE_SIDE high."""
    height = panels[0].shape[0]
    factor = max(1, -(-PICTURE_SIDE // height))
    gap = np.full((height, _GAP, 3), 255, dtype=np.uint8)
    row = np.concatenate([part for panel in panels for part in (panel, gap)][:-1], axis=1)
    return np.ascontiguousarray(row.repeat(factor, axis=0).repeat(factor, axis=1))
