"""Boxes drawn on images as people check detections: a coloured box per class, its name and score on a label."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

# Ten colours that stay apart on photos and on each other (matplotlib's tab10).
COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
MIN_SIDE = 384  # small images are enlarged (nearest neighbour) to this, so labels are readable and pixels visible


def draw_detections(
    image: np.ndarray,
    boxes: np.ndarray,
    scores: np.ndarray,
    classes: np.ndarray,
    names: tuple[str, ...],
    truth: np.ndarray | None = None,
) -> Image.Image:
    """uint8 H×W×C image with boxes (n×4 xyxy pixels of `image`), one label 'name 0.97' each; `truth` (m×4):
    the ground-truth boxes as thin white dashes underneath, to compare."""
    rgb = Image.fromarray(image[:, :, 0] if image.shape[2] == 1 else image).convert("RGB")
    zoom = max(1, MIN_SIDE // max(rgb.size))
    rgb = rgb.resize((rgb.width * zoom, rgb.height * zoom), Image.Resampling.NEAREST)
    draw = ImageDraw.Draw(rgb)
    font = ImageFont.load_default(size=max(11, 4 * zoom + 6))
    for box in (truth if truth is not None else np.zeros((0, 4))) * zoom:
        _dashed_rectangle(draw, box)
    for box, score, k in zip(boxes * zoom, scores, classes, strict=True):
        color = COLORS[int(k) % len(COLORS)]
        x1, y1, x2, y2 = (float(v) for v in box)
        draw.rectangle((x1, y1, x2, y2), outline=color, width=2)
        text = f"{names[int(k)]} {score:.2f}"
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        y = y1 - (bottom - top) - 4 if y1 - (bottom - top) - 4 >= 0 else y1  # above the box, or inside at the top
        draw.rectangle((x1, y, x1 + right - left + 4, y + bottom - top + 4), fill=color)
        draw.text((x1 + 2 - left, y + 2 - top), text, fill="white", font=font)
    return rgb


def _dashed_rectangle(draw: ImageDraw.ImageDraw, box: np.ndarray, dash: int = 4) -> None:
    x1, y1, x2, y2 = (float(v) for v in box)
    for a, b in (((x1, y1), (x2, y1)), ((x2, y1), (x2, y2)), ((x2, y2), (x1, y2)), ((x1, y2), (x1, y1))):
        length = max(abs(b[0] - a[0]), abs(b[1] - a[1]))
        for start in np.arange(0, length, 2 * dash):
            t0, t1 = start / max(length, 1), min(start + dash, length) / max(length, 1)
            draw.line([(a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t) for t in (t0, t1)], fill="white", width=1)
