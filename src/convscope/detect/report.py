"""report.html of a detection run: the numbers, the model, the learning curves, precision–recall per class, and test
images with their predicted boxes (ground truth dashed underneath)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from convscope.data.detection.boxes import DetectionSplit
from convscope.detect.draw import draw_detections
from convscope.detect.metrics import DetectionMetrics, plot_pr_curves
from convscope.inspect.html import escape, inline_image, page_header, save_page, section, summary_table
from convscope.plots import plot_curves
from convscope.run import CURVES, PR_CURVES, PREDICTIONS, Run
from convscope.show import save_image

SHOWN = 8  # test images drawn with their detections
MIN_SCORE = 0.3  # detections drawn (mAP counts all of them, down to 0.01)


def write_detection_report(run: Run, metrics: DetectionMetrics, test: DetectionSplit, found: list):
    curves = plot_curves(run.metrics(), run.path / CURVES, title=f"{run.path.name}: learning curves")
    pr = plot_pr_curves(metrics, run.path / PR_CURVES, f"{run.path.name}: precision–recall on the test images")
    samples = save_samples_png(test, found, run.data.classes, run.path / PREDICTIONS)
    sections = [
        _header(run, metrics, len(test)),
        section("Model", summary_table(run)),
        section("Learning curves", inline_image(curves)),
        section("Test results", _ap_table(metrics) + inline_image(pr)),
        section(
            "Predictions on test images",
            f"<p class=note>Boxes with a score ≥ {MIN_SCORE}; the true boxes are dashed white.</p>"
            + inline_image(samples),
        ),
    ]
    return save_page(run, sections)


def save_samples_png(split: DetectionSplit, found: list, classes: tuple[str, ...], path, count: int = SHOWN):
    """The first `count` images of the split with their detections, two rows of tiles side by side."""
    tiles = []
    for i in range(min(count, len(split))):
        boxes, scores, labels = found[i]
        keep = scores >= MIN_SCORE
        tiles.append(
            draw_detections(split.images[i], boxes[keep], scores[keep], labels[keep], classes, split.targets[i].xyxy)
        )
    cols = min(4, len(tiles))
    rows = -(-len(tiles) // cols)
    w, h = tiles[0].size
    sheet = Image.new("RGB", (cols * w + (cols - 1) * 8, rows * h + (rows - 1) * 8), "white")
    for i, tile in enumerate(tiles):
        sheet.paste(tile, ((i % cols) * (w + 8), (i // cols) * (h + 8)))
    return save_image(sheet, path)


def _header(run: Run, m: DetectionMetrics, images: int) -> str:
    scores = [("test mAP@0.5", f"{m.map50:.3f}"), ("mAP@0.5:0.95", f"{m.map50_95:.3f}"), ("test images", f"{images:,}")]
    return page_header(run, scores, run.config.augment or "flip,scale")


def _ap_table(m: DetectionMetrics) -> str:
    rows = "".join(
        f"<tr><td class=l>{escape(n)}</td><td>{_ap(m.per_class_ap50[n])}</td>"
        f"<td>{_ap(m.per_class_ap50_95[n])}</td></tr>"
        for n in m.class_names
    )
    return f"<table><tr><th class=l>class</th><th>AP@0.5</th><th>AP@0.5:0.95</th></tr>{rows}</table>"


def _ap(value: float) -> str:
    return "–" if np.isnan(value) else f"{value:.3f}"
