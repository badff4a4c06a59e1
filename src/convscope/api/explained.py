"""convscope.walkthrough (`convscope explain` in a shell) for notebooks: one output value of a convolution or
pooling, step by step, shown as the walk-through's text and its picture (as `convscope explain ... --png` draws it)."""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np

from convscope.explain import Walkthrough, explain_conv, explain_pool, load_filter, load_input, walkthrough_text
from convscope.explain_plot import walkthrough_figure
from convscope.show import Drawable, img_tag

MONOSPACE = "font-family: Menlo, 'DejaVu Sans Mono', Consolas, 'Courier New', monospace; line-height: normal"


class Explained(Drawable):
    """A Walkthrough (`.walkthrough`) that shows itself: its text and its picture; `.save(path)` writes the picture."""

    def __init__(self, walkthrough: Walkthrough):
        self.walkthrough = walkthrough

    def figure(self):
        return walkthrough_figure(self.walkthrough)

    def __repr__(self) -> str:
        return walkthrough_text(self.walkthrough)

    def _repr_html_(self) -> str:
        text = html.escape(walkthrough_text(self.walkthrough))
        # The columns line up only in a monospaced font, which not every notebook's stylesheet gives a <pre> inside
        # an HTML output (nbconvert's lab template does not).
        return f'<pre style="{MONOSPACE}">{text}</pre>' + img_tag(self.figure(), "walk-through", width=900)


def walkthrough(
    op: str = "conv",
    image: str | Path | np.ndarray = "chelsea",
    *,
    filter: str | np.ndarray = "edge-x",
    kind: str = "max",
    size: int | tuple[int, int] = 2,
    stride: int | tuple[int, int] | None = None,
    padding: str | int | tuple[int, int] = "valid",
    at: tuple[int, int] | None = None,
    resize: tuple[int, int] | None = (32, 32),
) -> Explained:
    """One output value of a conv (`op='conv'`: one `filter`, no bias, no activation) or a pool (`op='pool'`: `kind`
    max, min or avg over a `size` window), step by step, as `convscope explain` prints it.

    image: a sample photo's name ('chelsea', 'coffee', …) or a file, turned gray and resized to `resize` (H, W; None
      keeps its size), or an H×W NumPy array used as it is. filter: a name (edge-x, edge-y, blur, sharpen, outline,
      emboss, identity), numbers like '1 0 -1; 2 0 -2; 1 0 -1', or a k×k array. stride: default 1 for conv, the
      window size for pool. at: (row, column) of the output, from 0 (default: the centre). Raises SpecError for
      settings the input cannot take (a window larger than the padded input, …), DataError for an unreadable image.
    """
    if isinstance(image, np.ndarray):
        x, source = np.asarray(image, dtype=np.float64), f"array {image.shape[0]}×{image.shape[1]}"
    else:
        x, source = load_input(str(image), None, resize)
    if op == "conv":
        if isinstance(filter, str):
            kernel, name = load_filter(filter)
        else:
            kernel, name = np.asarray(filter, dtype=np.float64), "custom"
        return Explained(explain_conv(x, kernel, stride or 1, padding, at, source, name))
    if op == "pool":
        return Explained(explain_pool(x, kind, size, stride, padding, at, source))
    from convscope.errors import SpecError

    raise SpecError(f"explain: op must be 'conv' or 'pool'. Received: {op!r}")
