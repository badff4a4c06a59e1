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
    GET  /doctor                             the dataset doctor GET /api/doctor · POST /api/doctor (form data, run)
    GET  /api/doctor/{id}                    one diagnosis: state, stage, done, total, the findings when finished
    GET  /doctor/{id}/report.html            its report (written in RUNS/.doctor/ID, studio.doctor)

The parts of the studio that came later are one module each, with their page(s) and API (`routes(studio)`,
studio.parts): train_page (start, preview and lint a training), live (per-batch progress, the film strip), compare
(runs side by side), network (the whole network for one image, each conv output's arithmetic), mistakes (the most
confused pairs with their class maps). Their routes are listed in their modules.

The pages and the runs' JSON are plain `def` handlers (FastAPI's thread pool); the heavy work (decoding an upload,
running a network, the explainer) waits its turn on the studio's own workers (studio.work), which drop it when its
client has gone, so the pages keep answering under load. Every error a user can cause is a one-line JSON `detail`:
400 (bad input), 403 (not from the studio's pages, a data folder outside the data roots), 404 (no such run, image or
file; a run not served, with the file that links outside it), 413 (too large), 422 (a field out of its range or
shape, in the studio's words: studio.guards.BOUNDS, FIELD_TEXTS; never pydantic's), 429 (too many trainings at once).
The studio never writes into a run folder; it reads what training and `convscope evaluate` saved.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, Field, field_validator

from convscope.data.images import describe
from convscope.errors import ConvscopeError
from convscope.studio import compare, guards, live, mistakes, network, pictures, train_page
from convscope.studio.doctor import Diagnoses, doctor_routes
from convscope.studio.guards import Guard, Refused, check, field, form, query, validation_answer
from convscope.studio.jobs import Jobs
from convscope.studio.parts import Studio
from convscope.studio.runs import RunNotFound, RunNotServed, list_runs, metrics, picture, run_detail, run_folder
from convscope.studio.uploads import MAX_UPLOAD, UploadStore
from convscope.studio.work import ClientGone, Stopping, Work

HERE = Path(__file__).parent


class ExplainRequest(BaseModel):
    """One convolution (a filter) or pool on a gray image, as `convscope explain` takes it; every number bounded."""

    sample: str = Field("camera", max_length=64)  # a bundled photo, made gray and resized to size×size
    size: int = field("size", 24)  # input side in pixels
    kind: str = Field("conv", max_length=8)  # conv | max | avg | min
    kernel: list[list[float]] | None = None  # k×k, k ≤ KERNEL_SIDE, finite values within ±guards.KERNEL_VALUE
    window: int = field("window", 2)  # pool: the window's side
    stride: int = field("stride", 1)
    padding: int | str = "valid"  # valid | same | a number of pixels (BOUNDS)
    row: int = field("row", 0)  # the output position to walk through (clamped to the output's size)
    column: int = field("column", 0)

    @field_validator("padding", mode="before")
    @classmethod
    def _padding(cls, value: Any) -> int | str:
        if value in ("valid", "same"):
            return value
        if isinstance(value, str) and value.isdigit():
            value = int(value)
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        try:
            if not isinstance(value, int):
                raise guards.OutOfBounds(guards.bounds_text("padding"))
            return check("padding", value)
        except Refused:
            raise guards.invalid(f"{guards.bounds_text('padding')}. Received: {str(value)[:40]!r}") from None

    @field_validator("kernel", mode="before")
    @classmethod
    def _kernel(cls, value: Any) -> list[list[float]] | None:
        try:
            return None if value is None else guards.square_kernel(value)
        except Refused as err:
            raise guards.invalid(str(err)) from None


# What each field that is not a bounded number (guards.BOUNDS) must be: the 422's words for it.
FIELD_TEXTS = {
    "sample": f"sample must be one of {', '.join(pictures.SAMPLES)}",
    "kind": "kind must be conv, max, avg or min",
    "kernel": f"kernel must be a square list of lists of numbers, 1×1 to {guards.KERNEL_SIDE}×{guards.KERNEL_SIDE}",
    "image": "image must be the token that /api/runs/NAME/predict answered for an uploaded image",
    "class_name": "class_name must be one of the run's classes",
    "layer": "layer must be one of the run's layers with maps",
    "model": "model must be one of the presets",
    "data": "data must be a built-in dataset or a folder inside one of the studio's data roots",
    "run": "run must be the name of a run folder in the runs list",
}
UPLOAD_TEXT = "image must be an image file, sent as multipart form data (or send a sample's name)"


LOOPBACK = ("127.0.0.1", "localhost", "::1")


