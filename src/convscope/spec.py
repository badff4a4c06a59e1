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

In Python a spec is built as in a spec file, or layer by layer (convscope.sequential, convscope.keras_names):

    spec = Sequential(input_shape=(32, 32, 3))      # or NetSpec(input="32x32x3", layers=[...])
    spec = spec.add(Conv(32, 3), Pool("max"))       # a new spec: a NetSpec never changes
    spec.summary()                                  # the table of `convscope summary`; a notebook shows it by itself

NetSpec's displays (summary, the notebook's HTML table) come from convscope.shapes and convscope.summary, imported
when first used, so that importing this module stays light; neither imports this module.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import MISSING, InitVar, dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from convscope.errors import SpecError
from convscope.files import check_regular_file
from convscope.spec_bounds import MAX_COUNT, MAX_SIDE, check_limits, number_text
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
    layer_to_dict,
    no_layers_message,
    padding_text,
    pair_text,
    shape_text,
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
    "MAX_COUNT",
    "MAX_INPUT_VALUES",
    "MAX_SIDE",
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
    "Input",
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
    "parse_input",
    "parse_shape",
    "shape_text",
    "shown",
    "stride_text",
]

MAX_INPUT_VALUES = 2**28  # H·W·C of a network's input: a 8192×8192 color photo is 2**27.6
_DIGITS = 12  # a side written with more digits is past MAX_INPUT_VALUES whatever it says: not converted at all


def parse_shape(value: Any, what: str = "input") -> tuple[int, int, int]:
    """'32x32x3', '32×32×3' or [32, 32, 3] -> (32, 32, 3): height, width, channels. Raises SpecError, naming `what`,
    for anything else, and for more than MAX_INPUT_VALUES values per image."""
    parts: Any = value
    if isinstance(value, str):
        parts = re.split(r"\s*[x×,]\s*", value.strip())
        long = next((p for p in parts if re.fullmatch(r"[0-9]+", p) and len(p.lstrip("0")) > _DIGITS), None)
        if long is not None:  # int() of it is slow, or a ValueError past 4,300 digits
            raise SpecError(
                f"{what}: a side of {len(long.lstrip('0')):,} digits is more than the {MAX_INPUT_VALUES:,} values an "
                f"input may have. Received: {shown(value, 40)}"
            )
        parts = [int(p) if re.fullmatch(r"[0-9]+", p) else p for p in parts]  # not '²', a digit int() refuses
    if isinstance(parts, list | tuple) and len(parts) == 3 and all(is_int(p) and p > 0 for p in parts):
        if max(parts) > MAX_INPUT_VALUES:
            side = number_text(max(parts)).removeprefix("a number of ")  # '300,000,000' or '400 digits'
            raise SpecError(
                f"{what}: a side of {side} is more than the {MAX_INPUT_VALUES:,} values an input may have. "
                f"Received: {shown(value)}"
            )
        if parts[0] * parts[1] * parts[2] > MAX_INPUT_VALUES:  # images are resized to it before any layer runs
            raise SpecError(
                f"{what}: {shape_text(tuple(parts))} is {parts[0] * parts[1] * parts[2]:,} values per image, more than"
                f" the {MAX_INPUT_VALUES:,} (1 GiB of float32) an input may have"
            )
        return (parts[0], parts[1], parts[2])
    raise SpecError(f"{what} must be H×W×C with positive integers, e.g. 32x32x3. Received: {shown(value)}")


def parse_input(value: Any, what: str = "input") -> tuple[int, int, int]:
    """An input shape as parse_shape reads it, or an (H, W) pair: a one-channel (gray) image, H×W×1, as Keras'
    input_shape=(28, 28) for MNIST. Raises SpecError, naming `what`, for anything else."""
    if isinstance(value, list | tuple) and len(value) == 2 and all(is_int(v) for v in value):
        value = (*value, 1)
    return parse_shape(value, what)


@dataclass(frozen=True)
class Input:
    """A network's input shape (H×W×C, or H×W for a gray image) as the first item of a layer list, where Keras code
    puts it: Sequential([Input((32, 32, 3)), Conv(32, 3), ...]), spec.add(Input(...)). Not a layer: it sets the
    NetSpec's `input`. Raises SpecError for a shape that is not H×W×C (or H×W) positive integers."""

    shape: tuple[int, int, int]

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", parse_input(self.shape, "Input"))


MISSING_INPUT = (
    "the network's input shape (H×W×C) is missing: start the layers with Input((32, 32, 3)), or give "
    "input_shape=(32, 32, 3) to Sequential or to the first layer"
)
REPR_LAYERS = 10  # a longer network's one-line form shows its first 8 layers, how many more, and the last


