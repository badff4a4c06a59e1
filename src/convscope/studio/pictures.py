"""What the studio's pages show, computed by convscope's own functions: predictions, Grad-CAM, feature maps,
detections, a run's first filters, the conv/pool explainer, per-class metrics. Each returns JSON data or PNG bytes.

Images are shown larger than the network sees them (a 28×28 input is a speck on a page): enlarged by whole pixels
(nearest neighbour), so every input pixel and feature-map value stays one visible square.
"""

from __future__ import annotations

import base64
import io
import math
import threading
from collections import OrderedDict
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from convscope.data.images import SAMPLE_PHOTOS, open_image, sample_photo
from convscope.errors import DataError
from convscope.spec import POOL_KINDS
from convscope.studio.guards import OutOfBounds, square_kernel

SAMPLES = tuple(SAMPLE_PHOTOS)
SHOWN = 224  # pixels: pictures are enlarged by a whole factor to at least this side
MAX_MAPS = 64  # feature maps sent for one layer
_model_lock = threading.Lock()  # one computation on a model at a time: the thread pool would otherwise oversubscribe

if TYPE_CHECKING:  # the modules that need torch are imported when a page first asks for a model
    from convscope.loaded import FittedImage, LoadedRun


def png_bytes(array: np.ndarray) -> bytes:
    """PNG of a uint8 H×W or H×W×3 array."""
    out = io.BytesIO()
    Image.fromarray(array).save(out, format="PNG")
    return out.getvalue()


def enlarged(array: np.ndarray, side: int = SHOWN) -> np.ndarray:
    """uint8 H×W(×C) repeated by the whole factor that makes its larger side at least `side`."""
    factor = max(1, math.ceil(side / max(array.shape[:2])))
    return np.repeat(np.repeat(array, factor, axis=0), factor, axis=1)


def gray(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """uint8 values stretched from `low` (black) to `high` (white); all black when they are equal."""
    if high <= low:
        return np.zeros(values.shape, np.uint8)
    return np.clip((values - low) / (high - low) * 255, 0, 255).round().astype(np.uint8)


def data_url(array: np.ndarray) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(array)).decode()


@lru_cache(maxsize=len(SAMPLES))
def sample_bytes(name: str) -> bytes:
    """The bundled photo's file, as a user would upload it."""
    return sample_photo(name).read_bytes()


@lru_cache(maxsize=len(SAMPLES))
def sample_png(name: str) -> bytes:
    """The bundled photo as PNG, at most 512 pixels on its longer side (for the pages)."""
    img = open_image(sample_photo(name)).convert("RGB")
    img.thumbnail((512, 512))
    return png_bytes(np.asarray(img))


def upload_png(path: Path) -> bytes:
    """An uploaded image as convscope decoded it (upright, RGB), at most 1024 pixels on its longer side, as PNG."""
    img = open_image(path).convert("RGB")
    img.thumbnail((1024, 1024))
    return png_bytes(np.asarray(img))


# -- try it ----------------------------------------------------------------------------------------------------------
# Each run folder is loaded once and kept while its weights stay the same (convscope.loaded.cached); each upload is
# decoded once and kept as each run's network takes it, for the follow-up questions (Grad-CAM, feature maps).
FITTED_KEPT = 64  # uploads × runs kept fitted: a 224×224×3 input is 147 kB
_fitted: OrderedDict[tuple[str, tuple[int, int, int]], FittedImage] = OrderedDict()
_fitted_lock = threading.Lock()


def loaded_run(path: Path) -> LoadedRun:
    """The run folder's network on the CPU, loaded once and kept until its weights change."""
    from convscope.loaded import cached

    return cached(path, device="cpu")


def fitted(loaded: LoadedRun, image: Path, decoded: Image.Image | None = None) -> FittedImage:
    """The uploaded file `image` as `loaded`'s network takes it (LoadedRun.fit), from `decoded` (the upload already
    decoded, upright) when given. Kept by (file, input shape): an upload's file never changes (its name is a new
    random token), so the questions that follow the prediction decode nothing."""
    key = (str(image), loaded.input)
    with _fitted_lock:  # Grad-CAM and feature maps are asked for together: the second waits for the first's decode
        if key in _fitted:
            _fitted.move_to_end(key)
            return _fitted[key]
        picture = loaded.fit(decoded if decoded is not None else image)
        picture.array.setflags(write=False)  # shared by the requests that follow
        _fitted[key] = picture
        while len(_fitted) > FITTED_KEPT:
            _fitted.popitem(last=False)
        return picture


