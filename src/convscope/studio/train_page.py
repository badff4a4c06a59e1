"""The studio's Train page (studio.parts): start a training here, list the trainings started, stop one."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import HTMLResponse

from convscope.studio.guards import form
from convscope.studio.parts import Studio


def routes(studio: Studio) -> APIRouter:
    """GET /train; GET /api/jobs · POST /api/jobs · POST /api/jobs/{job}/stop."""
    router = APIRouter()
    jobs = studio.jobs

    @router.get("/train", response_class=HTMLResponse)
    def train_page(request: Request):
        from convscope.presets import preset_names

        return studio.page(request, "train.html", "train", presets=preset_names())

    @router.get("/api/jobs")
    def api_jobs() -> list[dict[str, Any]]:
        return jobs.list()

    @router.post("/api/jobs")
    def api_start(
        model: Annotated[str, Form()], data: Annotated[str, Form()], epochs: Annotated[int, form("epochs")] = 2
    ):
        return jobs.start(model, data, epochs).to_dict()

    @router.post("/api/jobs/{job}/stop")
    def api_stop(job: str) -> dict[str, Any]:
        try:
            return jobs.stop(job).to_dict()
        except KeyError:
            raise HTTPException(404, f"no training {job[:80]!r} was started here") from None

    return router
