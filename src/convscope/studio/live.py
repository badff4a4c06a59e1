"""The studio's live part (studio.parts): a training followed while it runs, and its film strip.

    GET /api/runs/{name}/progress               progress.json while the run trains ({} when it does not)
    GET /api/runs/{name}/filmstrip              the film strip: epochs saved, conv layers (H×W×C), the probe image
    GET /api/runs/{name}/filmstrip/{epoch}      one epoch's pictures: the first layer's filters, each layer's maps

The run page (templates/run.html, static/run.js) polls them. They only read the run folder (training writes it:
training/live.py, training/filmstrip.py), through runs.run_folder's guard, without following a link.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from fastapi import APIRouter, HTTPException, Request

from convscope.run import FILMSTRIP, PROGRESS, load_run
from convscope.studio.parts import Studio
from convscope.studio.pictures import data_url, enlarged
from convscope.studio.runs import run_folder, status
from convscope.training.filmstrip_show import read_bytes_here, read_probe, read_snapshot, snapshot_epochs
from convscope.userfiles import parse_json

TILE = 48  # pixels: filters and maps are enlarged (whole factors) to at least this side; the page scales them


def progress(path: Path) -> dict[str, Any]:
    """progress.json of a run that trains now; {} when it does not (finished, stopped) or has not written one."""
    if status(path) != "running":
        return {}
    try:
        body = parse_json(read_bytes_here(path, PROGRESS))
    except (OSError, ValueError, UnicodeDecodeError):  # not written yet, or replaced as it was read
        return {}
    return body if isinstance(body, dict) else {}


def filmstrip(path: Path) -> dict[str, Any]:
    """What the page needs before the pictures: the epochs saved, the conv layers with their H×W×C (and the maps
    shown of each), the first layer's filters, the probe image (a PNG data URL) and whether the run still trains."""
    epochs = snapshot_epochs(path)
    answer: dict[str, Any] = {"epochs": epochs, "running": status(path) == "running", "layers": [], "probe": None}
    if not epochs:  # why there is none: a network without conv layers of its own never has one
        return answer | {"own_convs": bool(load_run(path).spec.conv_names())}
    snap = read_snapshot(path, epochs[-1])
    f, c, kh, kw = snap.filters.shape
    probe = read_probe(path)
    answer["layers"] = [
        {"name": n, "shape": "×".join(map(str, s)), "maps": len(snap.pixels[n])}
        for n, s in zip(snap.layers, snap.shapes, strict=True)
    ]
    answer["filters"] = {"layer": snap.layers[0], "count": f, "shape": f"{kh}×{kw}×{c}"}
    if probe is not None:
        answer["probe"] = data_url(enlarged(probe[:, :, 0] if probe.shape[2] == 1 else probe, 96))
    return answer


def epoch_pictures(path: Path, epoch: int) -> dict[str, Any]:
    """One snapshot as PNG data URLs: each filter of the first conv layer (RGB filters in colour, each scaled on its
    own; others: their first channel, red > 0 > blue on one scale) and each layer's maps (each map on its own scale,
    with its range)."""
    try:
        snap = read_snapshot(path, epoch)
    except OSError:
        raise HTTPException(404, f"{path.name} has no film strip snapshot of epoch {epoch}") from None
    return {
        "epoch": epoch,
        "filters": [data_url(enlarged(tile, TILE)) for tile in _filter_tiles(snap.filters)],
        "layers": [
            {
                "name": n,
                "maps": [
                    {"png": data_url(enlarged(m, TILE)), "low": float(lo), "high": float(hi)}
                    for m, lo, hi in zip(snap.pixels[n], snap.low[n], snap.high[n], strict=True)
                ],
            }
            for n in snap.layers
        ],
    }


def _filter_tiles(weights: np.ndarray) -> list[np.ndarray]:
    """uint8 tiles of F×C×kh×kw weights (see epoch_pictures)."""
    if weights.shape[1] == 3:
        low = weights.min(axis=(1, 2, 3), keepdims=True)
        span = np.maximum(weights.max(axis=(1, 2, 3), keepdims=True) - low, 1e-12)
        return list((255 * (weights - low) / span).round().astype(np.uint8).transpose(0, 2, 3, 1))
    first = weights[:, 0]
    t = first / (float(np.abs(first).max()) or 1.0)  # -1..1
    # red for positive, blue for negative, white at 0 (as the report's RdBu sheets read)
    red = np.where(t > 0, 1.0, 1 + t)
    blue = np.where(t < 0, 1.0, 1 - t)
    green = 1 - np.abs(t)
    return list((255 * np.stack([red, green, blue], -1)).round().astype(np.uint8))


def routes(studio: Studio) -> APIRouter:
    """The live JSON API (the run page, templates/run.html, is its client)."""
    router = APIRouter()
    runs = studio.runs

    @router.get("/api/runs/{name}/progress")
    def api_progress(name: str) -> dict[str, Any]:
        return progress(run_folder(runs, name))

    @router.get("/api/runs/{name}/filmstrip")
    def api_filmstrip(name: str) -> dict[str, Any]:
        return filmstrip(_strip_folder(run_folder(runs, name)))

    @router.get("/api/runs/{name}/filmstrip/{epoch}")
    async def api_filmstrip_epoch(request: Request, name: str, epoch: int) -> dict[str, Any]:
        path = _strip_folder(run_folder(runs, name))
        if not 0 <= epoch <= 999_999:
            raise HTTPException(404, f"{name} has no film strip snapshot of epoch {epoch}")
        return await studio.work.run(request, epoch_pictures, path, epoch)

    return router


def _strip_folder(path: Path) -> Path:
    """The run folder, refused (404) when its filmstrip/ is a link (it could lead outside the run)."""
    if (path / FILMSTRIP).is_symlink():
        raise HTTPException(404, f"run {path.name} is not served: its file {FILMSTRIP} is a link")
    return path
