"""The training checkpoint: everything needed to resume a run exactly, in ONE file replaced atomically.

One file, not several, so that a kill at any instant leaves either the previous complete checkpoint or the new one,
never a mix of steps. The file is safetensors: the model's weights (`model/…`), the best weights so far (`best/…`),
the optimizer's and scheduler's tensors, the torch RNG; and, in its metadata, a JSON document with everything else
(epoch, step, plain optimizer/scheduler state, NumPy and Python RNG states, the caller's `extra`) and its SHA-256.
safetensors itself checks no bytes, so the tensors carry a checksum too (`checkpoint.CHECKSUM_KEY`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.optim.lr_scheduler import LRScheduler

from convscope import userfiles
from convscope.errors import CheckpointError
from convscope.files import atomic_write_bytes
from convscope.weights import read_safetensors, safetensors_bytes, state_dict_problems

log = logging.getLogger("convscope.train")
FORMAT = "convscope.checkpoint/1"
DOC_KEY = "convscope.checkpoint"  # metadata entry holding the JSON document
MAX_COUNT = 2**53  # epochs and steps beyond this are not counts a run can reach (and not exact in a float)


# ── plain data ⇄ JSON + tensors ───────────────────────────────────────────────────────────────────────────────────
# Optimizer and scheduler state dicts are nested dicts/lists/tuples of numbers, strings and tensors, with int keys.
# JSON has no tuples, int keys or tensors, so those are tagged ("$tuple", "$items", "$tensor") to come back exactly.
def _encode(obj: Any, path: str, tensors: dict[str, Tensor]) -> Any:
    if isinstance(obj, Tensor):
        name = path if path not in tensors else f"{path}#{len(tensors)}"
        tensors[name] = obj
        return {"$tensor": name}
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, tuple | list):
        items = [_encode(v, f"{path}/{i}", tensors) for i, v in enumerate(obj)]
        return {"$tuple": items} if isinstance(obj, tuple) else items
    if isinstance(obj, Mapping):
        # Callables (e.g. a scheduler's function in old torch versions) cannot be saved as data; they are dropped so
        # that load_state_dict, which updates the object's __dict__, keeps the freshly constructed object's own.
        kept = {k: v for k, v in obj.items() if not callable(v)}
        if all(isinstance(k, str) and not k.startswith("$") for k in kept):
            return {k: _encode(v, f"{path}/{k}", tensors) for k, v in kept.items()}
        if all(isinstance(k, str | int) for k in kept):
            return {"$items": [[k, _encode(v, f"{path}/{k}", tensors)] for k, v in kept.items()]}
    raise CheckpointError(f"cannot save {path}: a {type(obj).__name__} is not plain data (numbers, strings, tensors)")


def _decode(obj: Any, tensors: Mapping[str, Tensor]) -> Any:
    if isinstance(obj, list):
        return [_decode(v, tensors) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if "$tensor" in obj:
        if obj["$tensor"] not in tensors:
            raise CheckpointError(f"lacks the tensor {obj['$tensor']!r} that its state names")
        return tensors[obj["$tensor"]]
    if "$tuple" in obj:
        return tuple(_decode(v, tensors) for v in obj["$tuple"])
    if "$items" in obj:
        return {k: _decode(v, tensors) for k, v in obj["$items"]}
    return {k: _decode(v, tensors) for k, v in obj.items()}


# ── random number generators ──────────────────────────────────────────────────────────────────────────────────────
def capture_rng() -> tuple[dict[str, Tensor], dict]:
    """The CPU torch, CUDA (once CUDA is in use: one per GPU), global NumPy and Python `random` generator states, as
    (tensors, JSON-able data).

    `np.random.Generator` objects held by other code are not included; put a generator's `bit_generator.state` (a
    dict of ints) in the checkpoint's `extra` to keep it.
    """
    kind, keys, pos, has_gauss, gauss = np.random.get_state(legacy=True)
    version, internal, gauss_next = random.getstate()
    data = {
        "numpy": {"kind": kind, "keys": keys.tolist(), "pos": int(pos), "has_gauss": int(has_gauss), "gauss": gauss},
        "python": {"version": version, "internal": list(internal), "gauss_next": gauss_next},
    }
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():  # dropout on a GPU draws from its own generator
        tensors |= {f"cuda{i}": state for i, state in enumerate(torch.cuda.get_rng_state_all())}
    return tensors, data


def restore_rng(tensors: Mapping[str, Tensor], data: Mapping) -> None:
    """Put back the states returned by `capture_rng`. Raises CheckpointError when they are incomplete or damaged."""
    try:
        n, p = data["numpy"], data["python"]
        numpy_state = (n["kind"], np.asarray(n["keys"], dtype=np.uint32), n["pos"], n["has_gauss"], n["gauss"])
        python_state = (p["version"], tuple(p["internal"]), p["gauss_next"])
        torch_state = tensors["torch"]
        np.random.set_state(numpy_state)
        random.setstate(python_state)
        torch.set_rng_state(torch_state)
        _restore_cuda_rng(tensors)
    except (KeyError, TypeError, ValueError, RuntimeError, OverflowError) as e:
        raise CheckpointError(f"random generator state is incomplete or damaged: {e!r}") from None


def _restore_cuda_rng(tensors: Mapping[str, Tensor]) -> None:
    """Put back the CUDA generators saved with the checkpoint, where this machine has as many GPUs. A run moved to
    another device (CPU to GPU, or another GPU count) cannot continue CUDA's draws: its dropout masks differ from an
    uninterrupted run's from here on (the image order and augmentation still match); said once in the log."""
    saved = sorted((k for k in tensors if k.startswith("cuda")), key=lambda k: int(k[4:]))
    available = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if saved and len(saved) == available:
        torch.cuda.set_rng_state_all([tensors[k] for k in saved])
    elif saved:
        log.warning(
            "the checkpoint holds the random states of %d GPU(s), this machine has %d: dropout draws will differ "
            "from an uninterrupted run's",
            len(saved),
            available,
        )


