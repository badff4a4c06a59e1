"""The model summary as a table people read: per layer its output shape (H×W×C), params, MACs, receptive field."""

from __future__ import annotations

from rich import box
from rich.table import Table

from convscope.shapes import ShapeReport
from convscope.spec import shape_text


def human(n: float, unit: str = "") -> str:
    """4548608 -> '4.55 M'; small numbers stay exact."""
    for scale, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= scale:
            return f"{n / scale:.3g} {prefix}{unit}"
    return f"{n:g} {unit}".rstrip()


def human_bytes(n: int) -> str:
    for scale, name in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if n >= scale:
            return f"{n / scale:.3g} {name}"
    return f"{n} B"


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


def summary_rows(report: ShapeReport) -> list[tuple[str, ...]]:
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


def summary_table(report: ShapeReport, title: str) -> Table:
    table = Table(title=title, box=box.SIMPLE_HEAD, title_justify="left")
    for header, justify in COLUMNS:
        table.add_column(header, justify=justify, no_wrap=True)
    for row in summary_rows(report):
        table.add_row(*row)
    return table


def totals_lines(report: ShapeReport) -> list[str]:
    return [
        f"Total params: {report.params:,}",
        f"Multiply-adds per image: {report.macs:,} ({human(report.macs)})",
        f"Activation memory per image (float32, input and every layer output): {human_bytes(report.activation_bytes)}",
    ]


def _what(info) -> str:
    activation = getattr(info.layer, "activation", "none")
    return info.label if activation == "none" else f"{info.label}, {activation}"


def formula_lines(report: ShapeReport) -> list[str]:
    """How each layer that changes the spatial size got its output size."""
    return [f"{info.index:>3} {info.name:<10} {info.formula}" for info in report.layers if info.formula]
