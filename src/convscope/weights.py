"""Safetensors weights: written atomically with a checksum, read back verified, and plain state dicts from elsewhere.

Safe formats only: tensors go to safetensors, everything else to JSON. Nothing here unpickles anything except through
`torch.load(..., weights_only=True)`, whose unpickler refuses every class that is not a tensor or plain container.
The resumable training state (one file per checkpoint) is `convscope.training.checkpoint_file`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path

import safetensors.torch
import torch
from safetensors import SafetensorError
from torch import Tensor, nn

from convscope.errors import CheckpointError
from convscope.files import atomic_write_bytes

logger = logging.getLogger(__name__)

CHECKSUM_KEY = "convscope.sha256"


# ── weights ───────────────────────────────────────────────────────────────────────────────────────────────────────
def tensors_sha256(tensors: Mapping[str, Tensor]) -> str:
    """SHA-256 over names, dtypes, shapes and raw bytes in sorted name order (safetensors checks none of the bytes)."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}\0{t.dtype}\0{list(t.shape)}\0{t.numel() * t.element_size()}\n".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()


def safetensors_bytes(tensors: Mapping[str, Tensor], metadata: Mapping[str, str] | None = None) -> bytes:
    # clone(): state dicts may share storage (tied weights, views), which safetensors refuses to write.
    flat = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}
    meta = dict(metadata or {})
    bad = {k: type(v).__name__ for k, v in meta.items() if not (isinstance(k, str) and isinstance(v, str))}
    if bad:
        raise CheckpointError(f"weights metadata must map strings to strings; received {bad}")
    meta[CHECKSUM_KEY] = tensors_sha256(flat)
    return safetensors.torch.save(flat, metadata=meta)


def read_safetensors(path: str | os.PathLike, data: bytes | None = None) -> tuple[dict[str, Tensor], dict[str, str]]:
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
    atomic_write_bytes(path, safetensors_bytes(model.state_dict(), metadata))


def load_weights(path: str | os.PathLike, model: nn.Module) -> dict[str, str]:
    """Load weights saved by `save_weights` into `model`; return their metadata. The model is untouched on any error."""
    tensors, metadata = read_safetensors(path)
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
    """A plain state dict (names → tensors) from a `.safetensors` file or a `.pt`/`.pth` file, never unpickling code.

    Raises CheckpointError naming the file when it is missing or not a regular file (a named pipe is refused without
    being opened), damaged, holds Python objects, or is not a mapping of names to tensors. torch's warnings while it
    reads (e.g. "Detected pickle protocol 4") are logged at INFO, never printed beside the refusal.
    """
    from convscope.files import check_regular_file, reader_warnings  # here: the rest of this module is not touched

    check_regular_file(path, "weights file", CheckpointError)
    if Path(path).suffix == ".safetensors":
        return read_safetensors(path)[0]
    try:
        with reader_warnings(path, torch):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # UnpicklingError for refused or garbled pickles, RuntimeError for a broken zip, ...
        # torch's message advises switching the weights-only check off; only the reason is passed on, never that.
        if refused := re.search(r"Unsupported global: GLOBAL (\S+)", str(e)):
            raise CheckpointError(
                f"{path}: holds a Python object ({refused[1]}); only plain state dicts (names → tensors) are loaded, "
                "since unpickling other objects can run any code. Save `model.state_dict()`, or convert to safetensors"
            ) from None
        reason = str(e).split("WeightsUnpickler error:")[-1].strip().split("\n")[0]
        if not reason or reason.strip("'").isdigit():  # e.g. KeyError: 101 for bytes that are no pickle at all
            reason = f"{type(e).__name__} {reason}".strip()
        raise CheckpointError(f"{path}: cannot be read as a PyTorch state dict (damaged?): {reason}") from None
    if not isinstance(obj, Mapping) or not all(isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items()):
        found = f"keys {list(obj)[:8]}" if isinstance(obj, Mapping) else type(obj).__name__
        raise CheckpointError(f"{path}: expected a state dict mapping names to tensors; found {found}")
    return dict(obj)
