"""The studio's mistakes part (studio.parts): a classifier's most-confused pairs (fastai's `most_confused`), each a
gallery of its test images with the class map (HiResCAM) for the true and for the predicted class.

    GET /runs/{name}/mistakes                          the page
    GET /api/runs/{name}/mistakes                      the pairs (largest count first), each with its kept images
    GET /api/runs/{name}/mistakes/{index}              one kept test image and its two maps (data URLs), side by side
    GET /api/runs/{name}/mistakes/{index}.png?class_name=C   the image's map for class C (default: the predicted one)

Evaluation saves no per-image predictions, so the test split is predicted once per run weights (one batched pass on
the studio's workers, convscope.classify.confused) and the answer kept in memory while the run folder's weights stay
the same (the LoadedRun studio.pictures keeps is the same object). Nothing is written into the run folder. A
detector's run gets a one-line 400.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, Response

from convscope.studio import pictures
from convscope.studio.parts import Studio
from convscope.studio.runs import run_folder

if TYPE_CHECKING:
    from convscope.classify.confused import Confusions
    from convscope.loaded import LoadedRun

PAIRS = 20  # pairs sent (the largest counts): a 100-class run has hundreds
PER_PAIR = 12  # images kept per pair
KEPT_RUNS = 4  # runs whose pairs stay in memory (each holds at most PAIRS × PER_PAIR images)
SHOWN = 112  # pixels: a gallery's pictures are enlarged by whole pixels to at least this side

_kept: OrderedDict[str, tuple[LoadedRun, Confusions]] = OrderedDict()
_kept_lock = threading.Lock()  # guards _kept
_computing = threading.Lock()  # one test split predicted at a time: a second request for it waits and reads it


def confusions(path: Path) -> tuple[LoadedRun, Confusions]:
    """The run folder's most-confused pairs, computed once per loaded weights (see the module's docstring)."""
    from convscope.classify.confused import confusions_of, refuse_detector
    from convscope.classify.evaluate import load_test_split

    loaded = pictures.loaded_run(path)  # the same object while the weights are unchanged
    refuse_detector(loaded)
    key = str(path)
    with _computing:
        with _kept_lock:
            hit = _kept.get(key)
            if hit is not None and hit[0] is loaded:
                _kept.move_to_end(key)
                return hit
        images, labels = load_test_split(loaded.run)  # read outside the model's lock: other pages keep answering
        with pictures._model_lock:
            found = confusions_of(loaded, images, labels, most=PAIRS, per_pair=PER_PAIR)
        for image in found.images.values():
            image.setflags(write=False)  # shared by the requests that follow
        with _kept_lock:
            _kept[key] = (loaded, found)
            while len(_kept) > KEPT_RUNS:
                _kept.popitem(last=False)
    return loaded, found


def summary(path: Path) -> dict[str, Any]:
    """The pairs as the page lists them: counts, probabilities and the kept images' test indices."""
    _, found = confusions(path)
    answer = found.to_dict() | {"run": path.name, "per_pair": PER_PAIR, "most_pairs": PAIRS}
    for number, pair in enumerate(answer["pairs"]):
        pair["number"] = number
    return answer


def _kept_image(path: Path, index: int):
    loaded, found = confusions(path)
    kept = found.pair_of(index)
    if kept is None:
        raise HTTPException(404, f"test image {index} is not among the mistakes shown for {path.name}")
    return loaded, found.images[index], *kept


def image_maps(path: Path, index: int) -> dict[str, Any]:
    """One kept test image as the network took it, and its HiResCAM maps for the true and the predicted class."""
    from convscope.classify.confused import class_maps
    from convscope.inspect.gradcam import overlay

    loaded, image, pair, entry = _kept_image(path, index)
    with pictures._model_lock:
        true_map, predicted_map = class_maps(loaded, image, pair)
    shown = image[:, :, 0] if image.shape[2] == 1 else image
    return {
        "index": index,
        "true": pair.true,
        "predicted": pair.predicted,
        "true_probability": entry.true_probability,
        "predicted_probability": entry.predicted_probability,
        "method": "HiResCAM",
        "layer": predicted_map.layer,
        "shape": "×".join(map(str, image.shape)),
        "image": pictures.data_url(pictures.enlarged(shown, SHOWN)),
        "true_map": pictures.data_url(pictures.enlarged(overlay(image, true_map.heatmap), SHOWN)),
        "predicted_map": pictures.data_url(pictures.enlarged(overlay(image, predicted_map.heatmap), SHOWN)),
    }


def map_png(path: Path, index: int, class_name: str | None) -> bytes:
    """A kept test image's HiResCAM map for `class_name` (default: the class it was predicted as), laid over it, as
    PNG. DataError (400) for a class the run does not have."""
    from convscope.inspect.gradcam import class_index, gradcam, overlay

    loaded, image, pair, _ = _kept_image(path, index)
    chosen = pair.predicted_index if class_name is None else class_index(loaded.classes, class_name, path.name)
    with pictures._model_lock:
        found = gradcam(loaded.model, loaded.tensor(image), class_index=chosen)
    return pictures.png_bytes(pictures.enlarged(overlay(image, found.heatmap), pictures.SHOWN))


def routes(studio: Studio) -> APIRouter:
    """The mistakes page and its JSON API (see the module's docstring)."""
    router = APIRouter()

    def classifier(name: str) -> Path:
        """The run folder `name`, refused with a one-line 400 when it is a detector's."""
        from convscope.run import load_run

        path = run_folder(studio.runs, name)
        if load_run(path).spec.is_detector:
            raise HTTPException(
                400, f"mistakes are for classifiers: {name} is a detector (its AP per class is on its run page)"
            )
        return path

    @router.get("/runs/{name}/mistakes", response_class=HTMLResponse)
    def mistakes_page(request: Request, name: str):
        return studio.page(request, "mistakes.html", "runs", name=run_folder(studio.runs, name).name)

    @router.get("/api/runs/{name}/mistakes")
    async def api_mistakes(request: Request, name: str) -> dict[str, Any]:
        return await studio.work.run(request, summary, classifier(name))

    @router.get("/api/runs/{name}/mistakes/{index:int}.png")
    async def api_map_png(request: Request, name: str, index: int, class_name: str | None = None) -> Response:
        png = await studio.work.run(request, map_png, classifier(name), index, class_name)
        return Response(png, media_type="image/png")

    @router.get("/api/runs/{name}/mistakes/{index:int}")
    async def api_image(request: Request, name: str, index: int) -> dict[str, Any]:
        return await studio.work.run(request, image_maps, classifier(name), index)

    return router
