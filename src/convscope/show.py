"""How convscope's pictures and tables show themselves in a notebook, without touching the user's matplotlib.

Every picture the library draws is a `Picture`: a `matplotlib.figure.Figure` (made here, never by pyplot, so the
notebook's backend and pyplot's list of open figures are left alone) that Jupyter displays inline through
`_repr_png_` and that saves with `.save(path)`. The HTML helpers build the small tables the objects' `_repr_html_`
methods show (IPython's rich display protocol: https://ipython.readthedocs.io/en/stable/config/integrating.html).
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Iterable
from pathlib import Path

from matplotlib.figure import Figure

DPI = 100  # inline pictures: the size matplotlib's own inline backend uses by default (figsize in inches × 100)


class Picture(Figure):
    """A matplotlib Figure that displays itself inline in Jupyter (PNG) and saves with `.save(path)`."""

    def _repr_png_(self) -> bytes:
        return png_bytes(self)

    def save(self, path: str | Path, **savefig) -> Path:
        """Write the picture to `path` (its suffix picks the format: .png, .jpg, .svg, .pdf; folders made as needed),
        with matplotlib's savefig keywords (dpi, bbox_inches, …); returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.savefig(path, **savefig)
        return path


def new_figure(**kwargs) -> Picture:
    """A Picture with matplotlib's Figure arguments (figsize in inches, dpi, layout, ...)."""
    return Picture(**kwargs)


def png_bytes(fig: Figure, dpi: int | None = None) -> bytes:
    """The figure as PNG bytes, drawn by the Agg renderer that savefig picks itself (no backend is selected)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi or fig.dpi)
    return buffer.getvalue()


def img_tag(fig: Figure, alt: str = "", width: int | None = None) -> str:
    """An <img> with the figure inlined as a base64 PNG (a notebook's HTML output carries no separate files)."""
    data = base64.b64encode(png_bytes(fig)).decode("ascii")
    size = f' width="{width}"' if width else ""
    return f'<img alt="{html.escape(alt)}"{size} src="data:image/png;base64,{data}">'


def table(header: Iterable[str], rows: Iterable[Iterable], right: Iterable[int] = ()) -> str:
    """A plain HTML table; columns whose index is in `right` are right-aligned (numbers)."""
    right = set(right)

    def cell(tag: str, i: int, value) -> str:
        style = ' style="text-align:right"' if i in right else ' style="text-align:left"'
        return f"<{tag}{style}>{html.escape(str(value))}</{tag}>"

    head = "".join(cell("th", i, h) for i, h in enumerate(header))
    body = "".join("<tr>" + "".join(cell("td", i, v) for i, v in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def heading(text: str, detail: str = "") -> str:
    """A bold line, and a lighter detail after it."""
    more = f' <span style="color:#666">{html.escape(detail)}</span>' if detail else ""
    return f"<p><b>{html.escape(text)}</b>{more}</p>"


class Drawable:
    """For result objects with a picture of themselves (`figure()`): shown inline in Jupyter, saved with .save()."""

    def figure(self) -> Picture:
        raise NotImplementedError

    def _repr_png_(self) -> bytes:
        return png_bytes(self.figure())

    def save(self, path: str | Path) -> Path:
        """Write the picture to `path` (.png, .jpg, .svg or .pdf); returns the path."""
        return self.figure().save(path)
