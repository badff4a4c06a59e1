"""NetSpec, a whole network (an input shape and its layers), and reading and writing it as dicts and YAML files.

A spec file (YAML, or JSON, which YAML reads too) is written the way the layers are said aloud:

    name: cifar-3conv
    input: 32x32x3              # H×W×C, as image shapes are written
    layers:
      - conv: {filters: 32, size: 3, activation: relu}
      - pool: {kind: max}       # size 2, stride = size
      - flatten                 # a layer without settings may be a bare word
      - dense: {units: 10}

The layers themselves (Conv, Pool, ...) are defined in convscope.spec_layers and imported from here. Every value is
checked when the dataclass is created; a bad one is a SpecError naming the layer, the key, what was expected and what
was received. Whether the layers fit together (sizes, channels) is checked by `convscope.shapes.infer`, which needs
no torch.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from convscope.errors import SpecError
from convscope.files import check_regular_file
from convscope.spec_layers import (
    ACTIVATIONS,
    BASE_ARCH,
    LAYER_TYPES,
    PADDING_WORDS,
    POOL_KINDS,
    Activation,
    Base,
    BatchNorm,
    Conv,
    Dense,
    Detect,
    Dropout,
    Flatten,
    GlobalPool,
    Layer,
    Padding,
    Pair,
    Pool,
    is_int,
    padding_text,
    pair_text,
    shown,
    stride_text,
)
from convscope.yamlfile import compose_yaml, load_yaml, read_text

# The layer names are part of this module's interface: `from convscope.spec import Conv, NetSpec` is how everyone
# imports them, whichever module defines them.
__all__ = [
    "ACTIVATIONS",
    "BASE_ARCH",
    "LAYER_TYPES",
    "MAX_INPUT_VALUES",
    "PADDING_WORDS",
    "POOL_KINDS",
    "Activation",
    "Base",
    "BatchNorm",
    "Conv",
    "Dense",
    "Detect",
    "Dropout",
    "Flatten",
    "GlobalPool",
    "Layer",
    "NetSpec",
    "Padding",
    "Pair",
    "Pool",
    "layer_from_dict",
    "layer_to_dict",
    "load_spec",
    "padding_text",
    "pair_text",
    "parse_shape",
    "shape_text",
    "shown",
    "stride_text",
]

MAX_INPUT_VALUES = 2**28  # H·W·C of a network's input: a 8192×8192 color photo is 2**27.6


def _compact(pair: Pair) -> int | list[int]:
    """How a pair setting is written to files: a square one as one int, as people write it."""
    return pair[0] if pair[0] == pair[1] else [pair[0], pair[1]]


def parse_shape(value: Any, what: str = "input") -> tuple[int, int, int]:
    """'32x32x3', '32×32×3' or [32, 32, 3] -> (32, 32, 3): height, width, channels."""
    parts: Any = value
    if isinstance(value, str):
        parts = re.split(r"\s*[x×,]\s*", value.strip())
        parts = [int(p) if p.isdigit() else p for p in parts]
    if isinstance(parts, list | tuple) and len(parts) == 3 and all(is_int(p) and p > 0 for p in parts):
        if parts[0] * parts[1] * parts[2] > MAX_INPUT_VALUES:  # images are resized to it before any layer runs
            raise SpecError(
                f"{what}: {shape_text(tuple(parts))} is {parts[0] * parts[1] * parts[2]:,} values per image, more than"
                f" the {MAX_INPUT_VALUES:,} (1 GiB of float32) an input may have"
            )
        return (parts[0], parts[1], parts[2])
    raise SpecError(f"{what} must be H×W×C with positive integers, e.g. 32x32x3. Received: {shown(value)}")


def shape_text(shape: tuple[int, ...]) -> str:
    """(30, 30, 32) -> '30×30×32'; (1024,) -> '1024'."""
    return "×".join(str(s) for s in shape)


@dataclass(frozen=True)
class NetSpec:
    """A whole network: its input shape (H×W×C) and its layers in order."""

    input: tuple[int, int, int]
    layers: tuple[Layer, ...]
    name: str = "net"
    description: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "input", parse_shape(self.input))
        object.__setattr__(self, "layers", tuple(self.layers))
        if not self.layers:
            raise SpecError("a network needs at least one layer. Received: an empty layer list")
        for i, layer in enumerate(self.layers, 1):
            if not isinstance(layer, Layer):
                raise SpecError(f"layer {i}: expected a layer (Conv, Pool, ...). Received: {shown(layer)}", layer=i)
        seen: dict[str, int] = {}
        for i, name in enumerate(self.layer_names(), 1):
            if name in seen:
                kind = self.layers[i - 1].layer_type
                raise SpecError(
                    f"layer {i} ({kind}): name {name!r} is already used by layer {seen[name]}; names must be unique",
                    layer=i,
                )
            seen[name] = i

    def layer_names(self) -> tuple[str, ...]:
        """Each layer's name: the one given, else its kind and a count (conv1, conv2, pool1, ...)."""
        counts: dict[str, int] = {}
        names = []
        for layer in self.layers:
            counts[layer.layer_type] = counts.get(layer.layer_type, 0) + 1
            names.append(layer.name or f"{layer.layer_type}{counts[layer.layer_type]}")
        return tuple(names)

    @property
    def is_detector(self) -> bool:
        """Whether the network finds boxes (its last layer is `detect`) rather than classifying the whole image: the
        one answer to "which task is this?" (convscope.tasks.task_for, the commands that refuse the other kind)."""
        return self.layers[-1].layer_type == "detect"

    def with_input(self, shape: Any) -> NetSpec:
        """The same network for another input shape (H×W×C, as parse_shape reads it)."""
        return NetSpec(input=parse_shape(shape), layers=self.layers, name=self.name, description=self.description)

    def to_dict(self) -> dict[str, Any]:
        """The spec as a spec file's mapping (plain values only): from_dict gives back an equal NetSpec."""
        out: dict[str, Any] = {"name": self.name}
        if self.description:
            out["description"] = self.description
        out["input"] = "x".join(str(s) for s in self.input)
        out["layers"] = [layer_to_dict(layer) for layer in self.layers]
        return out

    @classmethod
    def from_dict(cls, data: Any) -> NetSpec:
        """A spec file's mapping (name, description, input, layers) as a NetSpec; a SpecError for anything wrong."""
        if not isinstance(data, dict):
            raise SpecError(f"a spec must be a mapping with 'input' and 'layers'. Received: {type(data).__name__}")
        _no_unknown_keys("spec", data, ("name", "description", "input", "layers"))
        for key in ("input", "layers"):
            if key not in data:
                raise SpecError(f"spec: '{key}' is missing (expected keys: name, description, input, layers)")
        if not isinstance(data["layers"], list):
            raise SpecError(f"spec: layers must be a list. Received: {type(data['layers']).__name__}")
        layers = tuple(layer_from_dict(item, i) for i, item in enumerate(data["layers"], 1))
        name = data.get("name", "net")
        if not isinstance(name, str):
            raise SpecError(f"spec: name must be text. Received: {shown(name)}")
        description = data.get("description", "")
        if not isinstance(description, str):
            raise SpecError(f"spec: description must be text. Received: {shown(description)}")
        return cls(input=parse_shape(data["input"]), layers=layers, name=name, description=description)

    def to_yaml(self) -> str:
        """The spec as spec-file YAML text."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True, default_flow_style=None)


def layer_to_dict(layer: Layer) -> dict[str, Any]:
    """A layer as a spec file writes it: {kind: {settings}}, a square pair as one int, no name unless one was given."""
    out: dict[str, Any] = {}
    for f in fields(layer):
        value = getattr(layer, f.name)
        if f.name == "name" and value is None:
            continue
        out[f.name] = _compact(value) if isinstance(value, tuple) else value
    return {layer.layer_type: out}


def _no_unknown_keys(where: str, data: dict, allowed: tuple[str, ...], layer: int | None = None) -> None:
    for key in data:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            detail = f"unknown key {shown(key)}{hint}. Expected one of: {', '.join(allowed)}"
            raise SpecError(f"{where}: {detail}", layer=layer, detail=detail)


def layer_from_dict(item: Any, index: int) -> Layer:
    """One entry of a spec's layer list: {kind: {settings}} or a bare kind word. `index` is 1-based."""
    if isinstance(item, str):
        kind, params = item, {}
    elif isinstance(item, dict) and len(item) == 1:
        kind, params = next(iter(item.items()))
        params = {} if params is None else params
    else:
        raise SpecError(
            f"layer {index}: expected one mapping like {{conv: {{filters: 32, size: 3}}}} or a word like 'flatten'. "
            f"Received: {shown(item)}",
            layer=index,
        )
    if kind not in LAYER_TYPES:
        close = difflib.get_close_matches(str(kind), LAYER_TYPES, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise SpecError(
            f"layer {index}: unknown layer kind {shown(kind)}{hint}. Expected one of: {', '.join(LAYER_TYPES)}",
            layer=index,
        )
    where = f"layer {index} ({kind})"
    if not isinstance(params, dict):
        raise SpecError(f"{where}: settings must be a mapping. Received: {shown(params)}", layer=index)
    cls = LAYER_TYPES[kind]
    _no_unknown_keys(where, params, tuple(f.name for f in fields(cls)), layer=index)
    try:
        return cls(**params)
    except TypeError:  # a required setting is missing
        missing = [f.name for f in fields(cls) if _is_required(f) and f.name not in params]
        raise SpecError(f"{where}: '{missing[0]}' is missing", layer=index) from None
    except SpecError as err:
        raise SpecError(f"{where}: {err.detail}", layer=index, detail=err.detail) from None


def _is_required(f) -> bool:
    return f.default is MISSING and f.default_factory is MISSING


def load_spec(path: str | Path) -> NetSpec:
    """Read a YAML or JSON spec file; errors name the file and, for a layer, its line.

    The YAML is read within convscope.yamlfile's bounds (nesting, expanded aliases, size): a hostile file is a
    one-line SpecError, not a RecursionError or gigabytes of expanded aliases.
    """
    path = check_regular_file(path, "spec file", SpecError)  # stat only: a named pipe would block the read forever
    text = read_text(path, SpecError, "spec file")
    data = load_yaml(text, str(path), SpecError, kind="YAML/JSON")
    try:
        return NetSpec.from_dict(data)
    except SpecError as err:
        line = _layer_line(text, err.layer) if err.layer else None
        where = f"{path}, line {line}" if line else str(path)
        raise SpecError(f"{where}: {err}", layer=err.layer, detail=err.detail) from None


def _layer_line(text: str, index: int) -> int | None:
    """1-based line where layer `index` (1-based) starts in a YAML text, if the text has such a layer."""
    root = compose_yaml(text)
    for key, value in getattr(root, "value", []) if isinstance(root, yaml.MappingNode) else []:
        if key.value == "layers" and isinstance(value, yaml.SequenceNode) and index <= len(value.value):
            return value.value[index - 1].start_mark.line + 1
    return None
