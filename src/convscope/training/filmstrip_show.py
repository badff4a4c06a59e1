"""The film strip read back: one snapshot (`read_snapshot`, what the studio serves an epoch from) or all of them
(`read_filmstrip`, what `run.filmstrip()` returns: the arrays stacked by epoch, and a picture of them).

>>> strip = read_filmstrip("runs/cifar-3conv")          # doctest: +SKIP
>>> strip.epochs, strip.filters.shape, strip.maps["conv1"].shape   # doctest: +SKIP
((0, 1, 2, ..., 10), (11, 32, 3, 3, 3), (11, 16, 32, 32))

Files are read without following links and bounded in size; the arrays are loaded with allow_pickle=False, and a file
that does not hold what training/filmstrip.py writes is a CheckpointError naming it.
"""

from __future__ import annotations

import io
import os
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from convscope.errors import CheckpointError, DataError
from convscope.run import FILMSTRIP, FILMSTRIP_FILE, PROBE, filmstrip_file
from convscope.show import Drawable, new_figure

MAX_FILE = 16 * 2**20  # bytes: a snapshot or probe larger than this is not one training wrote
MOST_ROWS = 6  # epochs in the overview picture


@dataclass(frozen=True)
class Snapshot:
    """The film strip after `epoch` epochs: the first conv layer's weights, and each conv layer's first maps of the
    probe image as uint8 (scaled per map from low to high)."""

    epoch: int
    filters: np.ndarray  # float32 F×C×kh×kw
    layers: tuple[str, ...]
    shapes: tuple[tuple[int, int, int], ...]  # each layer's whole output, H×W×C
    pixels: dict[str, np.ndarray]  # uint8 k×h×w per layer
    low: dict[str, np.ndarray]  # float32 k
    high: dict[str, np.ndarray]

    def values(self, name: str) -> np.ndarray:
        """Layer `name`'s maps as numbers again (float32 k×h×w), within 1/255 of each map's range."""
        span = (self.high[name] - self.low[name])[:, None, None]
        return self.low[name][:, None, None] + self.pixels[name].astype(np.float32) / 255 * span


def read_bytes_here(folder: Path, name: str) -> bytes:
    """The file `name` of `folder`, when it is a regular file (not a link) of at most MAX_FILE bytes; OSError
    (FileNotFoundError) otherwise."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(folder / name, flags)  # a link → OSError (ELOOP)
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_FILE:
            raise FileNotFoundError(name)
        return f.read(MAX_FILE)


def snapshot_epochs(run_path: str | Path) -> list[int]:
    """The epochs the run's film strip holds, in order ([] when it has none)."""
    folder = Path(run_path) / FILMSTRIP
    if folder.is_symlink() or not folder.is_dir():
        return []
    found = (FILMSTRIP_FILE.fullmatch(p.name) for p in folder.iterdir())
    return sorted(int(m[1]) for m in found if m)


def read_snapshot(run_path: str | Path, epoch: int) -> Snapshot:
    """The snapshot after `epoch` epochs. FileNotFoundError when there is none; CheckpointError when it is damaged."""
    folder = Path(run_path) / FILMSTRIP
    if folder.is_symlink():
        raise FileNotFoundError(FILMSTRIP)
    name = filmstrip_file(epoch)
    data = read_bytes_here(folder, name)
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            layers = tuple(str(n) for n in z["layers"])
            shapes = tuple(tuple(int(v) for v in row) for row in z["shapes"])
            snap = Snapshot(
                epoch=int(z["epoch"]),
                filters=z["filters"].astype(np.float32),
                layers=layers,
                shapes=shapes,
                pixels={n: z[f"maps_{n}"] for n in layers},
                low={n: z[f"low_{n}"].astype(np.float32) for n in layers},
                high={n: z[f"high_{n}"].astype(np.float32) for n in layers},
            )
    except (KeyError, ValueError, TypeError, OSError, zipfile.BadZipFile) as err:
        raise CheckpointError(f"{folder / name}: damaged film strip snapshot ({err})") from None
    good = snap.filters.ndim == 4 and len(shapes) == len(layers) and all(len(s) == 3 for s in shapes)
    good = good and all(p.dtype == np.uint8 and p.ndim == 3 for p in snap.pixels.values())
    if not good or snap.epoch != epoch:
        raise CheckpointError(f"{folder / name}: damaged film strip snapshot (not the arrays training writes)")
    return snap


def read_probe(run_path: str | Path) -> np.ndarray | None:
    """The probe image, uint8 H×W×C (C 1 or 3); None when the run has none."""
    from PIL import Image

    try:
        data = read_bytes_here(Path(run_path) / FILMSTRIP, PROBE)
    except OSError:
        return None
    with Image.open(io.BytesIO(data), formats=["PNG"]) as image:
        array = np.asarray(image.convert("RGB" if image.mode in ("RGB", "RGBA", "P") else "L"))
    return array[:, :, None] if array.ndim == 2 else array


