"""The studio's network part (studio.parts): the whole network for one image, and each conv output's arithmetic.

    GET /runs/{name}/network                                          the page (static/network.js)
    GET /api/runs/{name}/network?image=TOKEN                          every layer's maps, shapes, ranges; top classes
    GET /api/runs/{name}/network/detail?image=T&layer=L&filter=F&row=R&column=C   one conv output, step by step

TOKEN is what POST /api/runs/{name}/predict answers for an upload or a sample. The numbers are computed by
studio.network_detail (convscope.inspect.conv_walk) on the studio's workers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse

from convscope.studio import network_detail, pictures
from convscope.studio.guards import OutOfBounds
from convscope.studio.parts import Studio
from convscope.studio.runs import run_folder


def routes(studio: Studio) -> APIRouter:
    """The network page and its JSON API."""
    router = APIRouter()

    def upload(token: str) -> Path:
        try:
            return studio.uploads.path(token)
        except KeyError:
            raise HTTPException(404, "no such uploaded image (they are kept for the latest 32 uploads)") from None

    @router.get("/runs/{name}/network", response_class=HTMLResponse)
    def network_page(request: Request, name: str):
        path = run_folder(studio.runs, name)
        return studio.page(request, "network.html", "runs", name=path.name, samples=pictures.SAMPLES)

    @router.get("/api/runs/{name}/network")
    async def api_network(request: Request, name: str, image: str) -> dict[str, Any]:
        path = run_folder(studio.runs, name)
        return await studio.work.run(request, network_detail.overview, path, upload(image))

    @router.get("/api/runs/{name}/network/detail")
    async def api_detail(
        request: Request, name: str, image: str, layer: str, filter: str = "0", row: str = "0", column: str = "0"
    ) -> dict[str, Any]:
        path = run_folder(studio.runs, name)
        at = [whole(word, text) for word, text in (("filter", filter), ("row", row), ("column", column))]
        return await studio.work.run(request, network_detail.detail, path, upload(image), layer, *at)

    return router


def whole(word: str, text: str) -> int:
    """A position given as text, as an int; OutOfBounds (422) for anything else. (Their range depends on the layer:
    network_detail.detail checks it; guards.BOUNDS' row and column are the explainer's.)"""
    try:
        return int(text)
    except ValueError:
        raise OutOfBounds(f"{word} must be a whole number (0 or more). Received: {text[:40]!r}") from None
