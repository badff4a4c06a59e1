"""Exact and near duplicates, within a split and across splits (a leak: a test image whose twin is in train puts the
answer in the training data and inflates the test score).

Exact: the same SHA-256 of the file's bytes (of the pixels for built-in arrays). Near: a perceptual hash (pHash,
imagehash: the signs of the 8×8 lowest frequencies of the 2-D DCT of a 32×32 gray copy, Zauner 2010) within
NEAR_BITS of the other's, confirmed by the correlation of the two 16×16 gray thumbnails (≥ NEAR_CORRELATION): a
resized, re-encoded or slightly cropped copy passes both; two different photos rarely pass both. Near-blank images
(every hash of a flat image looks alike) are left to the properties check. Across splits a mirrored copy counts too
(training's flips would show the network the scored image): each image is also compared, mirrored (its hash and
thumbnail of the mirrored picture), with every image of the earlier splits. A copy cropped by more than a few
percent on a side, or rotated, is not found. Where the labels say the images merely look alike (near_bits), the
bits allowed shrink, to none on Fashion-MNIST.

All pairs are compared: the Hamming distances of every pair come from one matrix product of the hashes' bits as
±1 (64 − a·b = 2 × distance), a block of rows at a time (60,000 images: 1.8 billion pairs, about 6 s on 2 cores).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

import numpy as np

from convscope.diagnosis.listing import Item, Listing
from convscope.diagnosis.model import Example, Finding
from convscope.diagnosis.report_tiles import score_text
from convscope.diagnosis.scan import Scan

NEAR_BITS = 10  # pHash bits (of 64) two near duplicates may differ in
NEAR_CORRELATION = 0.92  # and the least correlation of their 16×16 gray thumbnails (chosen on CIFAR-10: see the note)
FLAT_STD = 3.0  # gray levels: below this an image is near-blank, its hash meaningless
CROSS_CLASS_SHARE = 0.02  # of the candidate near pairs whose labels differ, at most (see near_bits)
JUDGED_FROM = 20  # candidate pairs needed to judge that share
SPLIT_ORDER = ("train", "val", "test", "all")  # a later split's image is the one that leaks
TWIN_KINDS = ("leak", "near-leak", "duplicate", "near-duplicate")  # the findings this module makes
_BLOCK = 1024  # rows of the distance matrix computed at once (1024 × 60,000 float32: 245 MB)


def find_twins(listing: Listing, scan: Scan) -> tuple[list[Finding], list[str]]:
    """(the findings "leak", "near-leak", "duplicate", "near-duplicate" that have an image, notes)."""
    exact = _exact_pairs(scan)
    digest = np.array(scan.sha256, dtype="S32")
    near = near_pairs(scan)
    near = near[digest[near[:, 0]] != digest[near[:, 1]]]  # exact copies are counted as such
    bits, notes = near_bits(listing, near)
    near = near[near[:, 2] <= bits]
    if bits >= 0:
        split = np.array([SPLIT_ORDER.index(item.split) for item in listing.items])
        mirrored = mirrored_pairs(scan, split, bits)
        seen = {(i, j) for i, j, _ in near.tolist()} | {(i, j) for i, j, _ in exact}
        mirrored = [(i, j, -1 - d) for i, j, d in mirrored.tolist() if (i, j) not in seen and (j, i) not in seen]
        near = np.concatenate([near, np.array(mirrored, dtype=np.int64).reshape(-1, 3)])  # −1 − d: a mirrored pair
    near_list = [tuple(pair) for pair in near.tolist()]
    findings = [f for f in (*_findings(listing, exact, "exact"), *_findings(listing, near_list, "near")) if f.count]
    conflicting = _conflicting_labels(listing, exact)
    return findings + ([conflicting] if conflicting else []), notes


def _conflicting_labels(listing: Listing, exact: list[tuple[int, int, int]]) -> Finding | None:
    """A problem for the exact copies (the same bytes) that carry different labels: one of the two is wrong."""
    examples = []
    for i, j, _ in exact:
        first, second = _later(listing, i, j)
        if first.label is not None and second.label is not None and first.label != second.label:
            examples.append(_example(listing, second, first, "same bytes", 0))
    if not examples:
        return None
    return Finding(
        "labels",
        "conflicting-labels",
        f"{len(examples)} pair(s) of exact copies (the same bytes) carry different labels: one label of each is wrong",
        len(examples),
        True,
        tuple(examples),
        "keep the copy whose label is right, and remove the other",
    )


def near_bits(listing: Listing, pairs: np.ndarray | list[tuple[int, int, int]]) -> tuple[int, list[str]]:
    """The pHash bits a near copy may differ in for this data set, and a note when it is fewer than NEAR_BITS.

    Calibrated on the labels: copies of one photo carry one label, so among the candidate pairs (within NEAR_BITS and
    NEAR_CORRELATION) the share whose labels differ estimates how many are merely alike. Where it is over
    CROSS_CLASS_SHARE — Fashion-MNIST's silhouettes on black: 17% of the pairs, shirts beside coats, trousers beside
    trousers of other makes — the bits are tightened until it is not (with at least JUDGED_FROM pairs to judge by);
    CIFAR-10's photos: 0.5% at 10 bits. −1 when even identical hashes pair other classes: no near copy is judged.
    Detection data (no label per image) keeps NEAR_BITS."""
    if listing.task != "classification" or len(pairs) < JUDGED_FROM:
        return NEAR_BITS, []
    labels = np.array([-1 if item.label is None else item.label for item in listing.items])
    found = np.asarray(pairs, dtype=np.int64).reshape(-1, 3)
    cross = labels[found[:, 0]] != labels[found[:, 1]]
    share = float(cross.mean())
    for bits in range(NEAR_BITS, -1, -1):
        within = found[:, 2] <= bits
        if within.sum() < JUDGED_FROM or cross[within].mean() <= CROSS_CLASS_SHARE:
            if bits == NEAR_BITS:
                return bits, []
            return bits, [
                f"near copies: pHash within {bits} bits, not {NEAR_BITS}: at {NEAR_BITS}, {share:.0%} of the "
                f"{len(pairs):,} candidate pairs had different labels (this set's images look alike at low "
                "resolution), so only closer pairs count as copies"
            ]
    return -1, [
        f"near copies not judged: even identical pHashes pair images of different labels ({share:.0%} of "
        f"{len(pairs):,} candidate pairs); exact copies still are"
    ]


def _exact_pairs(scan: Scan) -> list[tuple[int, int, int]]:
    """(first, other, 0) for every image whose bytes an earlier one has: one pair per copy, with the group's first."""
    first: dict[bytes, int] = {}
    pairs = []
    for i, (digest, reason) in enumerate(zip(scan.sha256, scan.reasons, strict=True)):
        if reason is None:
            earlier = first.setdefault(digest, i)
            if earlier != i:
                pairs.append((earlier, i, 0))
    return pairs


