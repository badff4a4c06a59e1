"""The pieces the doctor's report is drawn with: its style, thumbnails inlined as data URLs, gallery tiles (one image,
a pair of twins, an image beside its class-activation map, a placeholder for a file with no picture) and tables.

Shared by the written page (report.write_report) and the notebook's display (report.notebook_html): one rendering.
Everything sits inside `<div class=cs-doctor>` and the style is scoped to it, so a notebook's own style is left alone.
"""

from __future__ import annotations

import base64
import html
import io
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from convscope.data.folder import IMAGE_SUFFIXES

# convscope.diagnosis.model's classes, named for the hints but not imported: model.py imports this module
# (Diagnosis._repr_html_), and an import here, even under TYPE_CHECKING, would close a cycle (tests/test_imports.py).
Diagnosis = Any
Example = Any

TILE = 96  # pixels: the longer side of a gallery thumbnail
CONTEXT = 96  # pixels of the image, at least, around a box shown in a tile
UPSCALE_BELOW = 48  # pixels: a smaller image (CIFAR's 32×32) is enlarged by a whole factor, nearest, to be seen
BOX_COLOUR = (230, 40, 40)

CSS = """
.cs-doctor { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; color: #1d1d1f; line-height: 1.45; }
.cs-doctor h1 { margin: 0 0 .2rem; font-size: 1.6rem; }
.cs-doctor h2 { margin-top: 2rem; border-bottom: 1px solid #ddd; padding-bottom: .3rem; font-size: 1.15rem; }
.cs-doctor h3 { margin: 1.2rem 0 .3rem; font-size: 1rem; }
.cs-doctor .facts { color: #555; } .cs-doctor .facts b { color: #1d1d1f; }
.cs-doctor table { border-collapse: collapse; font-size: .9rem; margin: .5rem 0; }
.cs-doctor th, .cs-doctor td { padding: .25rem .65rem; border-bottom: 1px solid #e5e5e5; text-align: right;
  font-variant-numeric: tabular-nums; }
.cs-doctor th { background: #f5f5f7; } .cs-doctor .l { text-align: left; }
.cs-doctor .level { display: inline-block; padding: 0 .5rem; border-radius: .7rem; font-size: .8rem;
  font-weight: 600; margin-right: .4rem; vertical-align: .1rem; }
.cs-doctor .problem { background: #fdecea; color: #b42318; }
.cs-doctor .warning { background: #fff4e5; color: #a15c00; }
.cs-doctor .clean { background: #e8f6ee; color: #157347; }
.cs-doctor .advice { color: #444; margin: .2rem 0 .6rem; }
.cs-doctor .note, .cs-doctor .more { color: #666; font-size: .88rem; }
.cs-doctor .gallery { display: flex; flex-wrap: wrap; gap: 10px; align-items: flex-start; }
.cs-doctor figure.tile { margin: 0; padding: 6px; width: 128px; border: 1px solid #e3e3e8; border-radius: 6px;
  background: #fff; font-size: .75rem; }
.cs-doctor figure.tile.pair { width: 236px; } .cs-doctor figure.tile.cam { width: 332px; }
.cs-doctor .pics { display: flex; gap: 8px; justify-content: center; align-items: flex-end; min-height: 96px; }
.cs-doctor .pic { width: 108px; text-align: center; overflow-wrap: anywhere; }
.cs-doctor .pic img { max-width: 96px; max-height: 96px; image-rendering: pixelated; border: 1px solid #eee;
  display: block; margin: 0 auto 2px; }
.cs-doctor .pic.wide { width: 204px; } .cs-doctor .pic.wide img { max-width: 192px; }
.cs-doctor .none { width: 96px; height: 72px; margin: 0 auto 2px; background: repeating-linear-gradient(45deg,
  #f3f3f5, #f3f3f5 6px, #e9e9ee 6px, #e9e9ee 12px); border: 1px dashed #bbb; color: #777; display: flex;
  align-items: center; justify-content: center; text-align: center; font-size: .7rem; padding: 2px;
  overflow: hidden; overflow-wrap: anywhere; box-sizing: border-box; }
.cs-doctor .name { color: #333; } .cs-doctor .split { color: #777; }
.cs-doctor figcaption { margin-top: 4px; color: #444; text-align: center; overflow-wrap: anywhere; }
.cs-doctor .index a { text-decoration: none; }
.cs-doctor code { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: .88em;
  background: #f2f2f5; border-radius: 3px; padding: 0 .25em; }
"""

