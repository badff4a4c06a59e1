"""The model summary as a table people read: per layer its output shape (H×W×C), params, MACs, receptive field.

The same table three ways: a rich Table (`convscope summary`, NetSpec.summary(): text in a terminal, HTML in Jupyter),
and an HTML table (NetSpec and ShapeReport in a notebook). A report is a convscope.shapes.ShapeReport, named and not
imported: shapes.py shows its reports with this module.
"""

from __future__ import annotations

import html
import sys

from rich import box
from rich.console import Console
from rich.table import Table

from convscope.spec_layers import shape_text


def human(n: float, unit: str = "") -> str:
    """4548608 -> '4.55 M'; small numbers stay exact."""
    for scale, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= scale:
            return f"{n / scale:.3g} {prefix}{unit}"
    return f"{n:g} {unit}".rstrip()


def human_bytes(n: float, significant: int | None = None) -> str:
    """Bytes in binary units, one decimal: 39728447488 -> '37.0 GiB', 1536 -> '1.5 KiB', 512 -> '512 B'. With
    `significant` digits instead, as the summary shows its sizes: human_bytes(193536, significant=3) -> '189 KiB'."""
    for scale, name in ((2**40, "TiB"), (2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if n >= scale:
            return f"{n / scale:.{significant}g} {name}" if significant else f"{n / scale:,.1f} {name}"
    return f"{n:.0f} B"


# (header, alignment) of the summary's columns; the CLI table and the HTML report both use them.
COLUMNS = (
    ("#", "right"),
    ("layer", "left"),
    ("what", "left"),
    ("output H×W×C", "right"),
    ("params", "right"),
    ("MACs", "right"),
    ("receptive field", "right"),
)


def summary_rows(report: ShapeReport) -> list[tuple[str, ...]]:  # noqa: F821
    """The summary as text cells, one row for the input and one per layer, in the order of COLUMNS."""
    rows = [("", "input", "", shape_text(report.input_shape), "", "", "")]
    for info in report.layers:
        rf = "whole image" if info.receptive_field is None else shape_text(info.receptive_field)
        rows.append(
            (
                str(info.index),
                info.name,
                _what(info),
                shape_text(info.output_shape),
                f"{info.params:,}",
                f"{info.macs:,}",
                rf,
            )
        )
    return rows


def summary_table(report: ShapeReport, title: str) -> Table:  # noqa: F821
    table = Table(title=title, box=box.SIMPLE_HEAD, title_justify="left")
    for header, justify in COLUMNS:
        table.add_column(header, justify=justify, no_wrap=True)
    for row in summary_rows(report):
        table.add_row(*row)
    return table


def totals_lines(report: ShapeReport) -> list[str]:  # noqa: F821
    memory = human_bytes(report.activation_bytes, significant=3)
    return [
        f"Total params: {report.params:,}",
        f"Multiply-adds per image: {report.macs:,} ({human(report.macs)})",
        f"Activation memory per image (float32, input and every layer output): {memory}",
    ]


def _what(info) -> str:
    activation = getattr(info.layer, "activation", "none")
    return info.label if activation == "none" else f"{info.label}, {activation}"


def formula_lines(report: ShapeReport) -> list[str]:  # noqa: F821
    """How each layer that changes the spatial size got its output size."""
    return [f"{info.index:>3} {info.name:<10} {info.formula}" for info in report.layers if info.formula]


def display_console() -> Console:
    """A console for summaries: the terminal's width in a terminal, 110 columns in a pipe or a file (so the table does
    not wrap differently between machines), HTML in Jupyter (rich finds that out itself)."""
    return Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 110)


def print_summary(report: ShapeReport, title: str, console: Console | None = None) -> None:  # noqa: F821
    """The table and its totals, as `convscope summary` prints them (Keras' model.summary(), for convscope)."""
    console = console or display_console()
    console.print(summary_table(report, title))
    for line in totals_lines(report):
        console.print(line, markup=False)


def summary_html(report: ShapeReport, title: str) -> str:  # noqa: F821
    """The table and its totals as HTML (a notebook shows it): the same cells as the text table."""
    align = [' style="text-align:left"' if justify == "left" else "" for _, justify in COLUMNS]
    head = "".join(f"<th{a}>{_esc(h)}</th>" for a, (h, _) in zip(align, COLUMNS, strict=True))
    rows = "".join(
        "<tr>" + "".join(f"<td{a}>{_esc(cell)}</td>" for a, cell in zip(align, row, strict=True)) + "</tr>"
        for row in summary_rows(report)
    )
    totals = "<br>".join(_esc(line) for line in totals_lines(report))
    return f"<div>{_title_html(title)}<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>{totals}</div>"


def problem_html(title: str, problem: str, text: str) -> str:
    """A network that cannot be summarised, as HTML: why (a SpecError's message), then its one-line form."""
    return f'<div>{_title_html(title)}<p style="color:#b00020">{_esc(problem)}</p><code>{_esc(text)}</code></div>'


def _title_html(title: str) -> str:
    return f"<b>{_esc(title)}</b>" if title else ""


def _esc(text: str) -> str:
    return html.escape(text, quote=False)