def near_pairs(scan: Scan) -> np.ndarray:
    """int64 k×3: (i, j, Hamming distance) for i < j, every near pair (see the module docstring)."""
    usable = _usable(scan)
    if len(usable) < 2:
        return np.zeros((0, 3), np.int64)
    signs, thumbs = _signs(scan.phash[usable]), _normalised(scan.thumbs[usable])
    found = []
    for start in range(0, len(usable), _BLOCK):
        # block × (N − start): from this block's first row on, each pair once
        r, c, d = _close(signs[start : start + _BLOCK], signs[start:], thumbs[start : start + _BLOCK], thumbs[start:],
                         NEAR_BITS, upper=True)  # fmt: skip
        found.append(np.stack([usable[r + start], usable[c + start], d], axis=1))
    return np.concatenate(found).astype(np.int64)


def mirrored_pairs(scan: Scan, split: np.ndarray, bits: int = NEAR_BITS) -> np.ndarray:
    """int64 k×3: (i, j, Hamming distance) where image j, mirrored, is a near copy (within `bits`) of image i of an
    earlier split (`split`: each image's position in SPLIT_ORDER)."""
    usable = _usable(scan)
    if len(usable) < 2:
        return np.zeros((0, 3), np.int64)
    signs, thumbs = _signs(scan.phash[usable]), _normalised(scan.thumbs[usable])
    flipped_signs = _signs(scan.phash_mirror[usable])
    flipped_thumbs = _normalised(scan.thumbs[usable][:, :, ::-1])
    found = [np.zeros((0, 3), np.int64)]
    for later in np.unique(split[usable]):
        rows = np.flatnonzero(split[usable] == later)
        earlier = np.flatnonzero(split[usable] < later)
        for start in range(0, len(rows), _BLOCK):
            block = rows[start : start + _BLOCK]
            r, c, d = _close(flipped_signs[block], signs[earlier], flipped_thumbs[block], thumbs[earlier], bits)
            found.append(np.stack([usable[earlier[c]], usable[block[r]], d], axis=1))
    return np.concatenate(found).astype(np.int64)