Pixels = Callable[[str, str, "int | None"], "np.ndarray | None"]  # (name, split, index) → uint8 H×W×3 or None


def escape(text) -> str:
    """`text` (anything, shown with str) safe inside HTML text and quoted attributes."""
    return html.escape(str(text), quote=True)


def score_text(name: str, value: float) -> str:
    """A score as people read it: an accuracy as a percentage, a mAP as a number from 0 to 1 ("0.803")."""
    return f"{value:.3f}" if "mAP" in name else f"{value:.2%}"


def prose(text) -> str:
    """Advice as HTML: escaped, then each `...` (a command, as Markdown writes one) shown as <code>...</code>."""
    return _TICKED.sub(r"<code>\1</code>", escape(text))


_TICKED = re.compile(r"`([^`]+)`")


def thumbnail(pixels: np.ndarray, box: Sequence[float] | None = None, side: int = TILE) -> Image.Image:
    """uint8 H×W×3 as a gallery thumbnail: shrunk to `side` on its longer side, or enlarged (nearest, a whole factor)
    when tiny, so a 32×32 image shows its pixels. With a `box` (x1, y1, x2, y2 in the image's pixels): the part of
    the image around it (the box and its own size again on every side, at least CONTEXT px across), the box drawn —
    a blood cell is 40 px of a 640-px photo, too small to judge in a 96-px picture of the whole."""
    if box is not None:
        pixels, box = _around(pixels, box)
    height, width = pixels.shape[:2]
    img = Image.fromarray(np.ascontiguousarray(pixels[:, :, :3]))
    longer = max(width, height, 1)
    if longer < UPSCALE_BELOW:
        factor = max(1, side // longer)
        img = img.resize((width * factor, height * factor), Image.Resampling.NEAREST)
    elif longer > side:
        size = (max(1, round(width * side / longer)), max(1, round(height * side / longer)))
        img = img.resize(size, Image.BILINEAR)
    if box is not None:
        sx, sy = img.width / max(width, 1), img.height / max(height, 1)
        x1, y1, x2, y2 = (float(v) for v in box)
        ImageDraw.Draw(img).rectangle((x1 * sx, y1 * sy, x2 * sx, y2 * sy), outline=BOX_COLOUR, width=2)
    return img


def _around(pixels: np.ndarray, box: Sequence[float]) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """The crop of `pixels` around `box` (see thumbnail), and the box in the crop's pixels."""
    height, width = pixels.shape[:2]
    x1, y1, x2, y2 = (float(v) for v in box)
    reach = max(x2 - x1, y2 - y1, CONTEXT / 3)  # around the box on every side
    left, top = max(0, int(x1 - reach)), max(0, int(y1 - reach))
    right, bottom = min(width, int(np.ceil(x2 + reach))), min(height, int(np.ceil(y2 + reach)))
    if right <= left or bottom <= top:  # a box outside the image: the whole image
        return pixels, (x1, y1, x2, y2)
    return pixels[top:bottom, left:right], (x1 - left, y1 - top, x2 - left, y2 - top)


def data_url(img: Image.Image) -> str:
    """A thumbnail as a data URL: PNG when it was enlarged or is small (sharp pixels, few bytes), otherwise JPEG,
    which keeps a photo's 96-pixel thumbnail near 3 KB instead of PNG's 15–20 KB (the page stays small)."""
    out = io.BytesIO()
    if img.width * img.height <= UPSCALE_BELOW * UPSCALE_BELOW or _enlarged(img):
        img.save(out, format="PNG", optimize=True)
        kind = "png"
    else:
        img.save(out, format="JPEG", quality=85)
        kind = "jpeg"
    return f"data:image/{kind};base64,{base64.b64encode(out.getvalue()).decode('ascii')}"


def _enlarged(img: Image.Image) -> bool:
    # An image enlarged with nearest repeats each pixel: its first two columns are equal everywhere.
    pixels = np.asarray(img)
    return pixels.shape[1] > 2 and pixels.shape[0] > 2 and bool((pixels[:, 0] == pixels[:, 1]).all())


def pictured(example: Example) -> bool:
    """Whether the example names an image (a file with an image suffix, or a built-in array's row), not a folder
    (balance) or an annotation file (annotation problems): only those are shown as tiles."""
    if example.index is not None and example.name.endswith("]"):
        return True
    return example.name.lower().endswith(IMAGE_SUFFIXES)


def _picture(
    pixels: np.ndarray | None, name: str, box, missing: tuple[str, str], caption: str = "", side: int = TILE
) -> str:
    """One image with its name under it, or a placeholder: a short word in the box (`missing[0]`), the reason
    (`missing[1]`) as its tooltip; a reason is a sentence and would not fit in 96 pixels."""
    short = name.rsplit("/", 1)[-1]
    if pixels is None:
        word, reason = missing
        shown = f'<div class=none title="{escape(reason)}">{escape(word)}</div>'
    else:
        shown = f'<img alt="{escape(name)}" src="{data_url(thumbnail(pixels, box, side))}">'
    wide = " wide" if side > TILE else ""
    return (
        f'<div class="pic{wide}" title="{escape(name)}">{shown}<span class=name>{escape(caption or short)}</span></div>'
    )


def tile(diagnosis: Diagnosis, example: Example, pixels: Pixels) -> str:
    """A gallery tile: the image (or a placeholder), its twin beside it for a pair, or its class-activation map
    (diagnosis.pictures) beside it; split, label and the one-line `why` under them."""
    first = pixels(example.name, example.split, example.index)
    pics = [_picture(first, example.name, example.box, _missing(diagnosis, example.why))]
    kind = "tile"
    where = _where(example.split, example.label)
    if example.other is not None:
        second = pixels(example.other, example.other_split or example.split, example.other_index)
        pics.append(_picture(second, example.other, None, _missing(diagnosis, "")))
        where = f"{where} ↔ {_where(example.other_split or example.split, example.other_label)}"
        kind = "tile pair"
    elif example.name in diagnosis.pictures:
        cam = diagnosis.pictures[example.name]
        # two maps side by side: twice a tile's width, so each is as large as the image beside them
        caption = "class maps: given | predicted"
        pics.append(_picture(cam, example.name, None, ("", ""), caption=caption, side=2 * TILE))
        kind = "tile cam"
    return (
        f'<figure class="{kind}" data-name="{escape(example.name)}"><div class=pics>{"".join(pics)}</div>'
        f"<figcaption><span class=split>{escape(where)}</span><br>{escape(example.why)}</figcaption></figure>"
    )


def _missing(diagnosis: Diagnosis, why: str) -> tuple[str, str]:
    """A placeholder's word and reason: the file is unreadable (its reason is the tile's caption too), or its
    pixels are not at hand (a diagnosis read back from doctor.json: report.render says so once, above)."""
    if diagnosis.listing is None:
        return "no picture", "no pixels: read back from doctor.json"
    return "unreadable", why or "cannot be read"


def _where(split: str, label: str | None) -> str:
    return f"{split} · {label}" if label else split


def gallery(diagnosis: Diagnosis, examples: Iterable[Example], pixels: Pixels) -> str:
    return "<div class=gallery>" + "".join(tile(diagnosis, e, pixels) for e in examples) + "</div>"


def example_table(examples: Iterable[Example]) -> str:
    """Examples that are not images (a class in a split, an annotation file) as rows: name, split, class, why."""
    rows = "".join(
        f"<tr><td class=l>{escape(e.name)}</td><td class=l>{escape(e.split)}</td>"
        f"<td class=l>{escape(e.label or '')}</td><td class=l>{escape(e.why)}</td></tr>"
        for e in examples
    )
    head = "".join(f"<th class=l>{name}</th>" for name in ("file or folder", "split", "class", "why"))
    return f"<table><tr>{head}</tr>{rows}</table>"


def table(head: Sequence[str], rows: Iterable[Sequence], left: int = 1) -> str:
    """A table: `head` then `rows` (cells shown with str; numbers with thousands separators), the first `left`
    columns aligned left."""

    def cell(i: int, value, tag: str) -> str:
        text = f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else value
        return f"<{tag}{' class=l' if i < left else ''}>{escape(text)}</{tag}>"

    top = "".join(cell(i, h, "th") for i, h in enumerate(head))
    body = "".join("<tr>" + "".join(cell(i, v, "td") for i, v in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><tr>{top}</tr>{body}</table>"