def create_app(
    runs_dir: str | Path,
    max_upload: int = MAX_UPLOAD,
    allowed_hosts=LOOPBACK,
    max_trainings: int = 1,
    data_roots=None,
    workers: int | None = None,
) -> FastAPI:
    """The studio for the run folders directly inside `runs_dir` (made when missing).

    `allowed_hosts`: the Host headers it answers (studio.guards.Guard): by default this machine's names only, so a
    web page whose name was made to resolve to 127.0.0.1 (DNS rebinding) gets 400, not the API; ["*"] when the
    studio is served to other machines on purpose. `max_trainings`: trainings started from the pages that may run at
    once (429 beyond). `data_roots`: the folders whose subfolders the Train page may train on (default: `runs_dir`;
    403 outside them). `workers`: threads for the heavy work (default one per core, 1 to 4)."""
    runs = Path(runs_dir).resolve()
    runs.mkdir(parents=True, exist_ok=True)
    uploads = UploadStore()
    jobs = Jobs(runs, uploads.folder, max_trainings, data_roots or [runs])
    work = Work(workers)
    diagnoses = Diagnoses(runs, jobs.check_data, lambda name: run_folder(runs, name))

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        try:
            yield
        finally:
            work.close()
            diagnoses.close()
            jobs.close()
            uploads.close()

    # No /docs: Swagger UI loads its code from a CDN, and the studio works offline. /openapi.json describes the API.
    app = FastAPI(title="convscope studio", docs_url=None, redoc_url=None, lifespan=lifespan)
    # Outermost: the Host check (400), the pages' header (403), the body's bound (413), quiet cancellation at stop.
    # The pages send the header with every request that changes something (upload, start, stop); a page of another
    # site cannot send a custom header here without a CORS preflight, which the studio never grants.
    app.add_middleware(Guard, allowed_hosts=list(allowed_hosts), max_upload=max_upload)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    templates = Jinja2Templates(directory=HERE / "templates")
    _error_answers(app, runs, templates)
    studio = Studio(runs, templates, uploads, work, jobs)
    for router in (
        _page_routes(studio),
        _run_routes(runs),
        _try_routes(runs, uploads, work),
        _explain_routes(work),
        doctor_routes(diagnoses),
        *(part.routes(studio) for part in (train_page, live, compare, network, mistakes)),
    ):
        app.include_router(router)
    app.state.uploads, app.state.jobs, app.state.runs, app.state.work = uploads, jobs, runs, work
    app.state.diagnoses = diagnoses
    return app


def _error_answers(app: FastAPI, runs: Path, templates: Jinja2Templates) -> None:
    """A convscope error a user caused is a 400 (a refusal its own status), a run that is not in `runs` a 404, a
    number out of bounds a 422: one-line JSON `detail` each (a page's address naming no run: the same line on a
    page). A request dropped because its client left: 499; one in flight when the studio stops: 503."""

    def not_found(request: Request, detail: str) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse({"detail": detail}, status_code=404)
        context = {"nav": "runs", "runs_dir": str(runs), "detail": detail}
        return templates.TemplateResponse(request, "missing.html", context, status_code=404)

    @app.exception_handler(ConvscopeError)
    async def convscope_error(_request, err: ConvscopeError):
        return JSONResponse({"detail": str(err)}, status_code=400)

    @app.exception_handler(Refused)
    async def refused(_request, err: Refused):
        return JSONResponse({"detail": str(err)}, status_code=err.status)

    @app.exception_handler(RequestValidationError)
    async def not_valid(request: Request, err: RequestValidationError):
        upload = request.url.path.endswith("/predict")  # there `image` is the file itself, elsewhere its token
        return validation_answer(err, FIELD_TEXTS | {"image": UPLOAD_TEXT} if upload else FIELD_TEXTS)

    @app.exception_handler(Stopping)
    async def stopping(_request, _err: Stopping):
        return JSONResponse({"detail": "the studio is stopping"}, status_code=503)

    @app.exception_handler(ClientGone)
    async def gone(_request, _err: ClientGone):
        return Response(status_code=499)  # nobody reads it: the client closed the connection

    @app.exception_handler(RunNotFound)
    async def no_run(request: Request, err: RunNotFound):
        return not_found(request, f"no run named {str(err)[:80]!r} in {runs}")

    @app.exception_handler(RunNotServed)
    async def not_served(request: Request, err: RunNotServed):  # a run that is there, refused (runs.run_folder)
        return not_found(request, str(err))