def _usable(scan: Scan) -> np.ndarray:
    return np.flatnonzero(scan.readable & (scan.std >= FLAT_STD))


def _signs(hashes: np.ndarray) -> np.ndarray:
    """float32 N×64 of ±1: each 64-bit hash's bits, so that a·b = 64 − 2 × their Hamming distance."""
    bits = np.unpackbits(hashes.astype(">u8").view(np.uint8).reshape(-1, 8), axis=1)
    return bits.astype(np.float32) * 2 - 1


def _normalised(thumbs: np.ndarray) -> np.ndarray:
    """float32 N×256: each thumbnail minus its mean, of length 1 (a dot product is their correlation)."""
    flat = thumbs.reshape(len(thumbs), -1).astype(np.float32)
    flat -= flat.mean(axis=1, keepdims=True)
    return flat / np.maximum(np.linalg.norm(flat, axis=1, keepdims=True), 1e-6)


def _close(rows, cols, row_thumbs, col_thumbs, bits: int, upper: bool = False):
    """(row, column, distance) arrays of the near pairs (within `bits`) between two blocks of signs; `upper`: the
    blocks start at the same image, and only pairs above the diagonal count."""
    least = 64 - 2 * bits - 0.5  # agreement a·b = 64 − 2 × distance: compared as it is, no array made from it
    agreement = rows @ cols.T
    r, c = np.nonzero(agreement >= least)
    if upper:
        keep = c > r
        r, c = r[keep], c[keep]
    ok = np.einsum("ij,ij->i", row_thumbs[r], col_thumbs[c]) >= NEAR_CORRELATION
    r, c = r[ok], c[ok]
    return r, c, ((64 - agreement[r, c]) / 2).round().astype(np.int64)


def twinned_rows(listing: Listing, findings: list[Finding], scored: np.ndarray, trained: np.ndarray) -> np.ndarray:
    """bool N: the images of `scored` (bool N over listing.items, e.g. the test split) one of whose twins (exact or
    near, from this module's findings) is an image of `trained` (e.g. the run's training images)."""
    row_of = {item.name: i for i, item in enumerate(listing.items)}
    twinned = np.zeros(len(listing.items), dtype=bool)
    for finding in findings:
        if finding.kind not in TWIN_KINDS:
            continue
        for example in finding.examples:
            a, b = row_of.get(example.name), row_of.get(example.other or "")
            if a is None or b is None:
                continue
            for one, other in ((a, b), (b, a)):
                if scored[one] and trained[other]:
                    twinned[one] = True
    return twinned


