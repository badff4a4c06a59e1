"""Everything a training run writes and reads back: atomic writes, safetensors weights, resumable training state.

Safe formats only: tensors go to safetensors, everything else to JSON. Nothing here unpickles anything except through
`torch.load(..., weights_only=True)`, whose unpickler refuses every class that is not a tensor or plain container.

Training state is two files in one folder: `state.safetensors` (optimizer tensors, torch RNG) and `state.json`
(everything else, plus the SHA-256 of `state.safetensors`). The JSON is written last, so a save interrupted between
the two writes leaves a pair whose checksum disagrees, and loading it is an error rather than a silent mix of steps.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import random
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import safetensors.torch
import torch
from safetensors import SafetensorError
from torch import Tensor, nn
from torch.optim.lr_scheduler import LRScheduler

from convscope.errors import CheckpointError

logger = logging.getLogger(__name__)

CHECKSUM_KEY = "convscope.sha256"
STATE_TENSORS = "state.safetensors"
STATE_JSON = "state.json"
_STATE_FORMAT = "convscope.training-state/1"


# ── atomic writes ─────────────────────────────────────────────────────────────────────────────────────────────────
def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Replace `path` by `data` so readers see the old file or the new one, never a mix; makes missing folders."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Same folder as the target: os.replace is only atomic within one file system.
    tmp = tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False)
    try:
        with tmp:
            tmp.write(data)
            tmp.flush()
            os.fsync(tmp.fileno())  # the bytes must be on disk before the name points at them
        # NamedTemporaryFile creates 0600; keep the old file's mode, or the usual 0644 for a new one.
        os.chmod(tmp.name, path.stat().st_mode & 0o777 if path.exists() else 0o644)
        os.replace(tmp.name, path)
    except BaseException:
        Path(tmp.name).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """`atomic_write_bytes` for UTF-8 text."""
    atomic_write_bytes(path, text.encode("utf-8"))


def _fsync_dir(folder: Path) -> None:
    # Makes the rename itself durable. Best effort: some systems (Windows, some network mounts) cannot open a folder.
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# ── weights ───────────────────────────────────────────────────────────────────────────────────────────────────────
def tensors_sha256(tensors: Mapping[str, Tensor]) -> str:
    """SHA-256 over names, dtypes, shapes and raw bytes in sorted name order (safetensors checks none of the bytes)."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}\0{t.dtype}\0{list(t.shape)}\0{t.numel() * t.element_size()}\n".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()


def _to_bytes(tensors: Mapping[str, Tensor], metadata: Mapping[str, str] | None = None) -> bytes:
    # clone(): state dicts may share storage (tied weights, views), which safetensors refuses to write.
    flat = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}
    meta = dict(metadata or {})
    bad = {k: type(v).__name__ for k, v in meta.items() if not (isinstance(k, str) and isinstance(v, str))}
    if bad:
        raise CheckpointError(f"weights metadata must map strings to strings; received {bad}")
    meta[CHECKSUM_KEY] = tensors_sha256(flat)
    return safetensors.torch.save(flat, metadata=meta)


def _read_safetensors(path: str | os.PathLike, data: bytes | None = None) -> tuple[dict[str, Tensor], dict[str, str]]:
    """Tensors and metadata of a safetensors file (or of `data`, its bytes), checksum verified when it carries one."""
    if data is None:
        try:
            data = Path(path).read_bytes()
        except FileNotFoundError:
            raise CheckpointError(f"{path}: no such file") from None
        except OSError as e:
            raise CheckpointError(f"{path}: cannot be read ({e.strerror})") from None
    try:
        tensors = safetensors.torch.load(data)
    except SafetensorError as e:
        raise CheckpointError(f"{path}: not a readable safetensors file (truncated or damaged?): {e}") from None
    # safetensors.torch.load drops the metadata; the header (8-byte little-endian length, then JSON) is valid here.
    header = json.loads(data[8 : 8 + int.from_bytes(data[:8], "little")])
    metadata = dict(header.get("__metadata__") or {})
    expected = metadata.pop(CHECKSUM_KEY, None)
    if expected is None:  # written by another tool (e.g. downloaded weights): nothing to verify against
        logger.info("%s carries no %s checksum; damage cannot be detected", path, CHECKSUM_KEY)
    elif tensors_sha256(tensors) != expected:
        raise CheckpointError(f"{path}: contents do not match their checksum (file damaged or edited)")
    return tensors, metadata


