"""The studio's routes: HTML pages (Jinja2) and the JSON API they call (the pages are clients of the API).

    GET  /                                   runs page          GET /api/runs                      the runs
    GET  /runs/{name}                        run page           GET /api/runs/{name}               one run
    GET  /runs/{name}/try                    try it             GET /api/runs/{name}/metrics       metrics.csv rows
    GET  /explain                            conv/pool explainer GET /api/runs/{name}/pictures/{file} report pictures
    GET  /train                              start a training   GET /api/runs/{name}/evaluation    per-class metrics
    POST /api/runs/{name}/predict            an image (multipart `image`, or form `sample`) → top-k, its token
    GET  /api/runs/{name}/gradcam?image=T&class_name=C          Grad-CAM overlay (PNG)
    GET  /api/runs/{name}/featuremaps?image=T&layer=L           every map of a layer (PNGs, H×W×C, ranges)
    GET  /api/runs/{name}/filters                               the first conv layer's filters (for the explainer)
    GET  /api/samples · /api/samples/{name}                     the bundled photos (PNG)
    GET  /api/uploads/{token}                                   an uploaded image as convscope decoded it (PNG)
    POST /api/explain                                           one conv or pool, computed by convscope.reference
    GET  /api/jobs · POST /api/jobs · POST /api/jobs/{name}/stop  trainings started here

Handlers that compute are plain `def`: FastAPI runs them in its thread pool, never in the event loop. Every error a
user can cause is a one-line JSON `detail` with 400 (bad input), 404 (no such run, image or file) or 413 (too large).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, File, Form, HTTPException, Query, Request, UploadFile
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, Field
from starlette.middleware.trustedhost import TrustedHostMiddleware

from convscope.data.images import describe
from convscope.errors import ConvscopeError
from convscope.studio import pictures
from convscope.studio.jobs import Jobs
from convscope.studio.runs import PICTURES, RunNotFound, list_runs, metrics, run_detail, run_folder
from convscope.studio.uploads import MAX_UPLOAD, UploadLimit, UploadStore

HERE = Path(__file__).parent


class ExplainRequest(BaseModel):
    """One convolution (a filter) or pool on a gray image, as `convscope explain` takes it."""

    sample: str = "camera"  # a bundled photo, made gray and resized to size×size
    size: int = Field(24, ge=4, le=64)  # input side in pixels
    kind: str = "conv"  # conv | max | avg | min
    kernel: list[list[float]] | None = None  # conv: the filter (k×k, k ≤ 7); None: edge-x
    window: int = Field(2, ge=1, le=7)  # pool: the window's side
    stride: int = Field(1, ge=1, le=7)
    padding: int | str = "valid"  # valid | same | a number of pixels
    row: int = 0  # the output position to walk through
    column: int = 0


LOOPBACK = ("127.0.0.1", "localhost", "::1")
# Sent by the pages with every request that changes something (upload, start, stop). A page of another site cannot
# send a custom header to this server without a CORS preflight, which the studio never grants: so another site open
# in the same browser cannot start trainings or upload here (cross-site request forgery).
PAGE_HEADER = "x-convscope-studio"


def create_app(runs_dir: str | Path, max_upload: int = MAX_UPLOAD, allowed_hosts=LOOPBACK) -> FastAPI:
    """The studio for the run folders directly inside `runs_dir` (made when missing).

    `allowed_hosts`: the Host headers it answers (starlette's TrustedHostMiddleware): by default this machine's
    names only, so a web page whose name was made to resolve to 127.0.0.1 (DNS rebinding) gets 400, not the API;
    ["*"] when the studio is served to other machines on purpose."""
    runs = Path(runs_dir).resolve()
    runs.mkdir(parents=True, exist_ok=True)
    uploads = UploadStore()
    jobs = Jobs(runs, uploads.folder)

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        yield
        jobs.close()
        uploads.close()

    # No /docs: Swagger UI loads its code from a CDN, and the studio works offline. /openapi.json describes the API.
    app = FastAPI(title="convscope studio", docs_url=None, redoc_url=None, lifespan=lifespan)
    _guard(app, max_upload, allowed_hosts)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    templates = Jinja2Templates(directory=HERE / "templates")
    _error_answers(app, runs)
    for router in (
        _page_routes(runs, templates),
        _run_routes(runs),
        _try_routes(runs, uploads),
        _explain_routes(),
        _job_routes(jobs),
    ):
        app.include_router(router)
    app.state.uploads, app.state.jobs, app.state.runs = uploads, jobs, runs
    return app


def _guard(app: FastAPI, max_upload: int, allowed_hosts) -> None:
    """Uploads over `max_upload` bytes get 413; changes not sent by the studio's pages get 403; other Host headers 400.
    (Starlette runs the middleware added last first: the Host check, then the page header, then the size.)"""
    app.add_middleware(UploadLimit, limit=max_upload)

    @app.middleware("http")
    async def from_the_studio_pages(request: Request, call_next):
        if request.method not in ("GET", "HEAD") and request.headers.get(PAGE_HEADER) != "1":
            detail = f"requests that change something must come from the studio's pages (header {PAGE_HEADER}: 1)"
            return JSONResponse({"detail": detail}, status_code=403)
        return await call_next(request)

    app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts))


def _error_answers(app: FastAPI, runs: Path) -> None:
    """A convscope error a user caused is a 400, a run that is not in `runs` a 404: one-line JSON `detail` each."""

    @app.exception_handler(ConvscopeError)
    async def convscope_error(_request, err: ConvscopeError):
        return JSONResponse({"detail": str(err)}, status_code=400)

    @app.exception_handler(RunNotFound)
    async def no_run(_request, err: RunNotFound):
        return JSONResponse({"detail": f"no run named {str(err)[:80]!r} in {runs}"}, status_code=404)


def _page_routes(runs: Path, templates: Jinja2Templates) -> APIRouter:
    """The HTML pages: the runs, one run, try it, the conv/pool explainer, start a training."""
    router = APIRouter()

    def page(request: Request, template: str, nav: str, **context) -> HTMLResponse:
        return templates.TemplateResponse(request, template, {"nav": nav, "runs_dir": str(runs), **context})

    @router.get("/", response_class=HTMLResponse)
    def runs_page(request: Request):
        return page(request, "runs.html", "runs")

    @router.get("/runs/{name}", response_class=HTMLResponse)
    def run_page(request: Request, name: str):
        return page(request, "run.html", "runs", name=run_folder(runs, name).name)

    @router.get("/runs/{name}/try", response_class=HTMLResponse)
    def try_page(request: Request, name: str):
        path = run_folder(runs, name)
        return page(request, "try.html", "runs", name=path.name, samples=pictures.SAMPLES)

    @router.get("/explain", response_class=HTMLResponse)
    def explain_page(request: Request):
        return page(request, "explain.html", "explain", samples=pictures.SAMPLES)

    @router.get("/train", response_class=HTMLResponse)
    def train_page(request: Request):
        from convscope.presets import preset_names

        return page(request, "train.html", "train", presets=preset_names())

    return router


def _run_routes(runs: Path) -> APIRouter:
    """The runs as JSON: the list, one run, its metrics.csv rows, its report pictures, its per-class metrics."""
    router = APIRouter()

    @router.get("/api/runs")
    def api_runs() -> list[dict[str, Any]]:
        return list_runs(runs)

    @router.get("/api/runs/{name}")
    def api_run(name: str) -> dict[str, Any]:
        return run_detail(run_folder(runs, name))

    @router.get("/api/runs/{name}/metrics")
    def api_metrics(name: str) -> list[dict[str, Any]]:
        return metrics(run_folder(runs, name))

    @router.get("/api/runs/{name}/pictures/{file}")
    def api_picture(name: str, file: str):
        path = run_folder(runs, name) / file
        if file not in PICTURES or not path.is_file():
            raise HTTPException(404, f"{name} has no picture {file[:80]!r}")
        return FileResponse(path, media_type="image/png")

    @router.get("/api/runs/{name}/evaluation")
    def api_evaluation(name: str) -> dict[str, Any]:
        return pictures.evaluation(run_folder(runs, name))

    return router


def _try_routes(runs: Path, uploads: UploadStore) -> APIRouter:
    """Try it: an image uploaded (or a sample) and predicted, then its Grad-CAM, feature maps and detections by token;
    the first conv layer's filters."""
    router = APIRouter()

    @router.post("/api/runs/{name}/predict")
    def api_predict(
        name: str,
        image: Annotated[UploadFile | None, File()] = None,
        sample: Annotated[str | None, Form()] = None,
        top_k: Annotated[int, Form(ge=1, le=100)] = 5,
    ) -> dict[str, Any]:
        path = run_folder(runs, name)
        if image is not None:  # its file name and content type are not looked at: the bytes are decoded by convscope
            token, decoded = uploads.add(image.file.read())
        elif sample in pictures.SAMPLES:
            token, decoded = uploads.add(pictures.sample_bytes(sample))
        else:
            raise HTTPException(400, f"send an image file, or a sample: {', '.join(pictures.SAMPLES)}")
        answer = pictures.predict(path, uploads.path(token), top_k, decoded)  # decoded once, here in uploads.add
        return {"image": token, "upload": describe(decoded)} | answer

    def upload(token: str) -> Path:
        try:
            return uploads.path(token)
        except KeyError:
            raise HTTPException(404, "no such uploaded image (they are kept for the latest 32 uploads)") from None

    @router.get("/api/uploads/{token}")
    def api_upload(token: str) -> Response:
        return Response(pictures.upload_png(upload(token)), media_type="image/png")

    @router.get("/api/runs/{name}/gradcam")
    def api_gradcam(name: str, image: str, class_name: str | None = None) -> Response:
        png = pictures.gradcam_png(run_folder(runs, name), upload(image), class_name)
        return Response(png, media_type="image/png")

    @router.get("/api/runs/{name}/featuremaps")
    def api_featuremaps(name: str, image: str, layer: str | None = None) -> dict[str, Any]:
        return pictures.featuremaps(run_folder(runs, name), upload(image), layer)

    @router.get("/api/runs/{name}/detections")
    def api_detections(name: str, image: str, min_score: float = Query(0.05, ge=0, le=1)) -> dict[str, Any]:
        return pictures.detections(run_folder(runs, name), upload(image), min_score)

    @router.get("/api/runs/{name}/filters")
    def api_filters(name: str) -> dict[str, Any]:
        return pictures.first_filters(run_folder(runs, name))

    return router


def _explain_routes() -> APIRouter:
    """The explainer's: the bundled photos, and one conv or pool computed by convscope.reference."""
    router = APIRouter()

    @router.get("/api/samples")
    def api_samples() -> list[str]:
        return list(pictures.SAMPLES)

    @router.get("/api/samples/{sample}")
    def api_sample(sample: str) -> Response:
        if sample not in pictures.SAMPLES:
            raise HTTPException(404, f"no sample photo {sample[:40]!r}; samples: {', '.join(pictures.SAMPLES)}")
        return Response(pictures.sample_png(sample), media_type="image/png")

    @router.post("/api/explain")
    def api_explain(request: ExplainRequest) -> dict[str, Any]:
        return pictures.explain(request.model_dump())

    return router


def _job_routes(jobs: Jobs) -> APIRouter:
    """The trainings started here: list, start, stop."""
    router = APIRouter()

    @router.get("/api/jobs")
    def api_jobs() -> list[dict[str, Any]]:
        return jobs.list()

    @router.post("/api/jobs")
    def api_start(model: Annotated[str, Form()], data: Annotated[str, Form()], epochs: Annotated[int, Form()] = 2):
        return jobs.start(model, data, epochs).to_dict()

    @router.post("/api/jobs/{job}/stop")
    def api_stop(job: str) -> dict[str, Any]:
        try:
            return jobs.stop(job).to_dict()
        except KeyError:
            raise HTTPException(404, f"no training {job[:80]!r} was started here") from None

    return router
