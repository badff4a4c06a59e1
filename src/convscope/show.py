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

from convscope.errors import OutputError
from convscope.files import MARK, atomic_write_bytes

DPI = 100  # inline pictures: the size matplotlib's own inline backend uses by default (figsize in inches × 100)


class Picture(Figure):
    """A matplotlib Figure that displays itself inline in Jupyter (PNG) and saves with `.save(path)`."""

    def _repr_png_(self) -> bytes:
        return png_bytes(self)

    def save(self, path: str | Path, **savefig) -> Path:
        """Write the picture to `path` (its suffix picks the format: .png, .jpg, .svg, .pdf; folders made as needed),
        with matplotlib's savefig keywords (dpi, bbox_inches, …); returns the path.

        Drawn in memory first, then written atomically (files.atomic_write_bytes): a full disk leaves the previous
        file as it was and no empty one. The file carries convscope's mark (files.written_by_convscope). Raises
        OutputError, one line naming the path, for another suffix or when the file cannot be written."""
        path = Path(path)
        fmt = picture_format(path)
        buffer = io.BytesIO()
        if fmt == "jpeg":  # matplotlib writes no JPEG comment: drawn as PNG, then saved by Pillow with the mark
            self.savefig(buffer, format="png", **savefig)
            from PIL import Image

            buffer.seek(0)
            with Image.open(buffer) as image:
                return save_image(image.convert("RGB"), path)
        metadata = {"png": {"Software": MARK}, "svg": {"Creator": MARK}, "pdf": {"Creator": MARK}}[fmt]
        self.savefig(buffer, format=fmt, metadata=metadata, **savefig)
        atomic_write_bytes(path, buffer.getvalue())
        return path


PICTURE_FORMATS = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".svg": "svg", ".pdf": "pdf"}


def picture_format(path: str | Path) -> str:
    """The format a picture's file name asks for ('png', 'jpeg', 'svg', 'pdf'; any case of suffix); OutputError for
    another suffix or none, naming the path."""
    suffix = Path(path).suffix.lower()
    if suffix not in PICTURE_FORMATS:
        got = f"'{suffix}'" if suffix else "no suffix"
        raise OutputError(f"{path}: a picture's file name ends in .png, .jpg, .svg or .pdf. Received: {got}")
    return PICTURE_FORMATS[suffix]


def save_image(image, path: str | Path, **options) -> Path:
    """Write a Pillow image to `path` (.png or .jpg, with convscope's mark) atomically, as Picture.save does; extra
    `options` go to Pillow's save (quality, compress_level, …). Returns the path; OutputError, one line naming the
    path, for another suffix or when the file cannot be written (the previous file, if any, is left as it was)."""
    from PIL import PngImagePlugin

    path = Path(path)
    fmt = picture_format(path)
    buffer = io.BytesIO()
    if fmt == "png":
        info = PngImagePlugin.PngInfo()
        info.add_text("Software", MARK)
        image.save(buffer, format="PNG", pnginfo=info, **options)
    elif fmt == "jpeg":
        image.save(buffer, format="JPEG", comment=MARK.encode(), **options)
    else:
        raise OutputError(f"{path}: an image of pixels is written as .png or .jpg. Received: '{path.suffix}'")
    atomic_write_bytes(path, buffer.getvalue())
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
