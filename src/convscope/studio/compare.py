"""The studio's compare part (studio.parts): runs side by side, TensorBoard's runs under one slider for convscope runs.

    GET  /compare?runs=a,b,c              the page: pick runs (the URL keeps them), their curves on one chart per task,
                                          their settings side by side, their per-class numbers, one image for each
    GET  /api/compare?runs=a,b            each run's detail, the merged curves, the settings with `differs`, the
                                          per-class table aligned by class name, what is not comparable (comparing)
    GET  /api/compare/top?runs=a,b&image=TOKEN   each run's top classes for one upload (the token that
                                          POST /api/runs/{name}/predict answered: an upload is any run's), decoded
                                          once per input shape; each class map: /api/runs/{name}/gradcam?image=TOKEN

An unknown run is a 404; fewer than 2 runs, more than comparing.MAX_RUNS or a run named twice, a 400.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse

from convscope.studio import comparing, pictures
from convscope.studio.guards import query
from convscope.studio.parts import Studio
from convscope.studio.runs import run_detail, run_folder


def routes(studio: Studio) -> APIRouter:
    """The compare page and its JSON API."""
    router = APIRouter()

    def folders(runs: str | None) -> list[Path]:
        try:
            names = comparing.run_names(runs)
        except comparing.CompareRefused as err:
            raise HTTPException(400, str(err)) from None
        return [run_folder(studio.runs, name) for name in names]  # RunNotFound: 404 (app)

    @router.get("/compare", response_class=HTMLResponse)
    def compare_page(request: Request):
        return studio.page(request, "compare.html", "compare", samples=pictures.SAMPLES, most=comparing.MAX_RUNS)

    @router.get("/api/compare")
    def api_compare(runs: str | None = None) -> dict[str, Any]:
        paths = folders(runs)
        details = [run_detail(path) for path in paths]
        names = [path.name for path in paths]
        return {
            "runs": details,
            "curves": comparing.curves(details),
            "settings": comparing.settings(details),
            "per_class": comparing.per_class(names, [pictures.evaluation(path) for path in paths]),
            "notes": comparing.notes(details),
        }

    def tops(paths: list[Path], image: Path, top_k: int) -> dict[str, Any]:
        return {"runs": [{"name": path.name} | pictures.predict(path, image, top_k) for path in paths]}

    @router.get("/api/compare/top")
    async def api_compare_top(
        request: Request, image: str, runs: str | None = None, top_k: Annotated[int, query("top_k")] = 3
    ) -> dict[str, Any]:
        paths = folders(runs)
        try:
            path = studio.uploads.path(image)
        except KeyError:
            raise HTTPException(404, "no such uploaded image (they are kept for the latest 32 uploads)") from None
        return await studio.work.run(request, tops, paths, path, top_k)

    return router
