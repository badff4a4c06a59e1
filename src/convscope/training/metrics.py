"""metrics.csv: one row per epoch, rewritten atomically so a crash never leaves half a row."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from convscope.training.checkpoint import atomic_write_text


def write_metrics_row(path: Path, row: dict[str, float]) -> None:
    """Append `row` (its keys are the columns, in order), dropping rows of the same or later epochs (a resumed run
    redoes those)."""
    rows = []
    if path.exists():
        with path.open(newline="") as f:
            rows = [r for r in csv.DictReader(f) if int(float(r["epoch"])) < row["epoch"]]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(row), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    writer.writerow({k: _fmt(v) for k, v in row.items()})
    atomic_write_text(path, out.getvalue())


def _fmt(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else f"{value:.6g}"