def predict(path: Path, image: Path, top_k: int, decoded: Image.Image | None = None) -> dict[str, Any]:
    """Top-k classes of a classifier (or, for a detector, that it is one), the layers with feature maps (a base's
    stem and blocks too), the classes, and the image as the network sees it (`seen`: the fitted image enlarged by
    whole pixels, PNG data URL). `decoded`: the upload already decoded (upright), so that it is not decoded again."""
    from convscope.classify.predict import predict_image
    from convscope.inspect.featuremaps import map_layers
    from convscope.tasks import DetectTask, task_of

    loaded = loaded_run(path)
    detector = task_of(loaded.run) is DetectTask
    answer = {"detector": detector, "classes": list(loaded.classes), "layers": map_layers(loaded.model)}
    if detector:
        return answer | {"top": [], "conversion": "", "seen": None}
    picture = fitted(loaded, image, decoded)
    with _model_lock:
        found = predict_image(loaded, picture, top_k)
    array = picture.array[:, :, 0] if picture.array.shape[2] == 1 else picture.array
    top = [{"class": c, "probability": p} for c, p in found.top]
    return answer | {"top": top, "conversion": found.conversion, "seen": data_url(enlarged(array))}


def gradcam_png(path: Path, image: Path, class_name: str | None) -> bytes:
    """The Grad-CAM (HiResCAM) heatmap laid over the image as the model took it, enlarged, as PNG."""
    from convscope.inspect.gradcam import gradcam_for_run, overlay

    loaded = loaded_run(path)
    picture = fitted(loaded, image)
    with _model_lock:
        result = gradcam_for_run(loaded, picture, class_name=class_name)
    return png_bytes(enlarged(overlay(result.image, result.heatmap)))


def featuremaps(path: Path, image: Path, layer: str | None) -> dict[str, Any]:
    """Every feature map of `layer` (default: the first layer with maps; a base's stem and blocks are layers too,
    inspect.featuremaps.map_layers) for the image: each as a PNG (gray, its own value range stretched to
    black–white), with its index and value range; the layer's H×W×C."""
    from convscope.inspect.featuremaps import feature_maps, map_layers

    loaded = loaded_run(path)
    layers = map_layers(loaded.model)
    layer = layer or layers[0]
    if layer not in layers:
        raise OutOfBounds(f"layer must be one of {', '.join(layers)} (its layers with maps). Received: {layer[:40]!r}")
    picture = fitted(loaded, image)
    with _model_lock:
        maps = feature_maps(loaded, picture, [layer])
    chosen = maps[layer]
    shown = []
    for i, values in enumerate(chosen.maps[:MAX_MAPS]):
        low, high = float(values.min()), float(values.max())
        shown.append({"index": i, "min": low, "max": high, "png": data_url(enlarged(gray(values, low, high), 96))})
    h, w, c = chosen.shape
    return {
        "layer": chosen.name,
        "label": chosen.label,
        "shape": f"{h}×{w}×{c}",
        "layers": layers,
        "maps": shown,
        "shown": len(shown),
        "input": data_url(enlarged(maps.image[:, :, 0] if maps.image.shape[2] == 1 else maps.image, 96)),
        "conversion": maps.conversion,
    }


def detections(path: Path, image: Path, min_score: float) -> dict[str, Any]:
    """A detector's boxes (in the image's pixels) with scores ≥ min_score, and the image's size; the page draws them."""
    from convscope.detect.predict import detect_images

    loaded = loaded_run(path)
    with _model_lock:
        (found,) = detect_images(loaded, [str(image)], min_score)
    if found.error:
        raise DataError(found.error)
    objects = found.to_dict()["objects"]
    return {"width": found.size[0], "height": found.size[1], "objects": objects, "min_score": min_score}


def first_filters(path: Path) -> dict[str, Any]:
    """The first conv layer's filters as k×k lists (summed over the input channels: what the explainer's gray image
    meets), for the explainer's filter menu."""
    from convscope.run import load_run
    from convscope.spec import Conv

    run = load_run(path)
    index = next((i for i, layer in enumerate(run.spec.layers) if isinstance(layer, Conv)), None)
    if index is None:
        raise DataError(f"{path.name}: its network has no conv layer of its own")
    model = loaded_run(path).model
    with _model_lock:
        weights = model[index].weight.detach().float().sum(1).numpy()  # out × k × k: the spec's own first conv layer
    return {"layer": run.spec.layer_names()[index], "filters": [np.round(w, 4).tolist() for w in weights[:32]]}


