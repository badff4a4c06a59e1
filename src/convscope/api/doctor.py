"""convscope.doctor: `convscope doctor DATA` from Python. The Diagnosis it returns shows itself in a notebook (counts,
then each finding with thumbnails of its images)."""

from __future__ import annotations

from pathlib import Path

from convscope.api.progress import close_bar, open_bar
from convscope.diagnosis.doctor import check_out, diagnose
from convscope.diagnosis.model import Diagnosis


def doctor(
    data: str | Path,
    run: str | Path | None = None,
    *,
    data_dir: str | Path | None = None,
    out: str | Path | None = None,
    progress: bool = True,
) -> Diagnosis:
    """What is wrong with a data set, before it costs a training: files that cannot be read, exact and near
    duplicates within and across splits (leaks), odd image sizes, modes, EXIF rotations and near-blank images, images
    (and boxes) per class and split, and — given a trained `run` folder — labels its predictions confidently disagree
    with (cleanlab's confident learning) and the test score without the test images that have a twin in train.

    data: an image-class folder (root/train/<class>/…, val/, test/, or root/<class>/…), a built-in name
    ("fashion-mnist", "cifar10", …) or a detection data set in any layout `convscope detect lint` reads; data_dir: a
    COCO JSON's image folder, or where a built-in data set is. out: a folder to write report.html and doctor.json
    into (nothing is written without it). progress: a bar per stage (a widget in Jupyter, text elsewhere; tqdm).

    Returns the Diagnosis: `findings` (each with `kind`, `title`, `count`, `serious`, `examples`), `splits`,
    `properties`, `exit_code` (0: nothing serious, 1: problems), `lines()`, `as_dict()`. Each file is read once and
    nothing in the data set is modified. Raises DataError (one line) when the data set cannot be read at all, and
    OutputError for an `out` that cannot be written.
    """
    folder = None
    if out is not None:
        from convscope.out_paths import out_folder

        check_out(out, data)
        folder = out_folder(str(out))  # refused before any work when it cannot be written
    if progress:
        diagnosis = _with_bars(lambda bar: diagnose(data, run, data_dir, bar))
    else:
        diagnosis = diagnose(data, run, data_dir)
    if folder is not None:
        from convscope.diagnosis.report import write_report

        write_report(diagnosis, folder)
    return diagnosis


def _with_bars(work):
    """work(progress) with a bar per stage, each gone once its stage is done (nothing of it stays in a notebook)."""
    bars = {}

    def progress(stage: str, done: int, total: int) -> None:
        if stage not in bars:
            bars[stage] = open_bar(total=total, desc=stage, unit="image", leave=False)
        bars[stage].total = total
        bars[stage].update(done - bars[stage].n)

    try:
        return work(progress)
    finally:
        for bar in bars.values():
            close_bar(bar)
