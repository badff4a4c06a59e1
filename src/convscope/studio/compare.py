"""The studio's compare part (studio.parts): runs side by side, TensorBoard's runs under one slider for convscope runs.

    GET  /compare?runs=a,b,c              the page: pick runs (the URL keeps them), their curves on one chart per task,
                                          their settings side by side, their per-class numbers, one image for each
    GET  /api/compare?runs=a,b            each run's detail, the merged curves, the settings with `differs`, the
                                          per-class table aligned by class name, what is not comparable (comparing)
    POST /api/compare/predict             one image (multipart `image`, or form `sample`) for every run of form
                                          `runs`: decoded once, one token; each run's top classes. Its class map:
                                          GET /api/runs/{name}/gradcam?image=TOKEN, the same token for every run

An unknown run is a 404; fewer than 2 runs, more than comparing.MAX_RUNS or a run named twice, a 400.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import HTMLResponse

from convscope.data.images import describe
from convscope.studio import comparing, pictures
from convscope.studio.guards import form
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

    def predicted(paths: list[Path], data: bytes, top_k: int) -> dict[str, Any]:
        token, decoded = studio.uploads.add(data)  # decoded once, for every run
        image = studio.uploads.path(token)
        answers = [{"name": path.name} | pictures.predict(path, image, top_k, decoded) for path in paths]
        return {"image": token, "upload": describe(decoded), "runs": answers}

    @router.post("/api/compare/predict")
    async def api_compare_predict(
        request: Request,
        runs: Annotated[str, Form()],
        image: Annotated[UploadFile | None, File()] = None,
        sample: Annotated[str | None, Form()] = None,
        top_k: Annotated[int, form("top_k")] = 3,
    ) -> dict[str, Any]:
        paths = folders(runs)
        if image is not None:  # its file name and content type are not looked at: convscope decodes the bytes
            return await studio.work.run(request, lambda: predicted(paths, image.file.read(), top_k))
        if sample in pictures.SAMPLES:
            return await studio.work.run(request, lambda: predicted(paths, pictures.sample_bytes(sample), top_k))
        raise HTTPException(400, f"send an image file, or a sample: {', '.join(pictures.SAMPLES)}")

    return router
