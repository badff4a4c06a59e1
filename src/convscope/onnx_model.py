"""An exported model.onnx with its model.json, run by ONNX Runtime: loading and checking the pair, and the session.

`convscope export` writes the pair (convscope.export) and checks its file with the same session; `convscope predict
MODEL.onnx IMAGES...` runs it (convscope.classify.predict.predict_onnx). Both import this module, which imports neither.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from convscope import userfiles
from convscope.errors import CheckpointError


def sidecar_path(model_file: str | Path) -> Path:
    """model.onnx -> model.json (same folder, same stem)."""
    return Path(model_file).with_suffix(".json")


def read_json(path: Path) -> Any:
    """The JSON in `path`, or None when there is none, it is not JSON, or it is past convscope.userfiles' bounds
    (16 MiB, nested 100 levels): a model.json is a few kB, so such a file is not one."""
    try:
        return userfiles.read_json(path, what="model.json", error=CheckpointError)
    except CheckpointError:
        return None


def onnx_session(model: bytes | Path, where: str):
    """An ONNX Runtime CPU session, using as many threads as torch (so `--threads` means the same for both)."""
    import onnxruntime as ort
    import torch

    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.log_severity_level = 3  # errors only: its warnings are about graph optimisations, not about the user
    try:
        return ort.InferenceSession(
            model if isinstance(model, bytes) else str(model), options, ["CPUExecutionProvider"]
        )
    except Exception as err:  # noqa: BLE001 - ONNX Runtime's errors (InvalidProtobuf, Fail, ...) share no base class
        raise CheckpointError(f"{where}: not a model ONNX Runtime can load ({_first_line(err)})") from None


def onnx_input(x) -> np.ndarray:
    """A batch tensor as ONNX Runtime takes it."""
    # normalise() makes channels_last tensors; ONNX Runtime reads a plain C-ordered N×C×H×W array.
    return np.ascontiguousarray(x.numpy(), dtype=np.float32)


def _first_line(err: Exception) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__


@dataclass(frozen=True)
class OnnxModel:
    """An exported ONNX classifier and what its model.json says: `model(x)` maps N×C×H×W normalised float32 to
    N×classes logits."""

    path: Path
    info: dict[str, Any]
    session: Any

    @property
    def input(self) -> tuple[int, int, int]:
        return tuple(self.info["input"])

    def __call__(self, x) -> np.ndarray:
        return self.session.run(None, {"images": onnx_input(x)})[0]


def load_onnx(path: str | Path) -> OnnxModel:
    """An exported .onnx file and its model.json; a CheckpointError naming the file when either is unusable."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such model file")
    info = _read_sidecar(path)
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != info["exports"]["onnx"]["sha256"]:
        raise CheckpointError(
            f"{path}: not the file {sidecar_path(path).name} describes (its sha256 differs: damaged, or replaced "
            "since the export)"
        )
    session = onnx_session(data, str(path))
    h, w, c = info["input"]
    inputs = session.get_inputs()
    if len(inputs) != 1 or inputs[0].name != "images" or list(inputs[0].shape[1:]) != [c, h, w]:
        got = ", ".join(f"{i.name} {i.shape}" for i in inputs)
        raise CheckpointError(f"{path}: expected one input 'images' of N×{c}×{h}×{w} (model.json). Received: {got}")
    return OnnxModel(path, info, session)


def _read_sidecar(path: Path) -> dict[str, Any]:
    sidecar = sidecar_path(path)
    if not sidecar.is_file():
        raise CheckpointError(
            f"{path}: no {sidecar.name} beside it (convscope export writes one: input size, normalisation, classes)"
        )
    info = userfiles.read_json(sidecar, what="model.json", error=CheckpointError)  # one line when not JSON
    try:
        h, w, c = (int(v) for v in info["input"])
        mean, std, classes, exports = info["mean"], info["std"], info["classes"], info["exports"]
        if not (len(mean) == len(std) == c and all(s > 0 for s in std) and isinstance(classes, list)):
            raise ValueError(f"mean and std need {c} values each (std > 0), classes a list")
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(
            f"{sidecar}: not a model.json written by convscope export ({type(err).__name__}: {err})"
        ) from None
    if not isinstance(exports.get("onnx"), dict) or "sha256" not in exports["onnx"]:
        raise CheckpointError(f"{sidecar}: describes no ONNX export (only: {', '.join(exports) or 'nothing'})")
    return info
