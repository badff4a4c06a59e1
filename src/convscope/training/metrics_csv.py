"""metrics.csv: one row per epoch, a copy of the rows the checkpoint holds, rewritten atomically after each one."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from convscope.files import atomic_write_text


def write_metrics(path: Path, rows: list[dict[str, float]]) -> None:
    """Write `rows` (the first row's keys are the columns, in order) as metrics.csv, replacing it atomically."""
    if not rows:
        path.unlink(missing_ok=True)
        return
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: _fmt(v) for k, v in row.items()} for row in rows)
    atomic_write_text(path, out.getvalue())


def _fmt(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else f"{value:.6g}"
