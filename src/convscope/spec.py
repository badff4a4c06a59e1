"""Layer specs: the vocabulary people learn convnets with, as frozen dataclasses, and NetSpec, a whole network.

A spec file (YAML, or JSON, which YAML reads too) is written the way the layers are said aloud:

    name: cifar-3conv
    input: 32x32x3              # H×W×C, as image shapes are written
    layers:
      - conv: {filters: 32, size: 3, activation: relu}
      - pool: {kind: max}       # size 2, stride = size
      - flatten                 # a layer without settings may be a bare word
      - dense: {units: 10}

Every value is checked when the dataclass is created; a bad one is a SpecError naming the layer, the key, what
was expected and what was received. Whether the layers fit together (sizes, channels) is checked by
`convscope.shapes.infer`, which needs no torch.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from typing import Any, ClassVar

import yaml

from convscope.errors import SpecError
from convscope.files import check_regular_file
from convscope.yamlfile import compose_yaml, load_yaml, read_text

ACTIVATIONS = ("relu", "relu6", "leaky_relu", "elu", "gelu", "silu", "sigmoid", "tanh", "none")
POOL_KINDS = ("max", "avg", "min")
PADDING_WORDS = ("valid", "same")

Pair = tuple[int, int]
MAX_INPUT_VALUES = 2**28  # H·W·C of a network's input: a 8192×8192 color photo is 2**27.6
Padding = str | Pair  # "valid" | "same" | (rows added top and bottom, columns added left and right)


def shown(value: Any, limit: int = 80) -> str:
    """repr(value) cut to `limit` characters: what a message shows of a received value (it may be huge)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _invalid(kind: str, key: str, expected: str, received: Any) -> SpecError:
    detail = f"{key} must be {expected}. Received: {shown(received)}"
    return SpecError(f"{kind}: {detail}", detail=detail)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _pair(kind: str, key: str, value: Any, minimum: int) -> Pair:
    """An int or an (h, w) pair of ints >= minimum, as a pair."""
    if _is_int(value):
        value = (value, value)
    if isinstance(value, list | tuple) and len(value) == 2 and all(_is_int(v) for v in value):
        if min(value) >= minimum:
            return (value[0], value[1])
    words = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
    raise _invalid(kind, key, f"{words} or a pair [h, w] of them", value)


def _padding(kind: str, value: Any) -> Padding:
    if isinstance(value, str):
        if value in PADDING_WORDS:
            return value
        raise _invalid(kind, "padding", "'valid', 'same', an integer >= 0 or a pair [h, w]", value)
    try:
        return _pair(kind, "padding", value, 0)
    except SpecError:
        raise _invalid(kind, "padding", "'valid', 'same', an integer >= 0 or a pair [h, w]", value) from None


