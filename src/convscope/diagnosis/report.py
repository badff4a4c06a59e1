"""The doctor's report: OUT/report.html (one offline page: counts first, then a gallery per finding, serious first,
then the notes) and OUT/doctor.json (the whole diagnosis, Diagnosis.as_dict); and the same page, shorter, as a
Jupyter cell shows a Diagnosis (notebook_html). Both are drawn by `render`, from the pieces in report_tiles.

Only the examples shown get a thumbnail (GALLERY per finding on the page, NOTEBOOK in a cell; the rest are in
doctor.json), so the page stays small whatever the data set's size: about 5 KB per shown image.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from pathlib import Path
from typing import Any

from convscope.diagnosis.report_tiles import CSS, escape, example_table, gallery, pictured, prose, score_text, table
from convscope.errors import OutputError
from convscope.files import MARK, atomic_write_text, check_replaceable
from convscope.out_paths import check_file_in_folder

# convscope.diagnosis.model's classes, named for the hints but not imported: model.py imports this module
# (Diagnosis._repr_html_), and an import here, even under TYPE_CHECKING, would close a cycle (tests/test_imports.py).
Diagnosis = Any
Finding = Any

log = logging.getLogger(__name__)

REPORT, SAVED = "report.html", "doctor.json"
GALLERY = 24  # examples shown per finding on the page
NOTEBOOK = 8  # in a notebook's cell
_JSON_MARK = f'{{"generator":"{MARK}"'.encode()  # doctor.json's start, spaces aside, when convscope wrote it


def write_report(diagnosis: Diagnosis, out: str | Path, overwrite: bool = False) -> Path:
    """Write out/report.html and out/doctor.json (each atomically; the folder made when missing) and return the
    page's path. `diagnosis.out` is set to `out` first, so the JSON says where its report is.

    Running again replaces the files convscope wrote there; a file of those names that convscope did not write is
    refused (OutputError, nothing written) unless `overwrite`, as is a place inside a run folder."""
    out = Path(out)
    page, saved = out / REPORT, out / SAVED
    check_file_in_folder(page, overwrite)
    check_file_in_folder(saved, overwrite=True)  # JSON carries no mark the generic check knows: looked at here
    if not overwrite and saved.exists() and not _ours(saved):
        raise OutputError(f"{saved}: exists and was not written by convscope; --overwrite replaces it")
    diagnosis.out = str(out)
    doc = {"generator": MARK} | diagnosis.as_dict()
    text = render(diagnosis, GALLERY, full=True)
    title = f"{escape(_name(diagnosis.source))} — convscope doctor"
    atomic_write_text(
        page,
        f"<!doctype html><html lang=en><head><meta charset=utf-8><meta name=generator content={MARK}>"
        f"<meta name=viewport content='width=device-width, initial-scale=1'><title>{title}</title>"
        f"<style>body {{ margin: 2rem auto; max-width: 1180px; padding: 0 1rem; }}{CSS}</style></head>"
        f"<body>{text}</body></html>\n",
    )
    atomic_write_text(saved, json.dumps(doc, indent=1, ensure_ascii=False, default=_plain) + "\n")
    log.info("doctor report: %s", page)
    return page


def notebook_html(diagnosis: Diagnosis) -> str:
    """What a notebook shows for a Diagnosis: the counts and each finding with its first NOTEBOOK images."""
    return f"<style>{CSS}</style>" + render(diagnosis, NOTEBOOK, full=False)


def render(diagnosis: Diagnosis, shown: int, full: bool) -> str:
    """The report inside `<div class=cs-doctor>`: the header, the counts, (full: the image properties, the stage
    timings, an index of the findings), each finding with up to `shown` examples, the notes."""
    parts = [_header(diagnosis, full)]
    if diagnosis.listing is None and diagnosis.findings:
        parts.append(f"<p class=note>no pictures: this diagnosis was read back from {SAVED}</p>")
    parts += ["<h2>Images per class and split</h2>", _counts(diagnosis)]
    if full:
        parts += [_properties(diagnosis), _timings(diagnosis)]
        if diagnosis.findings:
            parts.append(_index(diagnosis.findings))
    parts += [_finding(diagnosis, i, finding, shown, full) for i, finding in enumerate(diagnosis.findings)]
    if diagnosis.notes:
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{escape(n)}</li>" for n in diagnosis.notes) + "</ul>")
    return "<div class=cs-doctor>" + "".join(parts) + "</div>"


def _header(d: Diagnosis, full: bool) -> str:
    counts = ((len(d.problems), "problem"), (len(d.warnings), "warning"))
    verdict = "".join(f"<span class='level {kind}'>{n} {kind}(s)</span>" for n, kind in counts if n) or (
        "<span class='level clean'>nothing found</span>"
    )
    facts = [("data", d.source), ("layout", d.layout), ("task", d.task), ("classes", len(d.classes))]
    facts += [("run", d.run)] if d.run else []
    facts += [(name, score_text(name, value)) for name, value in (d.scores or {}).items()]
    facts.append(("time", f"{d.seconds:.1f} s"))
    text = " · ".join(f"{escape(k)} <b>{escape(v)}</b>" for k, v in facts)
    made = f"<p class=note>written {dt.datetime.now():%Y-%m-%d %H:%M} by convscope doctor</p>" if full else ""
    return f"<h1>Dataset doctor: {escape(_name(d.source))}</h1><p>{verdict}</p><p class=facts>{text}</p>{made}"


def _counts(d: Diagnosis) -> str:
    """Images per class (rows) and split (columns), then the files listed and read; detection adds boxes."""
    splits = d.splits
    if not splits:
        return "<p class=note>no images were found</p>"
    head = ["class", *(f"{s.name} ({s.folder})" for s in splits)]
    rows = [[name, *(s.per_class.get(name, 0) for s in splits)] for name in d.classes]
    rows.append(["images listed", *(s.files for s in splits)])
    rows.append(["readable", *(s.readable for s in splits)])
    text = table(head, rows)
    if d.task == "detection" and any(s.boxes_per_class for s in splits):
        head = ["class", *(f"{s.name} boxes" for s in splits), *(f"{s.name} box side p10/p50/p90" for s in splits)]
        rows = [
            [name]
            + [(s.boxes_per_class or {}).get(name, 0) for s in splits]
            + [_sizes((s.box_sizes or {}).get(name)) for s in splits]
            for name in d.classes
        ]
        text += "<h3>Boxes per class (box side: √(width·height) in pixels)</h3>" + table(head, rows)
    return text


def _sizes(sizes) -> str:
    return "–" if not sizes else " / ".join(f"{v:.0f}" for v in sizes)


def _properties(d: Diagnosis) -> str:
    p = d.properties
    if p is None:
        return "<h2>Image properties</h2><p class=note>no image could be read</p>"
    rows = [
        ["width (px)", *p.widths],
        ["height (px)", *p.heights],
        ["aspect (width / height)", *(f"{v:.2f}" for v in p.aspects)],
        ["brightness (gray 0–255)", *(f"{v:.1f}" for v in p.brightness)],
        ["contrast (std of gray)", *(f"{v:.1f}" for v in p.contrast)],
    ]
    text = table(["", "min (1st pct)", "median", "max (99th pct)"], rows)
    kinds = [("modes", p.modes), ("formats", p.formats)]
    facts = " · ".join(f"{k} <b>{escape(_mix(v))}</b>" for k, v in kinds) + f" · EXIF-rotated <b>{p.exif_rotated:,}</b>"
    text += f"<p class=facts>{facts}</p><p class=note>brightness and contrast: 1st and 99th percentiles</p>"
    if p.by_class:
        keys = list(dict.fromkeys(k for values in p.by_class.values() for k in values))
        rows = [[name, *(_number(values.get(k), "share" in k) for k in keys)] for name, values in p.by_class.items()]
        text += "<h3>Per class</h3>" + table(["class", *keys], rows)
    return "<h2>Image properties</h2>" + text


def _mix(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} {count:,}" for name, count in sorted(counts.items(), key=lambda kv: -kv[1])) or "–"


def _number(value, share: bool = False) -> str:
    if value is None:
        return "–"
    if share:  # a fraction of the class's images
        return f"{value:.1%}"
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:.2f}" if abs(value) < 10 else f"{value:.1f}"


def _timings(d: Diagnosis) -> str:
    stages = " · ".join(f"{escape(name)} {seconds:.2f} s" for name, seconds in d.stages.items())
    return f"<p class=note>time per stage: {stages or '–'}; in all {d.seconds:.1f} s</p>"


def _index(findings: tuple[Finding, ...]) -> str:
    items = "".join(
        f"<li><a href='#finding-{i}'><span class='level {f.level}'>{f.level}</span>{escape(f.title)}</a></li>"
        for i, f in enumerate(findings)
    )
    return f"<h2>Findings</h2><ul class=index>{items}</ul>"


def _finding(d: Diagnosis, i: int, finding: Finding, shown: int, full: bool) -> str:
    """A finding's section: its level and title, its advice, its first `shown` examples (a gallery of images, or a
    table when they are classes or annotation files), and how many more doctor.json (full: the page) or the
    finding's `examples` (a notebook cell) holds."""
    examples = finding.examples[:shown]
    badge = f"<span class='level {finding.level}'>{finding.level}</span>"
    head = f"<h2 id='finding-{i}'>{badge}{escape(finding.title)}</h2>"
    advice = f"<p class=advice>{prose(finding.advice)}</p>" if finding.advice else ""
    if examples and all(pictured(e) for e in examples):
        body = gallery(d, examples, d.image)
    else:
        body = example_table(examples)
    more = len(finding.examples) - len(examples)
    where = SAVED if full else f"<code>.finding({finding.kind!r}).examples</code>"
    tail = f"<p class=more>… {more:,} more in {where}</p>" if more > 0 else ""
    return f"<section class=finding data-kind='{escape(finding.kind)}'>{head}{advice}{body}{tail}</section>"


def _name(source: str) -> str:
    return Path(source.rstrip("/")).name or source


def _ours(path: Path) -> bool:
    """Whether `path` is a doctor.json that convscope wrote (it begins with convscope's generator key)."""
    try:
        check_replaceable(path)
        with open(path, "rb") as f:
            return b"".join(f.read(64).split()).startswith(_JSON_MARK)
    except (OSError, OutputError):
        return False


def _plain(value):
    """For json.dumps: NumPy numbers (from a scan's columns) as Python numbers."""
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