@dataclass(frozen=True, repr=False)
class NetSpec:
    """A whole network: its input shape (H×W×C) and its layers in order. Immutable: `add` returns a new spec.

    Raises SpecError for a bad input shape, an item that is not a layer, two layers of one name, or no layers. Only
    Sequential() makes a spec with no layers (and maybe no input) yet, to be added to; shapes.infer (so build and
    train), is_detector and to_dict refuse it with one line that says spec = spec.add(...).
    """

    input: tuple[int, int, int] | None
    layers: tuple[Layer, ...]
    name: str = "net"
    description: str = ""
    _unfinished: InitVar[bool] = False  # Sequential's spec: no layers, maybe no input, yet

    def __post_init__(self, _unfinished: bool) -> None:
        if self.input is not None or not _unfinished:
            object.__setattr__(self, "input", parse_shape(self.input))
        object.__setattr__(self, "layers", tuple(self.layers))
        if not self.layers and not _unfinished:
            raise SpecError("a network needs at least one layer. Received: an empty layer list")
        for i, layer in enumerate(self.layers, 1):
            if not isinstance(layer, Layer):
                called = f"; call it: {layer.__name__}()" if callable(layer) and hasattr(layer, "__name__") else ""
                raise SpecError(
                    f"layer {i}: expected a layer (Conv, Pool, ...). Received: {shown(layer)}{called}", layer=i
                )
            check_limits(layer, i)
        if self.layers and self.input is None:
            raise SpecError(MISSING_INPUT)
        seen: dict[str, int] = {}
        for i, name in enumerate(self.layer_names(), 1):
            if name in seen:
                kind = self.layers[i - 1].layer_type
                raise SpecError(
                    f"layer {i} ({kind}): name {name!r} is already used by layer {seen[name]}; names must be unique",
                    layer=i,
                )
            seen[name] = i

    def conv_names(self) -> list[str]:
        """The names of its own conv layers, in order (a pretrained base's convolutions, inside its blocks, are not
        among them)."""
        return [name for name, layer in zip(self.layer_names(), self.layers, strict=True) if layer.layer_type == "conv"]

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
        one answer to "which task is this?" (convscope.tasks.task_for, the commands that refuse the other kind).
        A spec with no layers yet has no task: SpecError."""
        if not self.layers:
            raise SpecError(no_layers_message(self.name))
        return self.layers[-1].layer_type == "detect"

    def with_input(self, shape: Any) -> NetSpec:
        """The same network for another input shape (H×W×C, as parse_shape reads it)."""
        return NetSpec(parse_shape(shape), self.layers, self.name, self.description, not self.layers)

    def add(self, *layers: Layer | Input | tuple | list) -> NetSpec:
        """A new spec: this one with `layers` appended. This spec is immutable and stays as it was, so keep what add
        returns (`spec.add(...)` on its own changes nothing):

            spec = Sequential(input_shape=(32, 32, 3))
            spec = spec.add(Conv(32, 3))
            spec = spec.add(Pool("max"), Flatten(), Dense(10))   # several at once

        An Input among them sets the input shape (before the first layer); a tuple or list counts as its items (a
        Keras alias given input_shape= is the pair (Input, layer)). Raises SpecError for an item that is not a
        layer, a second, different input shape, or layers with no input shape before them.
        """
        if not layers:
            raise SpecError("add needs at least one layer. Received: nothing")
        shape, added = _read_items(layers, self.input, len(self.layers))
        if shape is None:  # Keras' model.add(...) changes the model; a first add whose result was dropped gave none
            raise SpecError(
                f"{MISSING_INPUT}. If an earlier add() gave it: add() returns a new spec and leaves this one as it "
                "was, so write model = model.add(layer)"
            )
        return NetSpec(shape, self.layers + added, self.name, self.description, True)

    def summary(self, console: Any = None) -> None:
        """Print the layer table (output H×W×C, params, MACs, receptive field) and the totals, as `convscope
        summary` and Keras' model.summary() do: text in a terminal, HTML in Jupyter. `console`: a rich Console to
        print on (default: one on stdout). Raises SpecError for a spec that cannot run, or one with no layers."""
        from convscope.shapes import infer
        from convscope.summary import print_summary

        print_summary(infer(self), self._title(), console)

    def _repr_html_(self) -> str:
        """A notebook shows a spec as its summary table and totals; one that cannot run, as its error message."""
        from convscope.shapes import infer
        from convscope.summary import problem_html, summary_html

        try:
            return summary_html(infer(self), self._title())
        except SpecError as err:
            return problem_html(self._title(), str(err), repr(self))

    def __repr__(self) -> str:
        """One line: NetSpec('cifar-3conv', input 32×32×3, 8 layers: conv 3×3 ×32 relu → pool max 2×2 → …)."""
        shape = "no input shape yet" if self.input is None else f"input {shape_text(self.input)}"
        if not self.layers:
            return f"NetSpec({self.name!r}, {shape}, no layers yet — add() returns a new spec: spec = spec.add(layer))"
        words = [layer.brief() for layer in self.layers]
        if len(words) > REPR_LAYERS:
            words = [*words[: REPR_LAYERS - 2], f"… {len(words) - REPR_LAYERS + 1} more", words[-1]]
        count = f"{len(self.layers)} layer{'s' if len(self.layers) > 1 else ''}"
        return f"NetSpec({self.name!r}, {shape}, {count}: {' → '.join(words)})"

    def _title(self) -> str:
        return self.name + (f" — {self.description}" if self.description else "")

    def to_dict(self) -> dict[str, Any]:
        """The spec as a spec file's mapping (plain values only): from_dict gives back an equal NetSpec. Raises
        SpecError for a spec with no layers yet (a spec file needs them)."""
        if not self.layers:
            raise SpecError(no_layers_message(self.name))
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


def _read_items(items: tuple, shape: tuple[int, int, int] | None, before: int) -> tuple[Any, tuple]:
    """(input shape, layers) of add's items after `before` layers: Input markers set the shape, a tuple or list
    counts as its items, anything else is a layer (NetSpec checks that it is one)."""
    layers: list = []
    for item in (part for entry in items for part in (entry if isinstance(entry, tuple | list) else (entry,))):
        if not isinstance(item, Input):
            layers.append(item)
        elif shape is not None and item.shape != shape:
            raise SpecError(
                f"Input({shape_text(item.shape)}): the network's input is already {shape_text(shape)}; a network has"
                " one input shape"
            )
        elif shape is None and before + len(layers):
            raise SpecError(
                f"Input({shape_text(item.shape)}) after layer {before + len(layers)}: the input shape goes before the "
                "first layer"
            )
        else:
            shape = item.shape
    return shape, tuple(layers)


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