def _choice(kind: str, key: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise _invalid(kind, key, "one of " + ", ".join(choices), value)
    return value


def _name(kind: str, value: Any) -> str | None:
    if value is None or (isinstance(value, str) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_\-]*", value)):
        return value
    raise _invalid(kind, "name", "a word of letters, digits, '_' or '-' (starting with a letter)", value)


def pair_text(pair: Pair) -> str:
    """(3, 3) -> '3×3'."""
    return f"{pair[0]}×{pair[1]}"


def padding_text(padding: Padding) -> str:
    if isinstance(padding, str):
        return padding
    return f"pad {padding[0]}" if padding[0] == padding[1] else f"pad {pair_text(padding)}"


def _compact(pair: Pair) -> int | list[int]:
    """The inverse of _pair for files: a square pair is written as one int."""
    return pair[0] if pair[0] == pair[1] else [pair[0], pair[1]]


class Layer:
    """Common behaviour of the layer dataclasses; `layer_type` is the word used in spec files ('conv', ...)."""

    layer_type: ClassVar[str]

    def __post_init__(self) -> None:
        self._validate()

    def _validate(self) -> None:
        object.__setattr__(self, "name", _name(self.layer_type, self.name))

    def _set(self, key: str, value: Any) -> None:
        object.__setattr__(self, key, value)

    def label(self) -> str:
        """Short description used in messages and summaries, e.g. 'conv 3×3, stride 1, valid'."""
        return self.layer_type


@dataclass(frozen=True)
class Conv(Layer):
    """A convolutional layer: `filters` trainable patterns of `size` (the sample size), moved by `stride`.

    padding: 'valid' (no padding: the map shrinks), 'same' (output side = ceil(input / stride), padded as
    TensorFlow does, extra on the bottom/right when the total is odd) or an int / (h, w) added on every side.
    """

    filters: int
    size: int | Pair = 3
    stride: int | Pair = 1
    padding: int | Padding = "valid"
    activation: str = "relu"
    bias: bool = True
    name: str | None = None
    layer_type: ClassVar[str] = "conv"

    def _validate(self) -> None:
        super()._validate()
        if not _is_int(self.filters) or self.filters < 1:
            raise _invalid(self.layer_type, "filters", "a positive integer", self.filters)
        self._set("size", _pair(self.layer_type, "size", self.size, 1))
        self._set("stride", _pair(self.layer_type, "stride", self.stride, 1))
        self._set("padding", _padding(self.layer_type, self.padding))
        _choice(self.layer_type, "activation", self.activation, ACTIVATIONS)
        if not isinstance(self.bias, bool):
            raise _invalid(self.layer_type, "bias", "true or false", self.bias)

    def label(self) -> str:
        return f"conv {pair_text(self.size)}, stride {stride_text(self.stride)}, {padding_text(self.padding)}"


@dataclass(frozen=True)
class Pool(Layer):
    """A pooling layer: the max, min or average of each `size` window; stride defaults to the size.

    Padding never wins: max pools pad with -inf, min pools with +inf, and averages count only real values.
    """

    kind: str = "max"
    size: int | Pair = 2
    stride: int | Pair | None = None
    padding: int | Padding = "valid"
    name: str | None = None
    layer_type: ClassVar[str] = "pool"

    def _validate(self) -> None:
        super()._validate()
        _choice(self.layer_type, "kind", self.kind, POOL_KINDS)
        self._set("size", _pair(self.layer_type, "size", self.size, 1))
        self._set("stride", self.size if self.stride is None else _pair(self.layer_type, "stride", self.stride, 1))
        self._set("padding", _padding(self.layer_type, self.padding))

    def label(self) -> str:
        text = f"pool {self.kind} {pair_text(self.size)}"
        if self.stride != self.size:
            text += f", stride {stride_text(self.stride)}"
        if self.padding != "valid":
            text += f", {padding_text(self.padding)}"
        return text


@dataclass(frozen=True)
class GlobalPool(Layer):
    """One number per feature map: its max, min or average over the whole map (H×W×C -> C)."""

    kind: str = "avg"
    name: str | None = None
    layer_type: ClassVar[str] = "global_pool"

    def _validate(self) -> None:
        super()._validate()
        _choice(self.layer_type, "kind", self.kind, POOL_KINDS)

    def label(self) -> str:
        return f"global_pool {self.kind}"


@dataclass(frozen=True)
class Dense(Layer):
    """A fully connected layer of `units` outputs. No activation by default: a last dense layer gives logits."""

    units: int
    activation: str = "none"
    bias: bool = True
    name: str | None = None
    layer_type: ClassVar[str] = "dense"

    def _validate(self) -> None:
        super()._validate()
        if not _is_int(self.units) or self.units < 1:
            raise _invalid(self.layer_type, "units", "a positive integer", self.units)
        _choice(self.layer_type, "activation", self.activation, ACTIVATIONS)
        if not isinstance(self.bias, bool):
            raise _invalid(self.layer_type, "bias", "true or false", self.bias)

    def label(self) -> str:
        return f"dense {self.units}"


@dataclass(frozen=True)
class Flatten(Layer):
    """H×W×C feature maps -> one vector of H·W·C numbers."""

    name: str | None = None
    layer_type: ClassVar[str] = "flatten"


@dataclass(frozen=True)
class Dropout(Layer):
    """Zeroes a random fraction `rate` of its inputs while training (and scales the rest); identity otherwise."""

    rate: float = 0.5
    name: str | None = None
    layer_type: ClassVar[str] = "dropout"

    def _validate(self) -> None:
        super()._validate()
        if isinstance(self.rate, bool) or not isinstance(self.rate, int | float) or not 0 <= self.rate < 1:
            raise _invalid(self.layer_type, "rate", "a number in [0, 1)", self.rate)
        self._set("rate", float(self.rate))

    def label(self) -> str:
        return f"dropout {self.rate:g}"


@dataclass(frozen=True)
class BatchNorm(Layer):
    """Normalises each channel by its batch statistics (running averages at inference), then scales and shifts."""

    name: str | None = None
    layer_type: ClassVar[str] = "batchnorm"


@dataclass(frozen=True)
class Activation(Layer):
    """An activation function on its own, e.g. after a batchnorm."""

    function: str = "relu"
    name: str | None = None
    layer_type: ClassVar[str] = "activation"

    def _validate(self) -> None:
        super()._validate()
        _choice(self.layer_type, "function", self.function, ACTIVATIONS)

    def label(self) -> str:
        return self.function


BASE_ARCH = re.compile(r"(torchvision:|timm:)?[A-Za-z0-9_.\-]+")


@dataclass(frozen=True)
class Base(Layer):
    """A pretrained convnet as the first layer: its feature maps, H×W×3 → ⌈H/stride⌉×⌈W/stride⌉×channels, feed the
    layers after it (a new head). This is transfer learning: the base already finds edges, textures and parts.

    arch: 'efficientnet-lite0' (built in), 'torchvision:NAME' or 'timm:NAME'. weights: 'imagenet' (the built-in
    base's ImageNet weights), a .safetensors/.pt/.pth file, or 'none' (random). channels, stride, params: what the
    base outputs; known for built-in bases, measured and written here by `convscope transfer` for the others.
    """

    arch: str
    weights: str = "imagenet"
    channels: int | None = None
    stride: int | None = None
    params: int | None = None
    name: str | None = None
    layer_type: ClassVar[str] = "base"

    def _validate(self) -> None:
        super()._validate()
        if not isinstance(self.arch, str) or not BASE_ARCH.fullmatch(self.arch):
            raise _invalid(
                self.layer_type, "arch", "a base name like efficientnet-lite0 or torchvision:resnet18", self.arch
            )
        if not isinstance(self.weights, str) or not self.weights:
            raise _invalid(self.layer_type, "weights", "'imagenet', 'none' or a weights file", self.weights)
        for key in ("channels", "stride", "params"):
            value = getattr(self, key)
            if value is not None and (not _is_int(value) or value < 1):
                raise _invalid(self.layer_type, key, "a positive integer", value)

    def label(self) -> str:
        return f"base {self.arch}"


@dataclass(frozen=True)
class Detect(Layer):
    """An anchor-free detection head (CenterNet): the feature maps before it, upsampled to `stride` (4: a 128×128
    image gives 32×32 positions), then per position one centre score per class, the box's width and height, and the
    centre's offset within the cell. Output H/stride × W/stride × (classes + 4). See convscope.detect.head.
    """

    classes: int
    channels: int = 64  # filters of the head's 3×3 conv
    stride: int = 4
    name: str | None = None
    layer_type: ClassVar[str] = "detect"

    def _validate(self) -> None:
        super()._validate()
        for key in ("classes", "channels", "stride"):
            value = getattr(self, key)
            if not _is_int(value) or value < 1:
                raise _invalid(self.layer_type, key, "a positive integer", value)

    def label(self) -> str:
        return f"detect {self.classes} classes, stride {self.stride}"


def stride_text(stride: Pair) -> str:
    return str(stride[0]) if stride[0] == stride[1] else pair_text(stride)


LAYER_TYPES: dict[str, type[Layer]] = {
    cls.layer_type: cls
    for cls in (Base, Conv, Pool, GlobalPool, Dense, Flatten, Dropout, BatchNorm, Activation, Detect)
}


def parse_shape(value: Any, what: str = "input") -> tuple[int, int, int]:
    """'32x32x3', '32×32×3' or [32, 32, 3] -> (32, 32, 3): height, width, channels."""
    parts: Any = value
    if isinstance(value, str):
        parts = re.split(r"\s*[x×,]\s*", value.strip())
        parts = [int(p) if p.isdigit() else p for p in parts]
    if isinstance(parts, list | tuple) and len(parts) == 3 and all(_is_int(p) and p > 0 for p in parts):
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

    def with_input(self, shape: Any) -> NetSpec:
        return NetSpec(input=parse_shape(shape), layers=self.layers, name=self.name, description=self.description)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name}
        if self.description:
            out["description"] = self.description
        out["input"] = "x".join(str(s) for s in self.input)
        out["layers"] = [layer_to_dict(layer) for layer in self.layers]
        return out

    @classmethod
    def from_dict(cls, data: Any) -> NetSpec:
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
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True, default_flow_style=None)


def layer_to_dict(layer: Layer) -> dict[str, Any]:
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
