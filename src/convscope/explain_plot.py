"""Draw an explain walk-through: the padded input with the window and the stride's positions, the arithmetic of
that one window, and the output feature map — the textbook pictures of padding and stride, from real numbers."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import MaxNLocator

from convscope.explain import Walkthrough, _fmt
from convscope.show import Picture

PAD_COLOUR = "#cfe3f7"  # light blue: padding cells
WINDOW_COLOUR = "#d62728"  # red: the window / the output value it makes
MAX_NUMBERED = 18  # grids up to this many cells a side get their numbers written in
MAX_MARKED = 4096  # window start positions drawn up to this many (more would be a solid smear)


def save_walkthrough_png(w: Walkthrough, path: str | Path) -> Path:
    """walkthrough_figure saved as a PNG at `path` (1600×660 pixels; folders made as needed); returns the path."""
    return walkthrough_figure(w).save(path)


def walkthrough_figure(w: Walkthrough) -> Figure:
    """Three panels: the padded input (H×W values, padding light blue) with the window in red and where each window
    starts, the arithmetic of that one window (window × filter = products, or the pool), and the output feature map
    with the output cell in red and its size formula.

    Returns a new matplotlib Figure (16×6.6 inches, 100 dpi) with four axes: the three panels and the output's
    colorbar."""
    has_filter = w.filter is not None
    fig = Picture(figsize=(16, 6.6), dpi=100, layout="constrained")
    grid = fig.add_gridspec(1, 3, width_ratios=[1.25, 1.05 if has_filter else 0.6, 1.0])
    _draw_input(fig.add_subplot(grid[0]), w)
    _draw_window(fig.add_subplot(grid[1]), w)
    _draw_output(fig.add_subplot(grid[2]), w)
    what = w.layer.label() + (f", filter {w.filter_name}" if has_filter else "")
    fig.suptitle(f"{what} — output (row {w.at[0]}, column {w.at[1]}) = {_fmt(w.value)}", fontsize=15, weight="bold")
    return fig


def _cells(ax, values: np.ndarray, pad: np.ndarray, cmap: str, vmin: float, vmax: float, numbers: bool) -> None:
    """An image of `values` where padding cells are drawn light blue, with grid lines and (small grids) numbers."""
    shown = np.where(pad | ~np.isfinite(values), np.nan, values)
    colours = matplotlib.colormaps[cmap].with_extremes(bad=PAD_COLOUR)
    ax.imshow(shown, cmap=colours, vmin=vmin, vmax=vmax, interpolation="nearest")
    rows, cols = values.shape
    if max(rows, cols) <= 40:
        ax.set_xticks(np.arange(-0.5, cols, 1), minor=True)
        ax.set_yticks(np.arange(-0.5, rows, 1), minor=True)
        ax.grid(which="minor", color="white", linewidth=0.6)
        ax.tick_params(which="minor", length=0)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    if numbers:
        mid = (vmin + vmax) / 2
        for (r, c), v in np.ndenumerate(values):
            dark = (
                not pad[r, c] and np.isfinite(v) and (v < mid if cmap == "gray" else abs(v - mid) > (vmax - vmin) / 3)
            )
            ax.text(c, r, _fmt(v), ha="center", va="center", fontsize=8, color="white" if dark else "black")


def _draw_input(ax, w: Walkthrough) -> None:
    top, bottom, left, right = w.pads
    pad = np.ones(w.padded.shape, dtype=bool)
    pad[top : top + w.input.shape[0], left : left + w.input.shape[1]] = False
    numbers = max(w.padded.shape) <= MAX_NUMBERED
    _cells(ax, w.padded, pad, "gray", float(w.input.min()), float(w.input.max()), numbers)
    (kh, kw), (sh, sw) = w.layer.size, w.layer.stride
    ho, wo = w.output.shape
    # The stride's positions: where each window the layer reads starts (its top-left cell), one per output value.
    starts_r, starts_c = np.meshgrid(np.arange(ho) * sh, np.arange(wo) * sw, indexing="ij")
    if ho * wo <= MAX_MARKED:
        ax.scatter(
            starts_c.ravel() - 0.3,
            starts_r.ravel() - 0.3,
            s=9 if numbers else 12,
            marker="s",
            color="#ff9f1c",
            edgecolors="black",
            linewidths=0.4,
            zorder=3,
            label=f"where each window starts: {ho}×{wo} positions, every {sh} rows and {sw} columns",
        )
    r0, c0 = w.corner
    ax.add_patch(Rectangle((c0 - 0.5, r0 - 0.5), kw, kh, fill=False, edgecolor=WINDOW_COLOUR, linewidth=3, zorder=4))
    ax.set_title(
        f"input {w.input.shape[0]}×{w.input.shape[1]} padded to {w.padded.shape[0]}×{w.padded.shape[1]}\n"
        f"(blue: padding top {top}, bottom {bottom}, left {left}, right {right}; red: the window)",
        fontsize=11,
    )
    ax.set_xlabel("column (padded)")
    ax.set_ylabel("row (padded)")
    if ho * wo <= MAX_MARKED:
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.09), fontsize=9, frameon=False)


def _draw_window(ax, w: Walkthrough) -> None:
    """The arithmetic of one window, laid out as small grids side by side."""
    ax.set_axis_off()
    kh, kw = w.layer.size
    blocks = [("window", w.window, w.is_padding)]
    if w.filter is not None:
        blocks += [("× filter", w.filter, None), ("= products", w.products, None)]
    gap = 1.2
    x = 0.0
    winner = None
    if w.filter is None and w.layer.kind in ("max", "min"):
        winner = np.unravel_index(np.argmax(w.window) if w.layer.kind == "max" else np.argmin(w.window), w.window.shape)
    for title, values, pad in blocks:
        for (r, c), v in np.ndenumerate(values):
            is_pad = pad is not None and pad[r, c]
            face = PAD_COLOUR if is_pad else ("#fde2e1" if title == "window" else "#f3f3f3")
            won = title == "window" and winner == (r, c)
            edge, width = (WINDOW_COLOUR, 3) if won else ("#555555", 0.8)
            ax.add_patch(
                Rectangle((x + c, r), 1, 1, facecolor=face, edgecolor=edge, linewidth=width, zorder=3 if won else 2)
            )
            ax.text(x + c + 0.5, r + 0.5, _fmt(v), ha="center", va="center", fontsize=max(7, 13 - kw))
        ax.text(x + kw / 2, -0.35, title, ha="center", va="bottom", fontsize=12, weight="bold")
        x += kw + gap
    ax.text(x / 2 - gap / 2, kh + 0.6, _result_text(w), ha="center", va="top", fontsize=12, color=WINDOW_COLOUR)
    ax.set_xlim(-0.3, x - gap + 0.3)
    ax.set_ylim(kh + 1.6, -1.2)
    ax.set_aspect("equal")


def _result_text(w: Walkthrough) -> str:
    if w.filter is not None:
        return f"sum of the {w.products.size} products = {_fmt(w.value)}"
    real = w.window[~w.is_padding]
    if w.layer.kind == "avg":
        return f"mean of {real.size} real values\n= {_fmt(real.sum())} / {real.size} = {_fmt(w.value)}"
    return f"{w.layer.kind} = {_fmt(w.value)}" + ("\n(padding never wins)" if w.is_padding.any() else "")


def _draw_output(ax, w: Walkthrough) -> None:
    out = w.output
    if w.filter is not None:  # signed responses: a diverging map centred on 0, so the sign is visible
        limit = float(np.abs(out).max()) or 1.0
        cmap, vmin, vmax = "RdBu_r", -limit, limit
    else:
        cmap, vmin, vmax = "gray", float(w.input.min()), float(w.input.max())
    numbers = max(out.shape) <= MAX_NUMBERED
    _cells(ax, out, np.zeros(out.shape, dtype=bool), cmap, vmin, vmax, numbers)
    image = ax.get_images()[0]
    bar = ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    bar.set_label("response" if w.filter is not None else "pooled value")
    i, j = w.at
    ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor=WINDOW_COLOUR, linewidth=3))
    ax.set_title(f"output feature map {out.shape[0]}×{out.shape[1]}\nsize: {w.formula}", fontsize=11)
    ax.set_xlabel("column")
    ax.set_ylabel("row")