def _page_routes(studio: Studio) -> APIRouter:
    """The HTML pages: the runs, one run, try it, the conv/pool explainer, the doctor."""
    router = APIRouter()
    runs, page = studio.runs, studio.page

    @router.get("/", response_class=HTMLResponse)
    def runs_page(request: Request):
        return page(request, "runs.html", "runs")

    @router.get("/runs/{name}", response_class=HTMLResponse)
    def run_page(request: Request, name: str):
        try:
            name = run_folder(runs, name).name
        except RunNotFound:  # a training just started here makes its folder within seconds: the page waits for it
            if name not in {job["name"] for job in studio.jobs.list()}:
                raise
        return page(request, "run.html", "runs", name=name)

    @router.get("/runs/{name}/try", response_class=HTMLResponse)
    def try_page(request: Request, name: str):
        path = run_folder(runs, name)
        return page(request, "try.html", "runs", name=path.name, samples=pictures.SAMPLES)

    @router.get("/explain", response_class=HTMLResponse)
    def explain_page(request: Request):
        return page(request, "explain.html", "explain", samples=pictures.SAMPLES)

    @router.get("/doctor", response_class=HTMLResponse)
    def doctor_page(request: Request):
        return page(request, "doctor.html", "doctor")

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
        try:  # read only inside the run folder, links resolved (runs.picture)
            return Response(picture(run_folder(runs, name), file), media_type="image/png")
        except OSError:
            raise HTTPException(404, f"{name} has no picture {file[:80]!r}") from None

    @router.get("/api/runs/{name}/evaluation")
    def api_evaluation(name: str) -> dict[str, Any]:
        return pictures.evaluation(run_folder(runs, name))

    return router


def _try_routes(runs: Path, uploads: UploadStore, work: Work) -> APIRouter:
    """Try it: an image uploaded (or a sample) and predicted, then its Grad-CAM, feature maps and detections by token;
    the first conv layer's filters. Each computes on the studio's workers (studio.work)."""
    router = APIRouter()

    def upload(token: str) -> Path:
        try:
            return uploads.path(token)
        except KeyError:
            raise HTTPException(404, "no such uploaded image (they are kept for the latest 32 uploads)") from None

    def predicted(path: Path, data: bytes, top_k: int) -> dict[str, Any]:
        token, decoded = uploads.add(data)  # decoded once, here
        answer = pictures.predict(path, uploads.path(token), top_k, decoded)
        return {"image": token, "upload": describe(decoded)} | answer

    @router.post("/api/runs/{name}/predict")
    async def api_predict(
        request: Request,
        name: str,
        image: Annotated[UploadFile | None, File()] = None,
        sample: Annotated[str | None, Form()] = None,
        top_k: Annotated[int, form("top_k")] = 5,
    ) -> dict[str, Any]:
        path = run_folder(runs, name)
        if image is not None:  # its file name and content type are not looked at: the bytes are decoded by convscope
            return await work.run(request, lambda: predicted(path, image.file.read(), top_k))
        if sample in pictures.SAMPLES:
            return await work.run(request, lambda: predicted(path, pictures.sample_bytes(sample), top_k))
        raise HTTPException(400, f"send an image file, or a sample: {', '.join(pictures.SAMPLES)}")

    @router.get("/api/uploads/{token}")
    async def api_upload(request: Request, token: str) -> Response:
        return Response(await work.run(request, pictures.upload_png, upload(token)), media_type="image/png")

    @router.get("/api/runs/{name}/gradcam")
    async def api_gradcam(request: Request, name: str, image: str, class_name: str | None = None) -> Response:
        png = await work.run(request, pictures.gradcam_png, run_folder(runs, name), upload(image), class_name)
        return Response(png, media_type="image/png")

    @router.get("/api/runs/{name}/featuremaps")
    async def api_featuremaps(request: Request, name: str, image: str, layer: str | None = None) -> dict[str, Any]:
        return await work.run(request, pictures.featuremaps, run_folder(runs, name), upload(image), layer)

    @router.get("/api/runs/{name}/detections")
    async def api_detections(
        request: Request, name: str, image: str, min_score: Annotated[float, query("min_score")] = 0.05
    ) -> dict[str, Any]:
        return await work.run(request, pictures.detections, run_folder(runs, name), upload(image), min_score)

    @router.get("/api/runs/{name}/filters")
    async def api_filters(request: Request, name: str) -> dict[str, Any]:
        return await work.run(request, pictures.first_filters, run_folder(runs, name))

    return router


def _explain_routes(work: Work) -> APIRouter:
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
    async def api_explain(request: Request, explained: ExplainRequest) -> dict[str, Any]:
        return await work.run(request, pictures.explain, explained.model_dump())

    return router