@dataclass(frozen=True)
class Filmstrip(Drawable):
    """A run's film strip: per epoch, the first conv layer's filters and the probe image's maps at each conv layer.

    epochs   the epochs with a snapshot (0: the untrained network)
    filters  float32 E×F×C×kh×kw: the first conv layer's weights at each of them
    maps     per conv layer, float32 E×k×h×w: its first maps of the probe image (values within 1/255 of their range)
    shapes   per conv layer, its whole output H×W×C;  probe: uint8 H×W×C, the image
    """

    path: Path
    epochs: tuple[int, ...]
    layers: tuple[str, ...]
    shapes: dict[str, tuple[int, int, int]]
    filters: np.ndarray
    maps: dict[str, np.ndarray]
    probe: np.ndarray | None

    def __repr__(self) -> str:
        shown = ", ".join(f"{n} {'×'.join(map(str, self.shapes[n]))}" for n in self.layers)
        span = f"epochs {self.epochs[0]}–{self.epochs[-1]}" if len(self.epochs) > 1 else f"epoch {self.epochs[0]}"
        return f"Filmstrip({str(self.path)!r}: {len(self.epochs)} snapshots, {span}; {shown})"

    def figure(self, epoch: int | None = None) -> Figure:
        """The film strip as a picture: a row per epoch (up to MOST_ROWS, evenly chosen, first and last included; or
        the one `epoch`), with the probe image, the first layer's filters, and each conv layer's first maps."""
        if epoch is not None and epoch not in self.epochs:
            raise DataError(f"{self.path}: the film strip has epochs {list(self.epochs)}. Received: {epoch}")
        if epoch is None:
            picks = np.unique(np.linspace(0, len(self.epochs) - 1, min(MOST_ROWS, len(self.epochs))).round())
            rows = [int(i) for i in picks]
        else:
            rows = [self.epochs.index(epoch)]
        columns = 2 + len(self.layers)
        fig = new_figure(figsize=(2.0 * columns, 2.1 * len(rows) + 0.5), layout="constrained")
        grid = fig.subplots(len(rows), columns, squeeze=False)
        first = self.layers[0]
        titles = [
            "probe image",
            f"{first} filters",
            *(f"{n} {'×'.join(map(str, self.shapes[n]))}" for n in self.layers),
        ]
        for r, i in enumerate(rows):
            panels = [self.probe if r == 0 else None, _filter_mosaic(self.filters[i])]
            panels += [_mosaic(_unit(self.maps[n][i])) for n in self.layers]
            for c, (ax, panel) in enumerate(zip(grid[r], panels, strict=True)):
                ax.set_xticks([]), ax.set_yticks([])
                if panel is None:
                    ax.set_axis_off()
                    continue
                gray = panel.ndim == 2 or panel.shape[2] == 1
                shown = panel[..., 0] if panel.ndim == 3 and gray else panel
                cmap = "gray" if c == 0 else "RdBu_r" if c == 1 else "viridis"  # filters: red > 0 > blue
                ax.imshow(shown, cmap=cmap, vmin=0, vmax=1 if c else 255)
                if r == 0:
                    ax.set_title(titles[c], fontsize=9)
                if c == 1:
                    ax.set_ylabel(f"epoch {self.epochs[i]}", fontsize=9)
        fig.suptitle(f"{self.path.name}: watch it learn (each map scaled on its own)", fontsize=10)
        return fig


def read_filmstrip(run_path: str | Path) -> Filmstrip:
    """Every snapshot of the run's film strip, stacked by epoch. DataError when the run has none (trained by an
    earlier convscope, or a network without conv layers of its own); CheckpointError for a damaged file."""
    path = Path(run_path)
    epochs = snapshot_epochs(path)
    if not epochs:
        from convscope.run import load_run

        if not load_run(path).spec.conv_names():
            raise DataError(f"{path}: has no film strip: its network has no conv layer of its own (a pretrained "
                            "base's layers are not saved)")  # fmt: skip
        raise DataError(f"{path}: has no film strip (it is saved while training, from this convscope version on)")
    snaps = [read_snapshot(path, e) for e in epochs]
    last = snaps[-1]
    kept = [s for s in snaps if s.layers == last.layers and s.filters.shape == last.filters.shape]
    maps = {n: np.stack([s.values(n) for s in kept]) for n in last.layers}
    return Filmstrip(
        path=path,
        epochs=tuple(s.epoch for s in kept),
        layers=last.layers,
        shapes=dict(zip(last.layers, last.shapes, strict=True)),
        filters=np.stack([s.filters for s in kept]),
        maps=maps,
        probe=read_probe(path),
    )


def _mosaic(tiles: np.ndarray, gap: float = np.nan) -> np.ndarray:
    """k×h×w (or k×h×w×3) tiles in a square-ish grid with a 1-pixel gap (NaN, drawn blank)."""
    k, h, w = tiles.shape[:3]
    cols = int(np.ceil(np.sqrt(k)))
    rows = -(-k // cols)
    out = np.full((rows * (h + 1) - 1, cols * (w + 1) - 1, *tiles.shape[3:]), gap, dtype=np.float32)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, cols)
        out[r * (h + 1) : r * (h + 1) + h, c * (w + 1) : c * (w + 1) + w] = tile
    return out


def _unit(maps: np.ndarray) -> np.ndarray:
    """Each k×h×w map scaled to 0..1 on its own (a flat map: 0)."""
    low = maps.min(axis=(1, 2), keepdims=True)
    return (maps - low) / np.maximum(maps.max(axis=(1, 2), keepdims=True) - low, 1e-12)


def _filter_mosaic(weights: np.ndarray) -> np.ndarray:
    """F×C×kh×kw weights as one picture: RGB filters as colours (each scaled to 0..1 on its own), else each filter's
    first channel, all on one scale centred on 0 (to 0..1: 0.5 is a zero weight)."""
    if weights.shape[1] == 3:
        low = weights.min(axis=(1, 2, 3), keepdims=True)
        span = np.maximum(weights.max(axis=(1, 2, 3), keepdims=True) - low, 1e-12)
        return np.nan_to_num(_mosaic(((weights - low) / span).transpose(0, 2, 3, 1)), nan=1.0)
    limit = float(np.abs(weights[:, 0]).max()) or 1.0
    return _mosaic(weights[:, 0] / (2 * limit) + 0.5)
