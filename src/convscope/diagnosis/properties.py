"""Image properties: sizes, aspect ratios, modes, EXIF rotations, brightness and contrast; their outliers.

Outliers are judged against the data set's own images (a 32×32 photo is normal in CIFAR-10, tiny among 640×480
ones), with a floor or ceiling that holds for every data set:
- tiny: the longer side under 8 px, or under a quarter of the median longer side (a thin panorama is not tiny: its
  aspect ratio is the outlier);
- huge: more than 16 times the median pixel count (and over a megapixel);
- extreme aspect: the longer side over 3 times the shorter, and over twice the median image's ratio;
- another mode than most images' (gray among RGB, palette, alpha, 16-bit, CMYK);
- near-blank: gray levels with a standard deviation under 3 (one flat colour), or a mean under 12 or over 243 with a
  standard deviation under 8 (nearly black or white: a small bright sandal on black, a plane on a white sky, is not);
- an EXIF orientation other than upright: read upright by convscope, seen sideways by tools that ignore it.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from convscope.diagnosis.listing import Listing
from convscope.diagnosis.model import Example, Finding, Properties
from convscope.diagnosis.scan import Scan
from convscope.diagnosis.twins import FLAT_STD

TINY_PX = 8
TINY_SHARE = 0.25  # of the median longer side
HUGE_TIMES = 16  # the median pixel count
HUGE_FLOOR = 1_000_000  # pixels: never huge below a megapixel
ASPECT_LIMIT = 3.0
DARK, BRIGHT = 12, 243  # mean gray levels
LOW_CONTRAST = 8  # standard deviation of the gray levels under which a dark or bright image is near-blank
GRAY_MODES = ("L", "LA", "1", "I;16", "I;16B", "I", "F")
MODE_NAMES = {
    "L": "gray (L)",
    "LA": "gray with alpha (LA)",
    "1": "black and white (1)",
    "P": "palette (P)",
    "PA": "palette with alpha (PA)",
    "RGB": "RGB",
    "RGBA": "RGB with alpha (RGBA)",
    "CMYK": "CMYK",
    "I;16": "16-bit gray (I;16)",
    "I;16B": "16-bit gray (I;16B)",
    "I": "32-bit integer (I)",
    "F": "32-bit float (F)",
}


def summarise(listing: Listing, scan: Scan) -> Properties | None:
    """The readable images' distributions, all splits together, and per class; None when none could be read."""
    ok = scan.readable
    if not ok.any():
        return None
    w, h = scan.width[ok], scan.height[ok]
    aspect = w / h
    labels = np.array([-1 if item.label is None else item.label for item in listing.items])[ok]
    gray = np.array([mode in GRAY_MODES for mode in scan.modes], dtype=bool)[ok]
    by_class = {}
    for index, name in enumerate(listing.classes):
        mine = labels == index
        if mine.any():
            by_class[name] = {
                "images": int(mine.sum()),
                "median width": float(np.median(w[mine])),
                "median height": float(np.median(h[mine])),
                "gray share": float(gray[mine].mean()),
                "median brightness": float(np.median(scan.mean[ok][mine])),
                "median contrast": float(np.median(scan.std[ok][mine])),
            }
    return Properties(
        widths=_spread(w),
        heights=_spread(h),
        aspects=tuple(round(float(v), 3) for v in (aspect.min(), np.median(aspect), aspect.max())),
        modes=dict(Counter(m for m, keep in zip(scan.modes, ok, strict=True) if keep).most_common()),
        formats=dict(Counter(f for f, keep in zip(scan.formats, ok, strict=True) if keep).most_common()),
        exif_rotated=int(((scan.orientation > 1) & ok).sum()),
        brightness=_percentiles(scan.mean[ok]),
        contrast=_percentiles(scan.std[ok]),
        by_class=by_class,
    )


def _spread(values: np.ndarray) -> tuple[int, int, int]:
    return int(values.min()), int(np.median(values)), int(values.max())


def _percentiles(values: np.ndarray) -> tuple[float, float, float]:
    return tuple(round(float(v), 1) for v in np.percentile(values, [1, 50, 99]))


