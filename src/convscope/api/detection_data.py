"""convscope.lint_detection and convscope.convert_detection: `convscope detect lint` and `convscope detect convert`
from Python. The summary a lint returns shows itself in a notebook (DataSummary._repr_html_: the splits, boxes per
class, notes, warnings and problems)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from convscope.data.detection.convert import ConvertSummary, convert
from convscope.data.detection.summary import DataSummary, lint_dataset
from convscope.out_paths import out_folder


def lint_detection(data: str | Path, data_dir: str | Path | None = None) -> DataSummary:
    """What a detection dataset holds and its label problems, as `convscope detect lint DATA` finds them: every label
    read and every image decoded, nothing trained. `data`: a YOLO folder (data.yaml), a Pascal VOC folder, a COCO
    .json, a TF Object Detection .csv, or split folders of them; `data_dir`: a COCO JSON's or a CSV's image folder
    (default: beside it, or images/).

    Returns the DataSummary: per split images, boxes, boxes per class, images without boxes; its notes (splits drawn
    or missing) and warnings; `problems`, every LabelProblem (file, line, kind, message: rows dropped, images in two
    splits, then the notes, whose `is_note` is True) and `problem_count` (what the CLI exits 1 on). Raises DataError
    when the dataset cannot be read at all (none of the layouts, no data.yaml, bad YAML or JSON, a missing split
    folder)."""
    summary, found = lint_dataset(data, data_dir)
    return replace(summary, problems=tuple(found))


def convert_detection(
    src: str | Path,
    to: str,
    out: str | Path,
    data_dir: str | Path | None = None,
    *,
    seed: int = 0,
    val_fraction: float = 0.1,
) -> ConvertSummary:
    """`convscope detect convert SRC --to TO --out OUT`: the dataset `src` (any layout lint_detection reads) written
    as `to` (yolo, coco, voc, voc-folders, coco-folders or csv) into `out`, a new or empty folder. Boxes stay in the
    images' pixels, classes keep their order, splits are kept, images are copied unchanged; rows the lint drops are
    not written. `seed`, `val_fraction`: a VOC folder without ImageSets is split as training splits it.

    Returns the ConvertSummary (per split images, boxes, classes written; what was dropped; `.line()` says it in one
    line). Raises DataError for a source that cannot be read, an unknown `to` or an `out` that is not new or empty;
    OutputError for an `out` that lies inside a run folder or under a file, or cannot be written (a failure leaves
    nothing there)."""
    folder = out_folder(str(out))  # a device, a path under a file, a read-only folder or a run's: refused here
    return convert(src, to, folder, data_dir, seed=seed, val_fraction=val_fraction)
