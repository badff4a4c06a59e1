"""export: a run's network as an ONNX or TorchScript file, checked against PyTorch, with a JSON sidecar.

The exported model takes exactly what the eager model takes, and nothing does the preprocessing for you:

    float32 N×C×H×W images, already normalised per channel:  x = (pixels / 255 − mean) / std

with the run's `mean` and `std` (of its training images in [0, 1]); C, H, W are the spec's input and N is free (a
dynamic batch axis). A classifier returns N×classes logits (no softmax); a detector (spec ending in `detect`) returns
its raw head output N×(K+4)×h×w: K centre-heatmap logits, box width and height, centre offset (layers.CenterNetHead).

Next to RUN/export/model.onnx (or model.pt) goes model.json, everything needed to use the file without convscope:

    {"run": "fashion-fast-fashion-mnist", "model": "fashion-fast", "input": [28, 28, 1] (H, W, C),
     "input_layout": "...", "mean": [0.286], "std": [0.353], "classes": [...], "outputs": "logits",
     "output_layout": "...",
     "exports": {"onnx": {"format": "onnx", "file": "model.onnx", "sha256": ..., "max_abs_diff": 1.6e-07,
                          "opset": 20, "torch": "2.14.1"},
                 "torchscript": {...}}}

model.onnx and model.pt share their model.json (same stem): exporting the second format adds its entry under
"exports" when the rest describes the same model, and starts a new file otherwise. The sha256 tells a stale entry
(the file was replaced since) from a current one.

Every export is checked before it is written: the serialised model runs on 16 images (the sample photos resized to the
input, then seeded random pixels), at batch 16 and batch 1, and its outputs must match the eager model's within 1e-4.
Then the file is written atomically (temporary file in the same folder, fsync, rename), so a refused or interrupted
export leaves nothing half-written.

Running an exported classifier (`convscope predict MODEL.onnx IMAGES...`) is
convscope.classify.predict.predict_onnx's job,
with convscope.onnx_model, which loads and checks model.onnx and model.json.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from convscope.data.images import sample_photo
from convscope.errors import ExportError, OutputError
from convscope.files import check_replaceable
from convscope.loaded import LoadedRun, load
from convscope.onnx_model import onnx_input, onnx_session, read_json, sidecar_path
from convscope.run import CONFIG, EXPORT, SPEC, Run
from convscope.tasks import task_of

FORMATS = {"onnx": ".onnx", "torchscript": ".pt"}
TOLERANCE = 1e-4  # largest allowed |exported − eager| of any fp32 output value
CHECK_PHOTOS = ("chelsea", "coffee", "astronaut", "camera", "rocket")  # scikit-image's, no download
CHECK_IMAGES = 16
INPUT_LAYOUT = "float32 N×C×H×W (N free), normalised per channel: (pixels / 255 − mean) / std"
OUTPUTS = {
    "logits": "N×classes logits (no softmax)",
    "heatmap/size/offset maps": "N×(K+4)×h×w: K centre-heatmap logits, box width and height in input pixels, "
    "centre offset within the cell",
}


@dataclass(frozen=True)
class Exported:
    path: Path  # the model file
    sidecar: Path  # its model.json
    format: str  # 'onnx' | 'torchscript'
    size: int  # bytes of the model file
    max_abs_diff: float  # largest |exported − eager| over the check images
    outputs: str  # 'logits' | 'heatmap/size/offset maps'


def export(run: Run | str | Path, fmt: str, out: str | Path | None = None, overwrite: bool = False) -> Exported:
    """Write the run's best weights as `fmt` ('onnx' or 'torchscript') to `out` (default RUN/export/model.onnx|.pt)
    and model.json beside it; an ExportError, and nothing written, if it disagrees with the eager model.

    `out` never replaces what export did not make: a folder, device, pipe or socket, a file inside a run folder (but
    its export/), a JSON beside it that is not a model.json, or (without `overwrite`) an existing file that no export
    wrote are refused with an OutputError before anything is computed or written."""
    import torch

    from convscope.files import atomic_write_bytes

    if fmt not in FORMATS:
        raise ExportError(f"export format must be one of {', '.join(FORMATS)}. Received: {fmt!r}")
    loaded = load(run, device="cpu")
    run, task = loaded.run, task_of(loaded.run)
    path = _out_path(out, f"model{FORMATS[fmt]}") if out is not None else run.path / EXPORT / f"model{FORMATS[fmt]}"
    _check_out(path, chosen=out is not None, overwrite=overwrite, run_path=run.path)
    model = task.predictor(loaded.model, run.config)  # the run's test-time mirror averaging inside, as predict's
    batch = check_batch(loaded)
    example = batch[:2].contiguous()  # 2, not 1: torch.export would specialise a batch of 1 into the graph
    with torch.no_grad():
        data = _onnx_bytes(model, example, task.outputs) if fmt == "onnx" else _torchscript_bytes(model, example)
    # Checked before anything is written: the very bytes that go to disk, loaded back as a user would.
    run_exported = _onnx_runner(data, f"{path} (not written)") if fmt == "onnx" else _torchscript_runner(data)
    diff = max_abs_diff(model, run_exported, batch)
    if not diff <= TOLERANCE:  # also refuses NaN
        raise ExportError(
            f"{path}: not written, the {fmt} model's outputs differ from PyTorch's by up to {diff:.3g} "
            f"(allowed {TOLERANCE:g})"
        )
    atomic_write_bytes(path, data)
    sidecar = _write_sidecar(_about(run, task.outputs, model is not loaded.model), path, fmt, diff, data)
    return Exported(path, sidecar, fmt, len(data), diff, task.outputs)


# ── serialising ───────────────────────────────────────────────────────────────────────────────────────────────────
def _onnx_bytes(model, example, outputs: str) -> bytes:
    """The model as an ONNX file's bytes, with a dynamic batch axis named 'batch'.

    Which exporter: torch 2.14's default, dynamo=True (torch.export → ONNX through onnxscript). The legacy TorchScript
    exporter (dynamo=False) is deprecated, and measured here it is wrong for our pools with TF-style 'same' padding
    that is uneven (max/min/avg pool 3×3 stride 2 on 13×15: 6×7 outputs instead of 7×8, silently). The dynamo export
    matches eager to ~1e-7 for every preset, min pools, batchnorm, the detect head and EfficientNet-Lite0.
    """
    import torch

    output_name = "logits" if outputs == "logits" else "maps"
    program = torch.onnx.export(
        model,
        (example,),
        input_names=["images"],
        output_names=[output_name],
        dynamic_shapes=({0: torch.export.Dim("batch")},),
        verbose=False,  # the library logs, it does not print
    )
    # One self-contained file (weights inside, not in a model.onnx.data beside it): fine below protobuf's 2 GB limit,
    # which convnets trained on a CPU are far from.
    return program.model_proto.SerializeToString()


def _torchscript_bytes(model, example) -> bytes:
    """The model traced to TorchScript (torch.jit.save's bytes); the batch size stays free.

    Tracing records the ops for this example; our layers only branch on H, W and C (padding amounts, input checks),
    which every input of the run shares, so the trace holds for any N (the check runs batch 16 and 1 to be sure).
    torch 2.14 deprecates torch.jit in favour of torch.export; it is still what C++/mobile PyTorch loads.
    """
    import torch

    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # "torch.jit.trace is deprecated"
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # the shape checks, constant for a given input size
        torch.jit.save(torch.jit.trace(model, example, check_trace=False), buffer)
    return buffer.getvalue()


# ── checking ──────────────────────────────────────────────────────────────────────────────────────────────────────
def check_batch(run: LoadedRun | Run | str | Path):
    """16 normalised N×C×H×W images for the run's input: the sample photos resized to it, then seeded random pixels
    (on the device the run is loaded on; the CPU for a folder).

    Not the run's own data: it may be large, or not on this machine. Photos bring real image statistics; uniform
    noise reaches every pixel value, the extremes included.
    """
    loaded = load(run, device="cpu")
    photos = [loaded.image(sample_photo(name)) for name in CHECK_PHOTOS]
    noise = np.random.default_rng(0).integers(0, 256, (CHECK_IMAGES - len(photos), *loaded.input), dtype=np.uint8)
    return loaded.tensor(np.concatenate([np.stack(photos), noise]))


def max_abs_diff(model, run_exported, batch) -> float:
    """Largest |exported − eager| over `batch` run whole and over its first image alone (the batch axis is free)."""
    import torch

    diff = 0.0
    for x in (batch, batch[:1]):
        with torch.inference_mode():
            expected = model(x).numpy()
        got = run_exported(x)
        if got.shape != expected.shape:
            return float("inf")
        diff = max(diff, float(np.abs(got - expected).max()))
    return diff


def _onnx_runner(data: bytes, where: str):
    session = onnx_session(data, where)
    return lambda x: session.run(None, {"images": onnx_input(x)})[0]


def _torchscript_runner(data: bytes):
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # "torch.jit.load is deprecated"
        module = torch.jit.load(io.BytesIO(data))  # our own bytes, made a moment ago

    def run(x):
        with torch.inference_mode():
            return module(x).numpy()

    return run


def _out_path(out: str | Path, name: str) -> Path:
    """The file `out` names: itself, or `out/name` when it is a folder or a name without a suffix (a folder, made
    when the file is written). OutputError for an empty `out`."""
    if not str(out):
        raise OutputError("--out: expected a file or folder path, received an empty one")
    path = Path(out)
    return path / name if path.is_dir() or (not path.suffix and not path.exists()) else path


def _check_out(path: Path, chosen: bool, overwrite: bool, run_path: Path) -> None:
    """Refuse an output path that would replace what export did not make (see `export`). `chosen`: named by the user
    (the default RUN/export/model.* is export's own); `run_path`: the run exported, whose export/ is the only place
    inside a run folder it writes (links resolved: never another run's folder)."""
    resolved = Path(os.path.realpath(path))
    own = Path(os.path.realpath(run_path)) / EXPORT
    for folder in resolved.parents:  # a run's files (weights, checkpoint, config) are never an export's target
        if (folder / CONFIG).is_file() and (folder / SPEC).is_file():
            if folder != own.parent or not resolved.is_relative_to(own):
                raise OutputError(
                    f"{path}: is inside the run folder {folder}; export to {run_path / EXPORT} or outside any run; "
                    "nothing was changed"
                )
            break
    check_replaceable(path)
    sidecar = sidecar_path(path)
    info = read_json(sidecar) if sidecar.exists() else None
    check_replaceable(sidecar)
    if sidecar.exists() and not _is_sidecar(info):
        raise OutputError(
            f"{sidecar}: exists and is not a model.json of convscope's (the description of {path.name} goes there); "
            "export under another name; nothing was changed"
        )
    made_here = _is_sidecar(info) and any(e.get("file") == path.name for e in info["exports"].values())
    if chosen and path.exists() and not (made_here or overwrite):
        raise OutputError(f"{path}: exists and was not written by convscope export; --overwrite replaces it")


def _is_sidecar(info: Any) -> bool:
    """Whether a JSON is a model.json export wrote (what it describes, and its exports)."""
    return (
        isinstance(info, dict)
        and "input_layout" in info
        and isinstance(info.get("exports"), dict)
        and all(isinstance(e, dict) for e in info["exports"].values())
    )


# ── the sidecar ───────────────────────────────────────────────────────────────────────────────────────────────────
def _write_sidecar(about: dict[str, Any], path: Path, fmt: str, diff: float, data: bytes) -> Path:
    """Write (or add this format's entry to) the model.json beside `path`; `about`: what the model is (_about)."""
    from convscope.files import atomic_write_text

    sidecar = sidecar_path(path)
    old = read_json(sidecar)
    same_model = isinstance(old, dict) and {k: old.get(k) for k in about} == about
    exports = dict(old["exports"]) if same_model and isinstance(old.get("exports"), dict) else {}
    exports[fmt] = _export_entry(path, fmt, diff, data)
    atomic_write_text(sidecar, json.dumps({**about, "exports": exports}, indent=2, ensure_ascii=False) + "\n")
    return sidecar


def _about(run: Run, outputs: str, mirror_averaged: bool) -> dict[str, Any]:
    """What every export of this run shares: the input it takes, how to normalise it, what comes out (`outputs`,
    the task's), and whether the graph averages each image with its mirror image."""
    return {
        "run": run.path.name,
        "model": run.spec.name,
        "input": list(run.spec.input),  # H, W, C
        "input_layout": INPUT_LAYOUT,
        "mean": list(run.data.mean),
        "std": list(run.data.std),
        "classes": list(run.data.classes),
        "outputs": outputs,
        "output_layout": OUTPUTS[outputs],
        # The logits are already the average over the image and its mirror image: the graph computes both.
        "mirror_averaged": mirror_averaged,
    }


def _export_entry(path: Path, fmt: str, diff: float, data: bytes) -> dict[str, Any]:
    import torch

    entry = {"format": fmt, "file": path.name, "sha256": hashlib.sha256(data).hexdigest(), "max_abs_diff": diff}
    if fmt == "onnx":
        import onnx

        opsets = onnx.load_from_string(data).opset_import
        entry["opset"] = next(o.version for o in opsets if o.domain in ("", "ai.onnx"))
    return {**entry, "torch": torch.__version__.split("+")[0]}