def save_weights(path: str | os.PathLike, model: nn.Module, metadata: dict[str, str] | None = None) -> None:
    """Write the model's parameters and persistent buffers (e.g. batchnorm running stats) as safetensors, atomically."""
    atomic_write_bytes(path, _to_bytes(model.state_dict(), metadata))


def load_weights(path: str | os.PathLike, model: nn.Module) -> dict[str, str]:
    """Load weights saved by `save_weights` into `model`; return their metadata. The model is untouched on any error."""
    tensors, metadata = _read_safetensors(path)
    if problems := state_dict_problems(model.state_dict(), tensors, check_dtype=True):
        raise CheckpointError(f"{path}: does not match the model: " + "; ".join(problems))
    model.load_state_dict(tensors, strict=True)
    return metadata


def state_dict_problems(
    expected: Mapping[str, Tensor],
    tensors: Mapping[str, Tensor],
    *,
    in_file: Mapping[str, str] | None = None,
    limit: int | None = None,
    check_dtype: bool = False,
) -> list[str]:
    """Why `tensors` cannot load strictly into a model whose state dict is `expected`: names missing, names not
    expected, shapes (and with `check_dtype`, dtypes) that differ; [] when it can. Batchnorm's `num_batches_tracked`
    may be missing unless dtypes are checked (files from elsewhere often lack it; a run's own file never does).

    in_file: the model's name → the file's, when the file uses other names, so messages name what the file holds.
    limit: list at most this many names of each kind, then "… and N more".
    """
    in_file = in_file or {}

    def listed(names: list[str]) -> str:
        shown = names if limit is None else names[:limit]
        more = len(names) - len(shown)
        return ", ".join(shown) + (f" … and {more} more" if more else "")

    optional = () if check_dtype else (".num_batches_tracked",)
    problems = []
    if missing := [k for k in expected if k not in tensors and not (optional and k.endswith(optional))]:
        problems.append("missing " + listed(missing))
    if unexpected := sorted(in_file.get(k, k) for k in tensors if k not in expected):  # sorted for people
        problems.append("unexpected " + listed(unexpected))
    differ = []
    for name, mine in expected.items():
        theirs = tensors.get(name)
        if theirs is not None and (theirs.shape != mine.shape or (check_dtype and theirs.dtype != mine.dtype)):
            shown = name if in_file.get(name, name) == name else f"{name} ({in_file[name]} in the file)"
            differ.append(f"{shown} is {_describe(theirs, mine)} in the file, {_describe(mine, theirs)} in the model")
    kept = differ if limit is None else differ[:limit]
    if len(kept) < len(differ):
        kept.append(f"… and {len(differ) - len(kept)} more of other shapes")
    return problems + kept


def _describe(t: Tensor, other: Tensor) -> str:
    """`t`'s dtype and/or shape (H×W… as people write it), only the parts that differ from `other`."""
    dtype = str(t.dtype).removeprefix("torch.") if t.dtype != other.dtype else ""
    shape = ("×".join(map(str, t.shape)) if t.dim() else "scalar") if t.shape != other.shape else ""
    return f"{dtype} {shape}".strip()