# ── the checkpoint file ───────────────────────────────────────────────────────────────────────────────────────────
@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint read from disk and verified, not yet applied (see `restore`).

    model / best: state dicts (names → tensors) of the current weights and of the best ones so far (None: no best yet).
    extra: what the trainer saved besides (decoded: tensors are tensors again); its values are the caller's to check.
    """

    path: Path
    epoch: int
    step: int
    extra: dict
    model: dict[str, Tensor]
    best: dict[str, Tensor] | None
    optimizer: Any
    scheduler: Any
    rng: tuple[dict[str, Tensor], dict]


def save_checkpoint(
    path: str | os.PathLike,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: LRScheduler | None,
    epoch: int,
    step: int,
    extra: dict,
    best: Mapping[str, Tensor] | None = None,
) -> None:
    """Write everything `read_checkpoint` + `restore` need to resume exactly, as one file replaced atomically.

    `extra` may hold numbers, strings, lists, dicts and tensors. Callables inside the scheduler's state dict are dropped
    (torch ≥ 2.2 already replaces LambdaLR's plain functions with None), so the resuming scheduler must be constructed
    with the same functions. Raises OutputError when the file cannot be written (the previous one is then intact).
    """
    if clash := {"epoch", "step"} & set(extra):
        raise CheckpointError(f"extra must not hold {sorted(clash)}: they are saved, and returned, on their own")
    rng_tensors, rng_data = capture_rng()
    tensors = {f"model/{k}": v for k, v in model.state_dict().items()}
    tensors |= {f"best/{k}": v for k, v in (best or {}).items()}
    tensors |= {f"rng/{k}": v for k, v in rng_tensors.items()}
    doc = {
        "format": FORMAT,
        "epoch": int(epoch),
        "step": int(step),
        "has_best": best is not None,
        "optimizer": _encode(optimizer.state_dict(), "optimizer", tensors),
        "scheduler": None if scheduler is None else _encode(scheduler.state_dict(), "scheduler", tensors),
        "rng": rng_data,
        "extra": _encode(dict(extra), "extra", tensors),
    }
    text = json.dumps(doc, allow_nan=True)
    meta = {DOC_KEY: text, DOC_KEY + ".sha256": hashlib.sha256(text.encode()).hexdigest()}
    atomic_write_bytes(path, safetensors_bytes(tensors, meta))


def read_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read and verify a checkpoint written by `save_checkpoint`: both checksums, the format, epoch and step.

    Raises CheckpointError (one line naming the file) when it is missing, damaged, edited or of another format.
    """
    path = Path(path)
    tensors, meta = read_safetensors(path)
    text = meta.get(DOC_KEY)
    if text is None:
        raise CheckpointError(f"{path}: not a convscope checkpoint (no {DOC_KEY} entry)")
    if hashlib.sha256(text.encode()).hexdigest() != meta.get(DOC_KEY + ".sha256"):
        raise CheckpointError(f"{path}: its state does not match its checksum (file damaged or edited)")
    try:
        doc = userfiles.parse_json(text)  # nested past 100 levels: refused, not a RecursionError
        found = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        if found != FORMAT:
            raise CheckpointError(f"{path}: expected format {FORMAT!r}, found {found!r}")
        epoch, step = _count(doc["epoch"], "epoch", path), _count(doc["step"], "step", path)
        extra = _decode(doc["extra"], tensors)
        if not isinstance(extra, dict):
            raise TypeError("extra is not a mapping")
        parts = {}
        for part in ("model", "best", "rng"):
            prefix = part + "/"
            parts[part] = {k.removeprefix(prefix): v for k, v in tensors.items() if k.startswith(prefix)}
        return Checkpoint(
            path=path,
            epoch=epoch,
            step=step,
            extra=extra,
            model=parts["model"],
            best=parts["best"] if doc["has_best"] is True else None,
            optimizer=_decode(doc["optimizer"], tensors),
            scheduler=_decode(doc["scheduler"], tensors),
            rng=(parts["rng"], doc["rng"]),
        )
    except CheckpointError as e:
        raise CheckpointError(str(e) if str(e).startswith(str(path)) else f"{path}: {e}") from None
    except userfiles.JsonTooDeep as e:
        raise CheckpointError(f"{path}: incomplete or damaged checkpoint: its state, {e}") from None
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise CheckpointError(f"{path}: incomplete or damaged checkpoint: {e!r}") from None


def _count(value: Any, name: str, path: Path) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < MAX_COUNT:
        raise CheckpointError(f"{path}: {name} must be a count from 0 to 2**53. Received: {str(value)[:40]}")
    return value


def restore(
    checkpoint: Checkpoint, *, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: LRScheduler | None
) -> None:
    """Put a checkpoint's weights, optimizer and scheduler state and RNGs back. Raises CheckpointError (naming the
    file) when they do not fit: weights of another network, state of another optimizer or scheduler."""
    path = checkpoint.path
    if problems := state_dict_problems(model.state_dict(), checkpoint.model, check_dtype=True):
        raise CheckpointError(f"{path}: does not match the model: " + "; ".join(problems))
    if checkpoint.best is not None and (problems := state_dict_problems(model.state_dict(), checkpoint.best)):
        raise CheckpointError(f"{path}: its best weights do not match the model: " + "; ".join(problems))
    if (scheduler is None) != (checkpoint.scheduler is None):
        saved = "no scheduler state" if checkpoint.scheduler is None else "a scheduler state"
        raise CheckpointError(f"{path}: holds {saved}, but scheduler={scheduler!r} was given")
    try:
        optimizer.load_state_dict(checkpoint.optimizer)
        if scheduler is not None:
            scheduler.load_state_dict(checkpoint.scheduler)
    except (KeyError, ValueError, TypeError, IndexError) as e:
        raise CheckpointError(f"{path}: does not match this optimizer/scheduler: {e}") from None
    restore_rng(*checkpoint.rng)
    model.load_state_dict(checkpoint.model, strict=True)
