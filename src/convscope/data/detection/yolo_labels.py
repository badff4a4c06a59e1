"""YOLO label rows: `class cx cy w h` boxes and `class x1 y1 x2 y2 x3 y3 …` polygons (the segmentation format), checked
and turned into normalised x1, y1, x2, y2 boxes; `polygon_note` is the one note saying polygons were read as boxes.

A row is split on any whitespace, so tabs, several spaces, trailing spaces and a CR left by CRLF line ends all separate
(or end) columns. A polygon row (an odd number of columns, at least 7: a class and three or more x y points) becomes
the bounding box of its points — their min and max, as Ultralytics' `segments2boxes` does; then it is checked like a
box. A row of 5 columns is a box; any other count (6, 8, …, or under 5) is a problem.
"""

from __future__ import annotations

import numpy as np

from convscope.data.detection.boxes import EDGE_SLACK, LabelProblem, cut, echo
from convscope.data.detection.reading import duplicate_problems, finite_number

POLYGON_MIN_COLUMNS = 7  # a class and three points


def _is_polygon(columns: int) -> bool:
    return columns >= POLYGON_MIN_COLUMNS and columns % 2 == 1


def _check_row(fields: list[str], n_classes: int, width_px: float, height_px: float, resized: int | None):
    """(kind, message) of the first thing wrong with one label row, or (class, normalised xyxy) when it is valid.

    width_px×height_px: the image size the box ends up at (after letterboxing when `resized`), for the 1-pixel check.
    """
    polygon = _is_polygon(len(fields))
    if len(fields) != 5 and not polygon:
        return "columns", (
            "expected 5 columns (class cx cy w h) or a polygon (class x1 y1 x2 y2 x3 y3 …: an odd number of "
            f"columns, at least {POLYGON_MIN_COLUMNS}), found {len(fields)}"
        )
    values = []
    for text in fields:
        value = finite_number(text)
        if value is None:
            return "number", f"expected a number, found {echo(text)}"
        values.append(value)
    cls = values[0]
    if cls != int(cls):
        return "class", f"class {cut(fields[0])} is not an integer"
    if not 0 <= cls < n_classes:
        written = int(cls) if abs(cls) < 1e15 else cut(fields[0])  # int(1e300) has float's rounding in its digits
        return "class", f"class {written} out of range (0–{n_classes - 1})"
    if polygon:
        xs, ys = values[1::2], values[2::2]
        x1, y1, x2, y2 = min(xs), min(ys), max(xs), max(ys)
        w, h = x2 - x1, y2 - y1
        if w <= 0 or h <= 0:
            return "size", f"zero-size box around the polygon's {len(xs)} points (w {w:.4g}, h {h:.4g})"
    else:
        cx, cy, w, h = values[1:]
        if w <= 0 or h <= 0:
            return "size", f"zero-size box (w {cut(fields[3])}, h {cut(fields[4])})"
        x1, y1, x2, y2 = cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2
    if min(x1, y1) < -EDGE_SLACK or max(x2, y2) > 1 + EDGE_SLACK:
        return "outside", f"coordinates outside [0, 1]: x {x1:.4g} to {x2:.4g}, y {y1:.4g} to {y2:.4g}"
    if w * width_px < 1 or h * height_px < 1:
        after = f" after resizing to {resized} px" if resized else ""
        return "size", f"box under 1 pixel{after} ({w * width_px:.2f}×{h * height_px:.2f} px)"
    xyxy = np.clip(np.array([x1, y1, x2, y2]), 0.0, 1.0)
    return int(cls), xyxy


def parse_labels(
    text: str, shown: str, n_classes: int, width_px: float, height_px: float, resized: int | None
) -> tuple[list[tuple[np.ndarray, int]], list[LabelProblem], list[tuple[str, int]]]:
    """One YOLO label file → its valid rows as (normalised xyxy, class), a problem for every dropped row, and the
    (file, line) of every kept polygon row (for `polygon_note`). `text` as `read_text` gives it (no BOM)."""
    candidates: list[tuple[np.ndarray, int, int]] = []  # (xyxy, class, line) of the valid rows
    problems, polygon_lines = [], set()
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        first, second = _check_row(fields, n_classes, width_px, height_px, resized)
        if isinstance(first, str):
            problems.append(LabelProblem(shown, number, second, first))
            continue
        candidates.append((second, first, number))
        if _is_polygon(len(fields)):
            polygon_lines.add(number)
    # IoU is unchanged by scaling x and y separately, so normalised coordinates give the pixel IoU.
    kept, duplicates = duplicate_problems(
        candidates,
        lambda line, earlier, iou: LabelProblem(
            shown, line, f"duplicate of line {earlier} (IoU {iou:.2f})", "duplicate"
        ),
    )
    problems = sorted(problems + [problem for _, problem in duplicates], key=lambda problem: problem.line)
    rows = [(candidates[i][0], candidates[i][1]) for i in kept]
    polygons = [(shown, candidates[i][2]) for i in kept if candidates[i][2] in polygon_lines]
    return rows, problems, polygons


def polygon_note(where: str, polygons: list[tuple[str, int]]) -> LabelProblem | None:
    """The one note (kind "polygon") for every polygon row read as its box, or None when there were none.

    where: the dataset as shown (its data.yaml); polygons: (label file, line) of each such row, in reading order.
    """
    if not polygons:
        return None
    files = len({path for path, _ in polygons})
    path, line = polygons[0]
    message = (
        f"{len(polygons)} polygon row(s) (YOLO segmentation format: class x1 y1 x2 y2 …) in {files} label file(s) "
        f"read as their bounding boxes (first: {path}, line {line})"
    )
    return LabelProblem(where, None, message, "polygon")
