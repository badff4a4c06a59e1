"""Boxes drawn on images as people check detections: a coloured box per class, its name and score on a label.

Pictures are made to be looked at whole (fit to the screen): a small image is enlarged by a whole factor towards
MIN_SIDE pixels (nearest neighbour, so its pixels stay visible: a 128×128 scene becomes 384×384) and a photo is shrunk
to MAX_SIDE pixels on its longer side (a 12-megapixel phone photo becomes 2000×1500, about what a screen shows, and
its file stays small). Line width and label size grow with the picture: the label type is 1/60 of its longer side
(33 px on a 2000-pixel picture, about 20 px when that is seen fit to a laptop screen). A label sits above its box, or
inside its top, below it or inside its bottom when a better box's label already took that place, and is moved left
or up so that it is never cut off by the picture's edge.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

# Ten colours that stay apart on photos and on each other (matplotlib's tab10).
COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
MIN_SIDE = 384  # small images are enlarged (nearest neighbour) to this, so labels are readable and pixels visible
MAX_SIDE = 2000  # larger images are shrunk to this on their longer side (a screen shows no more)
LABEL_HEIGHT = 1 / 60  # label font size as a fraction of the picture's longer side (2000 px → 33 px)


def picture_scale(width: int, height: int) -> float:
    """Picture pixels per image pixel for an image of width×height: the largest whole number (at least 1) that
    keeps the longer side within MIN_SIDE, so 3 for 128 px and 1 from 193 px up to MAX_SIDE; above MAX_SIDE, the
    fraction that brings the longer side to MAX_SIDE (0.5 for 4000 px)."""
    longer = max(width, height)
    if longer > MAX_SIDE:
        return MAX_SIDE / longer
    return float(max(1, MIN_SIDE // longer))


def draw_detections(
    image: np.ndarray,
    boxes: np.ndarray,
    scores: np.ndarray,
    classes: np.ndarray,
    names: tuple[str, ...],
    truth: np.ndarray | None = None,
) -> Image.Image:
    """An RGB picture of `image` with each box drawn and labelled 'name 0.97'.

    image: uint8 H×W×C (C = 1 or 3); boxes: n×4 float, x1, y1, x2, y2 in pixels of `image`; scores: n in [0, 1];
    classes: n int indices into `names`; truth (m×4, same units): ground-truth boxes drawn as thin white dashes
    underneath, to compare. The picture is `image` scaled by `picture_scale` (so its size is not always H×W: a
    4000×3000 photo gives a 2000×1500 picture), and the boxes are scaled with it. Give the boxes best first: they
    are drawn in reverse order, labels after all boxes, so the best label is on top where labels overlap.
    """
    rgb = Image.fromarray(image[:, :, 0] if image.shape[2] == 1 else image).convert("RGB")
    zoom = picture_scale(rgb.width, rgb.height)
    size = (max(1, round(rgb.width * zoom)), max(1, round(rgb.height * zoom)))
    if zoom >= 1:
        rgb = rgb.resize(size, Image.Resampling.NEAREST)
    else:  # shrinking: box-reduce first, then bilinear (antialiased, and 2× faster than Lanczos on 12 megapixels)
        rgb = rgb.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
    draw = ImageDraw.Draw(rgb)
    longer = max(size)
    font = ImageFont.load_default(size=max(11, 4 * round(zoom) + 6, round(longer * LABEL_HEIGHT)))
    width = max(2, round(longer / 500))  # 2 px up to 1000 px, 4 px at 2000
    for box in (truth if truth is not None else np.zeros((0, 4))) * zoom:
        _dashed_rectangle(draw, box, dash=2 * width, width=max(1, width // 2))
    shown = [(tuple(float(v) for v in box), COLORS[int(k) % len(COLORS)], f"{names[int(k)]} {score:.2f}")
             for box, score, k in zip(boxes * zoom, scores, classes, strict=True)]  # fmt: skip
    for box, color, _ in reversed(shown):  # worst first, labels after boxes: the best end up on top
        draw.rectangle(box, outline=color, width=width)
    pad = max(2, round(font.size / 8))
    placed: list[tuple[int, int, int, int]] = []  # best first: a better box's label gets the first choice of place
    for box, _, text in shown:
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        placed.append(label_rect(box, (right - left + 2 * pad, bottom - top + 2 * pad), size, placed))
    for (_, color, text), (lx, ly, lx2, ly2) in reversed(list(zip(shown, placed, strict=True))):
        left, top, *_ = draw.textbbox((0, 0), text, font=font)
        draw.rectangle((lx, ly, lx2 - 1, ly2 - 1), fill=color)
        draw.text((lx + pad - left, ly + pad - top), text, fill=_text_color(color), font=font)
    return rgb


def label_rect(
    box: tuple[float, float, float, float],
    label: tuple[int, int],
    canvas: tuple[int, int],
    taken: list[tuple[int, int, int, int]] | tuple = (),
) -> tuple[int, int, int, int]:
    """Where a label of label = (width, height) pixels goes for box = (x1, y1, x2, y2) on a canvas of (width,
    height) pixels: (x0, y0, x1, y1), right and bottom exclusive, always inside the canvas (a label wider or taller
    than the canvas starts at 0 and is cut).

    Left-aligned with the box, the first of these places that does not overlap a label in `taken`: above the box,
    inside its top, below it, inside its bottom; each moved left and up as far as needed to stay on the canvas, and
    above the box only when it fits there. When every place overlaps, the first.
    """
    (bx1, by1, _bx2, by2), (w, h), (cw, ch) = box, label, canvas
    x = max(0, min(round(bx1), cw - w))
    tops = [round(by1) - h] if round(by1) - h >= 0 else []
    tops += [round(by1), round(by2), round(by2) - h]
    places = [(x, y, x + w, y + h) for y in (max(0, min(top, ch - h)) for top in tops)]
    free = [r for r in places if not any(_overlap(r, t) for t in taken)]
    return (free or places)[0]


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _text_color(color: str) -> str:
    """Black on light label colours (orange, olive, cyan), white on the others: whichever contrasts more."""
    r, g, b = (int(color[i : i + 2], 16) for i in (1, 3, 5))
    return "black" if 0.299 * r + 0.587 * g + 0.114 * b > 140 else "white"


def _dashed_rectangle(draw: ImageDraw.ImageDraw, box: np.ndarray, dash: int = 4, width: int = 1) -> None:
    x1, y1, x2, y2 = (float(v) for v in box)
    for a, b in (((x1, y1), (x2, y1)), ((x2, y1), (x2, y2)), ((x2, y2), (x1, y2)), ((x1, y2), (x1, y1))):
        length = max(abs(b[0] - a[0]), abs(b[1] - a[1]))
        for start in np.arange(0, length, 2 * dash):
            t0, t1 = start / max(length, 1), min(start + dash, length) / max(length, 1)
            draw.line(
                [(a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t) for t in (t0, t1)], fill="white", width=width
            )
