"""Out-of-sample class probabilities of every image of a listing by a classifier's run (see diagnosis/labels.py).

Per split: the images at the run's input, decoded as training decodes them (data.stream.decode_into), from the
decoded-image cache when training (or an earlier diagnosis) put the split there (data/cache.py: a hit decodes
nothing); then the network, in batches, keeping its class probabilities and its penultimate features (the input of
its last dense layer, mirror-averaged as the logits are where the run tests so). Which images the run trained on is
worked out as training split them (the same seeded hold-outs); their probabilities come from a cross-validated
logistic regression on those features instead of the network that memorised them.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from convscope.data import cache
from convscope.data.dataset import per_class_subset, seeded_split
from convscope.data.stream import decode_into, memory_budget
from convscope.diagnosis.listing import Item, Listing
from convscope.diagnosis.scan import Scan
from convscope.layers import Dense
from convscope.loaded import LoadedRun, model_images, with_test_flips

log = logging.getLogger(__name__)
FOLDS = 5  # cross-validation of the training images
TEST_FRACTION = 0.1  # what load_folder holds out for test from a folder without test/ (training passes no other)
_BATCH_BYTES = 4 * 2**20  # uint8 input per forward batch (32×32×3: 1,365 images; 224×224×3: 27)


@dataclass
class Probabilities:
    """One row per listing item."""

    listing: Listing
    values: np.ndarray  # float32 N×classes: out-of-sample class probabilities (zeros where not judged)
    judged: np.ndarray  # bool N: decoded and predicted
    cross_validated: np.ndarray  # bool N: a training image, judged by the cross-validated regression
    test: np.ndarray  # bool N: an image the run's test score is measured on
    train_side: np.ndarray  # bool N: a training image (train/, or what a folder training split itself trains on)
    notes: list[str] = field(default_factory=list)


def class_probabilities(loaded: LoadedRun, listing: Listing, scan: Scan, progress=None) -> Probabilities:
    """The Probabilities of every image of `listing` by the classifier `loaded` (see the module's docstring)."""
    n, classes = len(listing.items), len(listing.classes)
    probs = Probabilities(listing, np.zeros((n, classes), np.float32), *(np.zeros(n, dtype=bool) for _ in range(4)))
    same = _same_data(loaded.run, listing)
    head = _Head(loaded)
    features: dict[int, np.ndarray] = {}  # training rows → penultimate features
    hits = done = 0
    for split in listing.split_names():
        rows = np.array([i for i, item in enumerate(listing.items) if item.split == split], dtype=np.int64)
        kept, chunks, hit = _split_images(loaded, listing, scan, rows)
        hits += len(rows) if hit else 0
        trained, test = _roles(loaded.run, listing, split, kept, same)
        probs.test[test] = True
        if split in ("train", "all"):  # the images a test image's twin may be among (all: less the test hold-out)
            probs.train_side[np.setdiff1d(kept, test)] = True
        is_trained = np.zeros(n, dtype=bool)
        is_trained[trained] = True
        for chunk_rows, images in chunks:
            p, f = head(images)
            probs.values[chunk_rows], probs.judged[chunk_rows] = p, True
            for row, vector in zip(chunk_rows[is_trained[chunk_rows]], f[is_trained[chunk_rows]], strict=True):
                features[int(row)] = vector
            done += len(chunk_rows)
            if progress:
                progress(done, n)
    crossed = np.array(sorted(features), dtype=np.int64)
    if len(crossed) >= 2 * FOLDS:
        labels = np.array([listing.items[row].label for row in crossed], dtype=np.int64)
        stacked = np.stack([features[row] for row in crossed])
        probs.values[crossed] = cross_validate(stacked, labels, classes, FOLDS, loaded.run.config.seed)
        probs.cross_validated[crossed] = True
    elif len(crossed):  # too few to cross-validate: the memorised predictions would hide every error
        probs.judged[crossed] = False
    probs.notes += _notes(loaded, probs, same, hits, head.width)
    return probs


def _notes(loaded, probs: Probabilities, same: bool, hits: int, width: int) -> list[str]:
    held = int((probs.judged & ~probs.cross_validated).sum())
    crossed = int(probs.cross_validated.sum())
    notes = [
        f"labels judged by {loaded.run.path}: {held:,} images it did not train on by its network"
        + (
            f", {crossed:,} training images by {FOLDS}-fold cross-validated logistic regression on its {width} "
            "penultimate features"
            if crossed
            else ""
        )  # fmt: skip
        + "; ranked by cleanlab's confident learning (self-confidence)"
    ]
    if not same:
        notes.append(f"the run was trained on {loaded.run.config.data}: every image here is new to it")
    unjudged = len(probs.judged) - int(probs.judged.sum())
    if unjudged:
        notes.append(f"{unjudged:,} image(s) not judged (unreadable, or too few training images to cross-validate)")
    if hits:
        notes.append(f"{hits:,} images came from the decoded-image cache (no decoding)")
    return notes


def _same_data(run, listing: Listing) -> bool:
    """Whether the run was trained on this very data set (then its training images are cross-validated)."""
    if listing.arrays is not None:
        return run.config.data == listing.source
    try:
        return Path(run.config.data).resolve() == Path(listing.source).resolve()
    except OSError:
        return False


class _Rows:
    """Listing rows with their labels, split as training splits a Split (seeded_split, per_class_subset)."""

    def __init__(self, rows: np.ndarray, labels: np.ndarray):
        self.rows, self.labels = rows, labels

    def __len__(self) -> int:
        return len(self.rows)

    def take(self, index: np.ndarray) -> _Rows:
        return _Rows(self.rows[index], self.labels[index])


def _roles(run, listing: Listing, split: str, kept: np.ndarray, same: bool) -> tuple[np.ndarray, np.ndarray]:
    """(rows the run trained on, rows its test score is measured on) among a split's decoded rows, in the order and
    with the seeds training used (data.folder.load_folder, tasks' train_and_val, per_class)."""
    none = np.zeros(0, dtype=np.int64)
    if not same:
        return none, (kept if split == "test" else none)
    if split == "test":
        return none, kept
    if split not in ("train", "all"):
        return none, none
    config = run.config
    rows = _Rows(kept, np.array([listing.items[row].label for row in kept], dtype=np.int64))
    test = none
    if split == "all":  # a folder training split itself: test first, then val, both seeded (load_folder)
        rows, held = seeded_split(rows, TEST_FRACTION, config.seed)
        test = held.rows
        if config.val_fraction > 0:
            rows, _ = seeded_split(rows, config.val_fraction / (1 - TEST_FRACTION), config.seed + 1)
    elif listing.arrays is None and "val" not in listing.split_names() and config.val_fraction > 0:
        rows, _ = seeded_split(rows, config.val_fraction, config.seed + 1)  # load_folder's val from train/
    if config.per_class is not None:
        rows = per_class_subset(rows, config.per_class, config.seed)
    if listing.arrays is not None and "val" not in listing.split_names() and config.val_fraction > 0:
        rows, _ = seeded_split(rows, config.val_fraction, config.seed)  # the task's hold-out (train_and_val)
    return np.sort(rows.rows), np.sort(test)


# -- images ---------------------------------------------------------------------------------------------------------
def _split_images(loaded: LoadedRun, listing: Listing, scan: Scan, rows: np.ndarray):
    """(the split's rows that decode, an iterator of (rows, uint8 images at the run's input) batches, whether they
    came from the cache)."""
    h, w, c = loaded.input
    step = max(1, _BATCH_BYTES // (h * w * c))
    if listing.arrays is not None:
        split = listing.items[rows[0]].split
        array = listing.arrays[split]

        def built_in():
            for start in range(0, len(rows), step):
                part = rows[start : start + step]
                images = array[[listing.items[row].index for row in part]]
                yield part, model_images(loaded.run, images, listing.source)

        return rows, built_in(), False
    root = Path(listing.source).resolve()  # once: resolving each of 60,000 paths took 5 s
    files = [(_file(listing, listing.items[row], root), int(listing.items[row].label)) for row in rows]
    if len(rows) * h * w * c > memory_budget(None):  # larger than memory: decoded batch by batch, not cached
        kept = rows[scan.readable[rows]]
        return kept, _streamed(kept, [_file(listing, listing.items[row], root) for row in kept], (h, w, c), step), False
    key = cache.key(files, (h, w), c)
    hit = cache.load(key)
    if hit is not None:
        images, _, skipped = hit
    else:
        images, skipped = _decode(files, (h, w, c))
        labels = np.array([label for (path, label) in files if str(path) not in {p for p, _ in skipped}])
        cache.store(key, images, labels.astype(np.int64), skipped)
    failed = {path for path, _ in skipped}
    kept = np.array([row for row, (path, _) in zip(rows, files, strict=True) if str(path) not in failed], np.int64)
    chunks = ((kept[i : i + step], images[i : i + step]) for i in range(0, len(kept), step))
    return kept, chunks, hit is not None


def _file(listing: Listing, item: Item, root: Path | None = None) -> Path:
    """The item's file as training names it: under the data set's folder resolved (TrainConfig.with_absolute_paths;
    `root`, when the caller resolved it already), so the decoded-image cache's key is training's."""
    return (root or Path(listing.source).resolve()) / item.name


def _decode(files: list[tuple[Path, int]], shape: tuple[int, int, int]) -> tuple[np.ndarray, list[tuple[str, str]]]:
    """Every file decoded to `shape` with threads (Pillow releases the GIL), as training does (data/folder.py):
    (the images that decoded, in order; (path, reason) for the others)."""
    out = np.empty((len(files), *shape), dtype=np.uint8)
    with ThreadPoolExecutor(max_workers=os.cpu_count()) as pool:
        reasons = list(pool.map(lambda i: decode_into(out, i, files[i][0], shape[2]), range(len(files))))
    kept = [i for i, reason in enumerate(reasons) if reason is None]
    skipped = [(str(files[i][0]), reason) for i, reason in enumerate(reasons) if reason is not None]
    return out[kept] if len(kept) < len(files) else out, skipped


def _streamed(rows: np.ndarray, paths: list[Path], shape: tuple[int, int, int], step: int):
    for start in range(0, len(rows), step):
        part = paths[start : start + step]
        images, skipped = _decode([(path, 0) for path in part], shape)
        failed = {path for path, _ in skipped}
        yield np.array([r for r, p in zip(rows[start : start + step], part, strict=True) if str(p) not in failed],
                       dtype=np.int64), images  # fmt: skip


def image_of(loaded: LoadedRun, listing: Listing, item: Item) -> np.ndarray | None:
    """One item's image as the run's network takes it (uint8 H×W×C), or None when it cannot be read."""
    if listing.arrays is not None:
        return model_images(loaded.run, listing.arrays[item.split][item.index][None], listing.source)[0]
    out = np.empty((1, *loaded.input), dtype=np.uint8)
    return None if decode_into(out, 0, _file(listing, item), loaded.input[2]) else out[0]


# -- the network ----------------------------------------------------------------------------------------------------
class _Head:
    """The run's network as its test runs it, giving class probabilities and the penultimate features."""

    def __init__(self, loaded: LoadedRun):
        self.loaded = loaded
        self.children = list(loaded.fused.children())
        dense = [i for i, module in enumerate(self.children) if isinstance(module, Dense)]
        self.last = dense[-1] if dense else len(self.children) - 1  # its input: the features
        self.flip = with_test_flips(loaded.fused, loaded.run.config) is not loaded.fused
        self.width = 0

    @torch.inference_mode()
    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """uint8 N×H×W×C → (float32 N×classes probabilities, float32 N×F features)."""
        x = self.loaded.tensor(images)
        logits, features = self._forward(x)
        if self.flip:  # as MirrorAverage: the logits (and here the features) of the mirror image averaged in
            mirror_logits, mirror_features = self._forward(x.flip(3))
            logits, features = (logits + mirror_logits) / 2, (features + mirror_features) / 2
        self.width = features.shape[1]
        return torch.softmax(logits.float(), 1).cpu().numpy(), features.float().cpu().numpy()

    def _forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.loaded.model.check_input(x)
        features = x
        for i, module in enumerate(self.children):
            if i == self.last:
                features = x
            x = module(x)
        return x, features.flatten(1)


# -- cross-validation -------------------------------------------------------------------------------------------------
def cross_validate(
    features: np.ndarray, labels: np.ndarray, classes: int, folds: int = FOLDS, seed: int = 0, steps: int = 300
) -> np.ndarray:
    """Out-of-fold class probabilities (float32 N×classes) of a multinomial logistic regression on `features`
    (float32 N×F), K-fold (seeded, stratified: each class dealt round-robin over the folds in a seeded order).
    Features are standardised; L-BFGS minimises the mean cross-entropy plus Σ w² / 2N, scikit-learn's default
    penalty (C = 1): on 72 separable points a 100 times weaker one fitted the noise (93% right out of fold, not 98%)."""
    x = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))
    x = (x - x.mean(0)) / x.std(0).clamp(min=1e-6)
    y = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    fold = np.zeros(len(labels), dtype=np.int64)
    rng = np.random.default_rng(seed)
    for label in np.unique(labels):
        index = rng.permutation(np.flatnonzero(labels == label))
        fold[index] = (np.arange(len(index)) + rng.integers(folds)) % folds
    out = np.zeros((len(labels), classes), dtype=np.float32)
    for k in range(folds):
        train, held = fold != k, fold == k
        if held.any() and train.any():
            out[held] = _fit(x[train], y[train], classes, steps)(x[held])
    return out


def _fit(x: torch.Tensor, y: torch.Tensor, classes: int, steps: int):
    """A multinomial logistic regression fitted by L-BFGS; returns features → probabilities (NumPy)."""
    weight = torch.zeros(x.shape[1], classes, requires_grad=True)
    bias = torch.zeros(classes, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], lr=1, max_iter=steps, history_size=10, line_search_fn="strong_wolfe")

    def loss() -> torch.Tensor:
        optimizer.zero_grad()
        value = torch.nn.functional.cross_entropy(x @ weight + bias, y) + (weight**2).sum() / (2 * len(y))
        value.backward()
        return value

    with torch.enable_grad():
        optimizer.step(loss)

    def predict(held: torch.Tensor) -> np.ndarray:
        with torch.no_grad():
            return torch.softmax(held @ weight + bias, dim=1).numpy()

    return predict