def load_state_dict_file(path: str | os.PathLike) -> dict[str, Tensor]:
    """A plain state dict (names → tensors) from a `.safetensors` file or a `.pt`/`.pth` file, never unpickling code."""
    if Path(path).suffix == ".safetensors":
        return _read_safetensors(path)[0]
    if not Path(path).is_file():
        raise CheckpointError(f"{path}: no such file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # UnpicklingError for refused or garbled pickles, RuntimeError for a broken zip, ...
        # torch's message advises switching the weights-only check off; only the reason is passed on, never that.
        if refused := re.search(r"Unsupported global: GLOBAL (\S+)", str(e)):
            raise CheckpointError(
                f"{path}: holds a Python object ({refused[1]}); only plain state dicts (names → tensors) are loaded, "
                "since unpickling other objects can run any code. Save `model.state_dict()`, or convert to safetensors"
            ) from None
        reason = str(e).split("WeightsUnpickler error:")[-1].strip().split("\n")[0]
        raise CheckpointError(f"{path}: cannot be read as a PyTorch state dict (damaged?): {reason}") from None
    if not isinstance(obj, Mapping) or not all(isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items()):
        found = f"keys {list(obj)[:8]}" if isinstance(obj, Mapping) else type(obj).__name__
        raise CheckpointError(f"{path}: expected a state dict mapping names to tensors; found {found}")
    return dict(obj)


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
            raise CheckpointError(f"{STATE_TENSORS} lacks tensor {obj['$tensor']!r} named in {STATE_JSON}")
        return tensors[obj["$tensor"]]
    if "$tuple" in obj:
        return tuple(_decode(v, tensors) for v in obj["$tuple"])
    if "$items" in obj:
        return {k: _decode(v, tensors) for k, v in obj["$items"]}
    return {k: _decode(v, tensors) for k, v in obj.items()}


# ── random number generators ──────────────────────────────────────────────────────────────────────────────────────
def capture_rng() -> tuple[dict[str, Tensor], dict]:
    """The CPU torch, global NumPy and Python `random` generator states, as (tensors, JSON-able data).

    CUDA generators and `np.random.Generator` objects held by other code are not included; put a generator's
    `bit_generator.state` (a dict of ints) in the training state's `extra` to keep it.
    """
    kind, keys, pos, has_gauss, gauss = np.random.get_state(legacy=True)
    version, internal, gauss_next = random.getstate()
    data = {
        "numpy": {"kind": kind, "keys": keys.tolist(), "pos": int(pos), "has_gauss": int(has_gauss), "gauss": gauss},
        "python": {"version": version, "internal": list(internal), "gauss_next": gauss_next},
    }
    return {"torch": torch.get_rng_state()}, data


def restore_rng(tensors: Mapping[str, Tensor], data: Mapping) -> None:
    """Put back the states returned by `capture_rng`."""
    try:
        n, p = data["numpy"], data["python"]
        numpy_state = (n["kind"], np.asarray(n["keys"], dtype=np.uint32), n["pos"], n["has_gauss"], n["gauss"])
        python_state = (p["version"], tuple(p["internal"]), p["gauss_next"])
        torch_state = tensors["torch"]
        np.random.set_state(numpy_state)
        random.setstate(python_state)
        torch.set_rng_state(torch_state)
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"random generator state is incomplete or damaged: {e!r}") from None