# -- explain -----------------------------------------------------------------------------------------------------------
@lru_cache(maxsize=64)
def gray_sample(sample: str, size: int) -> np.ndarray:
    """The sample photo as `convscope explain --image SAMPLE --resize S×S` takes it: gray, size×size, float64."""
    from convscope.explain import load_input

    return load_input(sample, None, (size, size))[0]


def explain(request: dict[str, Any]) -> dict[str, Any]:
    """One conv or pool layer on a gray sample photo, computed by convscope.reference (the NumPy oracle of the
    tests), with the walkthrough of one output value: padded input, window, products and sum, output map, formula."""
    from convscope.explain import NAMED_FILTERS, explain_conv, explain_pool

    if request["sample"] not in SAMPLES:
        raise DataError(f"no sample photo {request['sample'][:40]!r}; samples: {', '.join(SAMPLES)}")
    x = gray_sample(request["sample"], request["size"])
    padding = request["padding"]
    padding = int(padding) if isinstance(padding, str) and padding.isdigit() else padding
    at = (request["row"], request["column"])
    if request["kind"] == "conv":
        kernel = np.asarray(square_kernel(request["kernel"] or NAMED_FILTERS["edge-x"]), dtype=np.float64)
        walk = explain_conv(x, kernel, request["stride"], padding, (0, 0))
    elif request["kind"] in POOL_KINDS:
        walk = explain_pool(x, request["kind"], request["window"], request["stride"], padding, (0, 0))
    else:
        raise DataError(f"kind must be conv, max, avg or min. Received: {request['kind'][:20]!r}")
    ho, wo = walk.output.shape
    at = (min(max(at[0], 0), ho - 1), min(max(at[1], 0), wo - 1))
    walk = (
        explain_conv(x, walk.filter, request["stride"], padding, at)
        if request["kind"] == "conv"
        else explain_pool(x, request["kind"], request["window"], request["stride"], padding, at)
    )
    return {
        "input": x.tolist(),
        "padded": _finite(walk.padded),
        "pads": list(walk.pads),
        "output": _finite(walk.output),
        "filter": None if walk.filter is None else walk.filter.tolist(),
        "window_size": list(walk.layer.size),
        "stride": list(walk.layer.stride),
        "at": list(walk.at),
        "corner": list(walk.corner),
        "window": _finite(walk.window),
        "products": None if walk.products is None else _finite(walk.products),
        "value": walk.value,
        "formula": walk.formula,
        "output_shape": [ho, wo],
        "layer": walk.layer.label(),
    }


def _finite(a: np.ndarray) -> list:
    """Nested lists with padding that is ±inf or NaN (pools) as None: JSON has no such numbers."""
    return [[None if not math.isfinite(v) else float(v) for v in row] for row in np.asarray(a, dtype=np.float64)]


# -- per-class metrics -------------------------------------------------------------------------------------------------
def evaluation(path: Path) -> dict[str, Any]:
    """Per-class precision, recall and F1 on the test split (classifier: the evaluation.json training or `convscope
    evaluate` saved) or AP per class (detector: results.json). Only read, never computed: a viewer never writes into
    a run folder. A classifier without a saved evaluation of its current best weights gets a note saying how to make
    one. Kept until results.json, evaluation.json or the best weights change."""
    from convscope.run import EVALUATION, RESULTS, WEIGHTS, weights_file

    files = (path / RESULTS, path / EVALUATION, path / WEIGHTS / weights_file("best"))
    return _evaluation(str(path), tuple(f.stat().st_mtime_ns if f.is_file() else 0 for f in files))


@lru_cache(maxsize=16)
def _evaluation(folder: str, _files_changed: tuple[int, ...]) -> dict[str, Any]:
    from convscope.classify.evaluate import saved_evaluation
    from convscope.run import load_run
    from convscope.tasks import DetectTask, task_of

    path = Path(folder)
    run = load_run(path)
    results = run.results()
    if task_of(run) is DetectTask:
        ap50 = results.get("per_class_ap50", {})
        return {"detector": True, "per_class": [{"class": k, "ap50": v} for k, v in ap50.items()]}
    if not results:
        return {"detector": False, "per_class": [], "note": "not tested yet: per-class metrics come when it finishes"}
    result = saved_evaluation(run)
    if result is None:
        note = f"no saved evaluation of its best weights: convscope evaluate {path} makes one"
        return {"detector": False, "per_class": [], "note": note}
    rows = [{k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}
            for row in result.per_class()]  # fmt: skip
    return {"detector": False, "per_class": rows, "accuracy": result.accuracy, "confusion": result.confusion.tolist()}