def with_and_without_twins(
    name: str, score: Callable[[np.ndarray], float], test: np.ndarray, twinned: np.ndarray, notes: list[str]
) -> dict[str, float]:
    """{name: score over the rows of `test` (bool N)}, and when some of them are `twinned` (bool N) the score without
    those, under "NAME without the N images that have a twin in train" (a note says both): how much a leak inflates
    the test score. score(rows) takes an int array of rows."""
    scores = {name: score(np.flatnonzero(test))}
    n = int((twinned & test).sum())
    if n:
        rest = np.flatnonzero(test & ~twinned)
        key = f"{name} without the {n} images that have a twin in train"
        scores[key] = score(rest) if len(rest) else float("nan")
        notes.append(
            f"{n} of {int(test.sum())} test images have a twin in train: {name} {score_text(name, scores[name])} "
            f"with them, {score_text(name, scores[key])} without them"
        )
    return scores


def _later(listing: Listing, i: int, j: int) -> tuple[Item, Item]:
    """The pair ordered (earlier split's, later split's): the later one is the image that leaks."""
    a, b = listing.items[i], listing.items[j]
    return (a, b) if SPLIT_ORDER.index(a.split) <= SPLIT_ORDER.index(b.split) else (b, a)


def _findings(listing: Listing, pairs: list[tuple[int, int, int]], how: str) -> tuple[Finding, Finding]:
    """(the leak finding, the within-split finding) of exact or near pairs."""
    leaked: dict[str, dict[int, Example]] = defaultdict(dict)  # later split → its leaking images (once each)
    within: list[Example] = []
    for i, j, distance in pairs:
        first, second = _later(listing, i, j)
        mirrored, distance = distance < 0, distance if distance >= 0 else -1 - distance
        why = "same bytes" if how == "exact" else f"pHash {distance} bit{'s' if distance != 1 else ''} apart"
        example = _example(listing, second, first, ("mirrored, " if mirrored else "") + why, distance)
        if first.split == second.split:
            within.append(example)
        else:
            leaked[second.split].setdefault(i if second is listing.items[i] else j, example)
    # closest pairs first (the report shows the first few); within a distance, split by split, in listing order
    leaks = sorted(
        (example for split in SPLIT_ORDER for example in leaked.get(split, {}).values()), key=lambda e: e.score or 0
    )
    breakdown = ", ".join(
        f"{len(found)} {split} image{'s' if len(found) != 1 else ''}" for split, found in leaked.items()
    )
    twin = "exact copies (the same bytes)" if how == "exact" else "near copies"
    leak = Finding(
        check="twins",
        kind="leak" if how == "exact" else "near-leak",
        title=f"{len(leaks)} image(s) are {twin} of images in an earlier split ({breakdown}): a leak that "
        "inflates the score",
        count=len(leaks),
        serious=True,
        examples=tuple(leaks),
        advice="remove the copies from val/test (or from train), so that no scored image was trained on",
    )
    flat = any(example.split == "all" for example in within)
    repeats = Finding(
        check="twins",
        kind="duplicate" if how == "exact" else "near-duplicate",
        title=f"{len(within)} {'exact' if how == 'exact' else 'near'} duplicate pair(s) within a split"
        + (": training's seeded split may put the two copies in train and test" if flat else ""),
        count=len(within),
        serious=flat,
        examples=tuple(sorted(within, key=lambda e: e.score or 0)),
        advice="keep one copy of each: repeats weigh an image twice and, split later, leak",
    )
    return leak, repeats


def _example(listing: Listing, item: Item, twin: Item, why: str, distance: int) -> Example:
    label = None if item.label is None else listing.classes[item.label]
    twin_label = None if twin.label is None else listing.classes[twin.label]
    if label is not None and twin_label is not None and label != twin_label:
        why += f"; labelled {label} and {twin_label}"
    return Example(
        name=item.name,
        split=item.split,
        label=label,
        why=why,
        other=twin.name,
        other_split=twin.split,
        other_label=twin_label,
        score=float(distance),
        index=item.index,
        other_index=twin.index,
    )
