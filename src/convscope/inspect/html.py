"""The pieces report.html pages are built of, shared by the classifier's report (convscope.classify.report) and the
detector's (convscope.detect.report): the style, escaping, inlined pictures, sections, the header line of facts, the
model table, and writing the page.

It sits below both reports so that neither imports the other.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import logging
from pathlib import Path

from convscope.files import MARK, atomic_write_text
from convscope.run import REPORT, Run
from convscope.shapes import infer
from convscope.summary import COLUMNS, summary_rows

# The name it had when this lived in convscope.classify.report: logging settings that name it keep working.
log = logging.getLogger("convscope.report")

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 1180px;
       padding: 0 1rem; color: #1d1d1f; line-height: 1.45; }
h1 { margin-bottom: 0.2rem; } h2 { margin-top: 2.4rem; border-bottom: 1px solid #ddd; padding-bottom: 0.3rem; }
.facts { color: #555; } .facts b { color: #1d1d1f; }
table { border-collapse: collapse; font-size: 0.92rem; margin: 0.8rem 0; }
th, td { padding: 0.28rem 0.7rem; border-bottom: 1px solid #e5e5e5; text-align: right; }
th { background: #f5f5f7; } td.l, th.l { text-align: left; }
img { max-width: 100%; height: auto; border: 1px solid #eee; }
.note { color: #666; font-size: 0.9rem; }
"""


def save_page(run: Run, sections: list[str]) -> Path:
    """run/report.html: one self-contained page of `sections` (HTML), pictures inlined."""
    page = (
        f"<!doctype html><html lang=en><head><meta charset=utf-8><meta name=generator content={MARK}>"
        f"<title>{escape(run.path.name)} — convscope report</title><style>{CSS}</style></head>"
        f"<body>{''.join(sections)}</body></html>\n"
    )
    path = run.path / REPORT
    atomic_write_text(path, page)
    log.info("report: %s", path)
    return path


def escape(text) -> str:
    """`text` (anything, shown with str) safe to put in HTML."""
    return html.escape(str(text))


def inline_image(path: Path, alt: str = "") -> str:
    """A paragraph with the PNG file at `path` inlined as a data URL, so the page needs no files beside it."""
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<p><img alt="{escape(alt or Path(path).stem)}" src="data:image/png;base64,{data}"></p>'


def section(title: str, body: str) -> str:
    """A titled section of the page; `body` is HTML already."""
    return f"<h2>{escape(title)}</h2>{body}"


def page_header(run: Run, scores: list[tuple[str, str]], augmentation: str) -> str:
    """The run's name, then its test `scores` and how it was trained, as one line of facts."""
    results, cfg = run.results(), run.config
    facts = [
        *scores,
        ("epochs", results.get("epochs", "?")),
        ("training time", f"{results.get('train_seconds', float('nan')):.0f} s"),
        ("data", run.data.name),
        ("optimizer", f"{cfg.optimizer}, lr {cfg.learning_rate:g}, {cfg.schedule}, batch {cfg.batch_size}"),
        ("augmentation", augmentation),
        ("seed", cfg.seed),
    ]
    text = " · ".join(f"{escape(k)} <b>{escape(v)}</b>" for k, v in facts)
    made = dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    return f"<h1>{escape(run.path.name)}</h1><p class=facts>{text}</p><p class=note>written {made} by convscope</p>"


def summary_table(run: Run) -> str:
    """The run's network layer by layer (as `convscope summary` prints it) as an HTML table, and its totals."""
    report = infer(run.spec)
    align = [" class=l" if justify == "left" else "" for _, justify in COLUMNS]
    head = "".join(f"<th{a}>{escape(h)}</th>" for a, (h, _) in zip(align, COLUMNS, strict=True))
    rows = "".join(
        "<tr>" + "".join(f"<td{a}>{escape(cell)}</td>" for a, cell in zip(align, row, strict=True)) + "</tr>"
        for row in summary_rows(report)
    )
    totals = f"<p>Total params <b>{report.params:,}</b> · multiply-adds per image <b>{report.macs:,}</b></p>"
    return f"<table><tr>{head}</tr>{rows}</table>{totals}"