# ── training state ────────────────────────────────────────────────────────────────────────────────────────────────
def save_training_state(
    folder: str | os.PathLike,
    *,
    optimizer: torch.optim.Optimizer,
    scheduler: LRScheduler | None,
    epoch: int,
    step: int,
    extra: dict,
) -> None:
    """Write what `load_training_state` needs to resume exactly: optimizer, scheduler, RNGs, epoch, step, `extra`.

    `extra` may hold numbers, strings, lists, dicts and tensors. Callables inside the scheduler's state dict are dropped
    (torch ≥ 2.2 already replaces LambdaLR's plain functions with None), so the resuming scheduler must be constructed
    with the same functions.
    """
    folder = Path(folder)
    if clash := {"epoch", "step"} & set(extra):
        raise CheckpointError(f"extra must not hold {sorted(clash)}: they are saved, and returned, on their own")
    rng_tensors, rng_data = capture_rng()
    tensors = {f"rng/{k}": v for k, v in rng_tensors.items()}
    doc = {
        "format": _STATE_FORMAT,
        "epoch": int(epoch),
        "step": int(step),
        "optimizer": _encode(optimizer.state_dict(), "optimizer", tensors),
        "scheduler": None if scheduler is None else _encode(scheduler.state_dict(), "scheduler", tensors),
        "rng": rng_data,
        "extra": _encode(dict(extra), "extra", tensors),
    }
    blob = _to_bytes(tensors)
    doc[STATE_TENSORS + ".sha256"] = hashlib.sha256(blob).hexdigest()
    atomic_write_bytes(folder / STATE_TENSORS, blob)
    atomic_write_text(folder / STATE_JSON, json.dumps(doc) + "\n")  # last: it vouches for the tensors


def load_training_state(
    folder: str | os.PathLike, *, optimizer: torch.optim.Optimizer, scheduler: LRScheduler | None
) -> dict:
    """Restore optimizer, scheduler and RNGs saved by `save_training_state`; return {"epoch", "step", **extra}."""
    folder = Path(folder)
    json_path, tensors_path = folder / STATE_JSON, folder / STATE_TENSORS
    try:
        doc = json.loads(json_path.read_text(encoding="utf-8"))
        blob = tensors_path.read_bytes()
    except FileNotFoundError as e:
        raise CheckpointError(
            f"{e.filename}: no such file (training state is {STATE_JSON} + {STATE_TENSORS})"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{json_path}: not readable training state: {e}") from None
    found = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
    if found != _STATE_FORMAT:
        raise CheckpointError(f"{json_path}: expected format {_STATE_FORMAT!r}, found {found!r}")
    if hashlib.sha256(blob).hexdigest() != doc.get(STATE_TENSORS + ".sha256"):
        raise CheckpointError(
            f"{tensors_path}: does not belong to {json_path} (a save was interrupted, or a file was replaced or edited)"
        )
    tensors, _ = _read_safetensors(tensors_path, blob)  # the bytes just checked, not a second read
    try:
        optimizer_state = _decode(doc["optimizer"], tensors)
        scheduler_state = _decode(doc["scheduler"], tensors)
        extra = _decode(doc["extra"], tensors)
        rng_tensors = {k.removeprefix("rng/"): v for k, v in tensors.items() if k.startswith("rng/")}
        epoch, step, rng_data = doc["epoch"], doc["step"], doc["rng"]
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{json_path}: incomplete or damaged training state: {e!r}") from None
    if (scheduler is None) != (scheduler_state is None):
        saved = "no scheduler state" if scheduler_state is None else "a scheduler state"
        raise CheckpointError(f"{json_path}: holds {saved}, but scheduler={scheduler!r} was given")
    try:
        optimizer.load_state_dict(optimizer_state)
        if scheduler is not None:
            scheduler.load_state_dict(scheduler_state)
    except (KeyError, ValueError, TypeError) as e:
        raise CheckpointError(f"{json_path}: does not match this optimizer/scheduler: {e}") from None
    restore_rng(rng_tensors, rng_data)
    return {"epoch": epoch, "step": step, **extra}


def saved_extra(folder: str | os.PathLike) -> dict:
    """The plain values (numbers, text) of a saved state's `extra`, read without restoring anything; {} if none."""
    path = Path(folder) / STATE_JSON
    try:
        extra = json.loads(path.read_text(encoding="utf-8")).get("extra", {})
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError) as e:
        raise CheckpointError(f"{path}: not readable training state: {e}") from None
    return {k: v for k, v in extra.items() if isinstance(v, int | float | str)} if isinstance(extra, dict) else {}