def find_outliers(listing: Listing, scan: Scan) -> list[Finding]:
    """The findings "tiny", "huge", "aspect", "mode", "exif", "near-blank" (warnings), those with an image."""
    ok = np.flatnonzero(scan.readable)
    if len(ok) == 0:
        return []
    w, h = scan.width.astype(np.int64), scan.height.astype(np.int64)
    short, long = np.minimum(w, h), np.maximum(w, h)
    median_long = float(np.median(long[ok]))
    median_pixels = float(np.median((w * h)[ok]))
    median_ratio = float(np.median((long / np.maximum(short, 1))[ok]))
    common_mode = Counter(scan.modes[i] for i in ok).most_common(1)[0][0]
    rules = {
        "tiny": lambda i: (
            (long[i] < max(TINY_PX, TINY_SHARE * median_long))
            and f"{w[i]}×{h[i]} px (median longer side {median_long:.0f})"
        ),
        "huge": lambda i: (
            (w[i] * h[i] > max(HUGE_TIMES * median_pixels, HUGE_FLOOR))
            and f"{w[i]}×{h[i]} px ({w[i] * h[i] / median_pixels:.0f}× the median pixels)"
        ),
        "aspect": lambda i: (
            (long[i] > ASPECT_LIMIT * short[i] and long[i] / short[i] > 2 * median_ratio)
            and f"{w[i]}×{h[i]} px (ratio {long[i] / short[i]:.1f}:1)"
        ),
        "mode": lambda i: (
            scan.modes[i] != common_mode
            and f"{MODE_NAMES.get(scan.modes[i], scan.modes[i])} among {MODE_NAMES.get(common_mode, common_mode)}"
        ),
        "exif": lambda i: (
            scan.orientation[i] > 1
            and f"EXIF orientation {scan.orientation[i]}: {_TURNS.get(int(scan.orientation[i]), 'turned')}"
        ),
        "near-blank": lambda i: _blank(scan, i),
    }
    findings = []
    for kind, rule in rules.items():
        examples = []
        for i in ok:
            why = rule(i)
            if why:
                item = listing.items[i]
                label = None if item.label is None else listing.classes[item.label]
                examples.append(Example(item.name, item.split, label, why, index=item.index))
        if examples:
            findings.append(_finding(kind, examples, common_mode))
    return findings


_TURNS = {
    2: "mirrored",
    3: "upside down",
    4: "mirrored upside down",
    5: "mirrored, on its side",
    6: "on its side",
    7: "mirrored, on its side",
    8: "on its side",
}


def _blank(scan: Scan, i: int) -> str | bool:
    if scan.std[i] < FLAT_STD:
        return f"one flat colour (gray level {scan.mean[i]:.0f} ± {scan.std[i]:.1f})"
    if scan.std[i] >= LOW_CONTRAST:
        return False
    if scan.mean[i] < DARK:
        return f"nearly black (mean gray level {scan.mean[i]:.0f} ± {scan.std[i]:.1f})"
    if scan.mean[i] > BRIGHT:
        return f"nearly white (mean gray level {scan.mean[i]:.0f} ± {scan.std[i]:.1f})"
    return False


def _finding(kind: str, examples: list[Example], common_mode: str) -> Finding:
    n = len(examples)
    modes = Counter(example.why.split(" among ")[0] for example in examples)
    titles = {
        "tiny": (f"{n} tiny image(s), far smaller than the others", "look at them: upsampled, they hold little"),
        "huge": (f"{n} huge image(s), far larger than the others", "check them: slow to decode, maybe not a photo"),
        "aspect": (f"{n} image(s) with an extreme aspect ratio", "resizing squashes them: crop or pad instead"),
        "mode": (
            f"{n} image(s) not {MODE_NAMES.get(common_mode, common_mode)} like the rest: "
            + ", ".join(f"{count} {name}" for name, count in modes.most_common()),
            "convscope converts them; if one class holds most of them, the network may learn the colour, not the "
            "object",
        ),
        "exif": (
            f"{n} image(s) with an EXIF rotation (read upright by convscope)",
            "tools that ignore EXIF (and some export paths) see them sideways",
        ),
        "near-blank": (
            f"{n} near-blank image(s): flat, nearly black or nearly white",
            "check them: maybe failed captures",
        ),
    }
    title, advice = titles[kind]
    return Finding("properties", kind, title, n, False, tuple(examples), advice)
