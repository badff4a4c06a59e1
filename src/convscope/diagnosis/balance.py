"""Balance: images (for detection also boxes and box sizes) per class and split; classes a split lacks.

- a class with no image (detection: no box) in a split that has others is a problem: it is never trained on, or
  never scored;
- a class with under a tenth of the largest class's training images (detection: boxes) is a warning: the network
  sees it rarely and the mean accuracy hides it.
"""

from __future__ import annotations

import numpy as np

from convscope.diagnosis.listing import Listing
from convscope.diagnosis.model import Example, Finding, SplitCounts
from convscope.diagnosis.scan import Scan

MINORITY_SHARE = 0.1  # of the largest class's count


def _where(example: Example) -> str:
    if example.label is None:
        return f"every class in {example.split} (no readable image)"
    return f"{example.label} in {example.split}" if example.split else f"{example.label} in every split"


def split_counts(listing: Listing, scan: Scan) -> tuple[SplitCounts, ...]:
    """Each split's counts, readable images only (see SplitCounts)."""
    out = []
    for split in listing.split_names():
        rows = [i for i, item in enumerate(listing.items) if item.split == split]
        readable = [i for i in rows if scan.reasons[i] is None]
        per_class = dict.fromkeys(listing.classes, 0)
        boxes_per_class, sizes = None, None
        if listing.task == "detection":
            boxes_per_class = dict.fromkeys(listing.classes, 0)
            side: dict[str, list[float]] = {name: [] for name in listing.classes}
            for i in readable:
                boxes = listing.items[i].boxes
                if boxes is None:
                    continue
                for index in set(boxes.classes.tolist()):
                    per_class[listing.classes[index]] += 1
                wh = boxes.xyxy[:, 2:] - boxes.xyxy[:, :2]
                for index, (bw, bh) in zip(boxes.classes.tolist(), wh.tolist(), strict=True):
                    boxes_per_class[listing.classes[index]] += 1
                    side[listing.classes[index]].append(float(np.sqrt(max(bw, 0) * max(bh, 0))))
            sizes = {
                name: tuple(round(float(v), 1) for v in np.percentile(values, [10, 50, 90]))
                for name, values in side.items()
                if values
            }
        else:
            for i in readable:
                per_class[listing.classes[listing.items[i].label]] += 1
        out.append(
            SplitCounts(
                split, listing.folders.get(split, ""), len(rows), len(readable), per_class, boxes_per_class, sizes
            )
        )
    return tuple(out)


def find_imbalance(listing: Listing, splits: tuple[SplitCounts, ...]) -> list[Finding]:
    """The findings "missing-class" (a problem) and "imbalance" (a warning), those with a class."""
    detection = listing.task == "detection"
    what = "boxes" if detection else "images"
    missing = []
    for split in splits:
        counts = split.boxes_per_class if detection else split.per_class
        if split.files and not split.readable:  # every class is missing from it: said once
            missing.append(Example(split.folder, split.name, None, f"no readable image in {split.name}"))
            continue
        if not counts:
            continue
        for name, count in counts.items():
            if count == 0:
                missing.append(Example(split.folder, split.name, name, f"no {what} of class {name} in {split.name}"))
    nowhere = {e.label for e in missing if e.label} - {
        name for split in splits for name, count in (split.boxes_per_class if detection else split.per_class).items()
        if count
    }  # fmt: skip
    if nowhere:  # one line a class, not one a split: it has nothing anywhere
        missing = [e for e in missing if e.label not in nowhere] + [
            Example(name, "", name, f"class {name} has no readable {what} in any split (its folders are empty or "
                    "hold only unreadable files)")
            for name in sorted(nowhere)
        ]  # fmt: skip
    findings = []
    if missing:
        names = ", ".join(_where(e) for e in missing[:6]) + (", …" if len(missing) > 6 else "")
        findings.append(
            Finding(
                "balance",
                "missing-class",
                f"{len(missing)} class(es) missing from a split: {names}",
                len(missing),
                True,
                tuple(missing),
                "add images of the class to that split, or leave the class out everywhere",
            )
        )
    training = next((s for s in splits if s.name in ("train", "all")), None)
    counts = None if training is None else (training.boxes_per_class if detection else training.per_class)
    if counts and max(counts.values()) > 0:
        largest = max(counts.values())
        few = sorted((count, name) for name, count in counts.items() if 0 < count < MINORITY_SHARE * largest)
        if few:
            biggest = max(counts, key=counts.get)
            examples = tuple(
                Example(
                    training.folder,
                    training.name,
                    name,
                    f"{count:,} training {what}, {count / largest:.1%} of {biggest}'s {largest:,}",
                    score=count / largest,
                )
                for count, name in few
            )
            listed = ", ".join(f"{name} ({count:,})" for count, name in few)
            findings.append(
                Finding(
                    "balance",
                    "imbalance",
                    f"{len(few)} class(es) with under a tenth of the largest class's "
                    f"training {what}: {listed} against {biggest} ({largest:,})",
                    len(few),
                    False,
                    examples,
                    "gather more of them, or weigh them more (class weights, oversampling); judge per-class "
                    "numbers, not the mean",
                )
            )
    return findings
