"""The studio's Train page (studio.parts): write or paste a spec, checked by the shape linter as it is typed; choose
the data and the training settings; see the command and the recipe before starting; start, list and stop trainings.

    GET  /train                     the page
    GET  /api/presets/{name}        a preset's spec as YAML, to start from          {name, description, yaml}
    POST /api/lint                  JSON {spec}: the linter's answer                {ok, errors: [{line, message}],
                                    columns, rows (input first), lines (each row's line in the text), totals}
    POST /api/jobs/preview          the form of /api/jobs: what would start         {name, command, recipe, settings}
    POST /api/jobs                  form: model, data, epochs, and optionally spec, batch_size, lr, augment,
                                    device, per_class: starts `convscope train` (studio.jobs)
    GET  /api/jobs · POST /api/jobs/{job}/stop
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, field_validator

from convscope.studio import guards
from convscope.studio.guards import form
from convscope.studio.jobs import TrainRequest, devices
from convscope.studio.parts import Studio
from convscope.studio.spec_lint import lint

DEFAULT_PRESET = "fashion-fast"
Text = Annotated[str | None, Form()]


class LintRequest(BaseModel):
    spec: str

    @field_validator("spec", mode="before")
    @classmethod
    def bounded(cls, value: Any) -> str:
        if not isinstance(value, str):
            raise guards.invalid(f"spec must be the text of a spec (YAML). Received: {str(value)[:40]!r}")
        if len(value) > guards.SPEC_CHARS:
            raise guards.invalid(f"spec must be at most {guards.SPEC_CHARS:,} characters. Received: {len(value):,}")
        return value


def asked(
    model: Annotated[str, Form()],
    data: Annotated[str, Form()],
    epochs: Annotated[int, form("epochs")] = 2,
    spec: Text = None,
    batch_size: Annotated[int | None, form("batch_size")] = None,
    lr: Annotated[float | None, form("lr")] = None,
    augment: Text = None,
    device: Text = None,
    per_class: Annotated[int | None, form("per_class")] = None,
) -> TrainRequest:
    """The form's fields as a TrainRequest; an empty text field is one not given."""
    texts = {"spec": spec, "augment": augment, "device": device}
    texts = {k: v if v is not None and v.strip() else None for k, v in texts.items()}
    return TrainRequest(model, data, epochs, batch_size=batch_size, lr=lr, per_class=per_class, **texts)


def routes(studio: Studio) -> APIRouter:
    router = APIRouter()
    jobs = studio.jobs

    @router.get("/train", response_class=HTMLResponse)
    def train_page(request: Request):
        from convscope.presets import preset_names

        return studio.page(
            request, "train.html", "train", presets=preset_names(), default=DEFAULT_PRESET, devices=devices()
        )

    @router.get("/api/presets/{name}")
    def api_preset(name: str) -> dict[str, Any]:
        from convscope.presets import get_preset, preset_names

        if name not in preset_names():
            raise HTTPException(404, f"no preset named {name[:40]!r}; presets: {', '.join(preset_names())}")
        spec = get_preset(name)
        return {"name": name, "description": spec.description, "yaml": spec.to_yaml()}

    @router.post("/api/lint")
    def api_lint(body: LintRequest) -> dict[str, Any]:
        return lint(body.spec).to_dict()

    @router.get("/api/jobs")
    def api_jobs() -> list[dict[str, Any]]:
        return jobs.list()

    @router.post("/api/jobs/preview")
    def api_preview(train: Annotated[TrainRequest, Depends(asked)]) -> dict[str, Any]:
        return jobs.plan(train).to_dict()

    @router.post("/api/jobs")
    def api_start(train: Annotated[TrainRequest, Depends(asked)]) -> dict[str, Any]:
        return jobs.start(train).to_dict()

    @router.post("/api/jobs/{job}/stop")
    def api_stop(job: str) -> dict[str, Any]:
        try:
            return jobs.stop(job).to_dict()
        except KeyError:
            raise HTTPException(404, f"no training {job[:80]!r} was started here") from None

    return router
