"""The layer vocabulary of spec files: each layer kind (conv, pool, dense, ...) as a frozen dataclass that checks
its settings when it is created, and how a layer's settings are written in messages ('conv 3×3, stride 1, valid').

A bad value is a SpecError naming the layer kind, the key, what was expected and what was received. Networks of these
layers, and reading them from dicts and YAML files, are convscope.spec's; what shapes.py, summary.py and the base
catalog need of a layer (its texts, its spec-file mapping) is here, below convscope.spec, so that spec.py can show its
networks with them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any, ClassVar

from convscope.errors import SpecError

ACTIVATIONS = ("relu", "relu6", "leaky_relu", "elu", "gelu", "silu", "sigmoid", "tanh", "none")
POOL_KINDS = ("max", "avg", "min")
PADDING_WORDS = ("valid", "same")

Pair = tuple[int, int]
Padding = str | Pair  # "valid" | "same" | (rows added top and bottom, columns added left and right)


def shown(value: Any, limit: int = 80) -> str:
    """repr(value) cut to `limit` characters: what a message shows of a received value (it may be huge)."""
    try:
        text = repr(value)
    except ValueError:  # it holds an int past Python's 4,300-digit str() limit
        kind = type(value).__name__
        return f"{'an' if kind[0] in 'aeiou' else 'a'} {kind} holding a number of over 4,300 digits"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def no_layers_message(name: str) -> str:
    """What infer, build, train and a spec file say of a network without layers (only Sequential() makes one). The
    likely cause is Keras' habit: specs are immutable, so `model.add(layer)` alone changes nothing."""
    return (
        f"network {name!r} has no layers yet. add() returns a new spec and leaves the old one unchanged: "
        "write spec = spec.add(layer)"
    )


def _invalid(kind: str, key: str, expected: str, received: Any) -> SpecError:
    detail = f"{key} must be {expected}. Received: {shown(received)}"
    return SpecError(f"{kind}: {detail}", detail=detail)


def is_int(value: Any) -> bool:
    """An int, and not a bool (True is an int to Python, but never a size or a count in a spec)."""
    return isinstance(value, int) and not isinstance(value, bool)


def as_pair(value: int | Sequence[int]) -> Pair:
    """A size, stride or padding as (h, w): 3 -> (3, 3), [3, 5] -> (3, 5). Normalises only; the spec's layers check
    their values when they are created."""
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def as_padding(padding: int | Sequence[int] | str) -> Padding:
    """'valid' and 'same' as they are; an int or an (h, w) pair as as_pair gives it."""
    return padding if isinstance(padding, str) else as_pair(padding)


def _pair(kind: str, key: str, value: Any, minimum: int) -> Pair:
    """An int or an (h, w) pair of ints >= minimum, as a pair."""
    if is_int(value) or (isinstance(value, list | tuple) and len(value) == 2 and all(is_int(v) for v in value)):
        pair = as_pair(value)
        if min(pair) >= minimum:
            return pair
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


def shape_text(shape: tuple[int, ...]) -> str:
    """(30, 30, 32) -> '30×30×32'; (1024,) -> '1024'."""
    return "×".join(str(s) for s in shape)


def pair_text(pair: Pair) -> str:
    """(3, 3) -> '3×3'."""
    return f"{pair[0]}×{pair[1]}"


def padding_text(padding: Padding) -> str:
    """'same' -> 'same'; (1, 1) -> 'pad 1'; (1, 2) -> 'pad 1×2'."""
    if isinstance(padding, str):
        return padding
    return f"pad {padding[0]}" if padding[0] == padding[1] else f"pad {pair_text(padding)}"


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

    def brief(self) -> str:
        """Shorter still, for a whole network on one line (NetSpec's repr): 'conv 3×3 ×32 relu', 'pool max 2×2'."""
        return self.label()


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
        if not is_int(self.filters) or self.filters < 1:
            raise _invalid(self.layer_type, "filters", "a positive integer", self.filters)
        self._set("size", _pair(self.layer_type, "size", self.size, 1))
        self._set("stride", _pair(self.layer_type, "stride", self.stride, 1))
        self._set("padding", _padding(self.layer_type, self.padding))
        _choice(self.layer_type, "activation", self.activation, ACTIVATIONS)
        if not isinstance(self.bias, bool):
            raise _invalid(self.layer_type, "bias", "true or false", self.bias)

    def label(self) -> str:
        return f"conv {pair_text(self.size)}, stride {stride_text(self.stride)}, {padding_text(self.padding)}"

    def brief(self) -> str:
        words = [f"conv {pair_text(self.size)} ×{self.filters}"]
        words += [] if self.stride == (1, 1) else [f"stride {stride_text(self.stride)}"]
        words += [] if self.padding == "valid" else [padding_text(self.padding)]
        words += [] if self.activation == "none" else [self.activation]
        return " ".join(words)


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
        if not is_int(self.units) or self.units < 1:
            raise _invalid(self.layer_type, "units", "a positive integer", self.units)
        _choice(self.layer_type, "activation", self.activation, ACTIVATIONS)
        if not isinstance(self.bias, bool):
            raise _invalid(self.layer_type, "bias", "true or false", self.bias)

    def label(self) -> str:
        return f"dense {self.units}"

    def brief(self) -> str:
        return self.label() if self.activation == "none" else f"{self.label()} {self.activation}"


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
            if value is not None and (not is_int(value) or value < 1):
                raise _invalid(self.layer_type, key, "a positive integer", value)

    def label(self) -> str:
        return f"base {self.arch}"


@dataclass(frozen=True)
class Detect(Layer):
    """An anchor-free detection head (CenterNet): the feature maps before it, upsampled to `stride` (4: a 128×128
    image gives 32×32 positions), then per position one centre score per class, the box's width and height, and the
    centre's offset within the cell. Output H/stride × W/stride × (classes + 4). See convscope.layers (CenterNetHead).
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
            if not is_int(value) or value < 1:
                raise _invalid(self.layer_type, key, "a positive integer", value)

    def label(self) -> str:
        return f"detect {self.classes} classes, stride {self.stride}"


def stride_text(stride: Pair) -> str:
    """(2, 2) -> '2'; (1, 2) -> '1×2'."""
    return str(stride[0]) if stride[0] == stride[1] else pair_text(stride)


# The word a spec file uses for each layer kind -> its dataclass.
LAYER_TYPES: dict[str, type[Layer]] = {
    cls.layer_type: cls
    for cls in (Base, Conv, Pool, GlobalPool, Dense, Flatten, Dropout, BatchNorm, Activation, Detect)
}


def _compact(pair: Pair) -> int | list[int]:
    """How a pair setting is written to files: a square one as one int, as people write it."""
    return pair[0] if pair[0] == pair[1] else [pair[0], pair[1]]


def layer_to_dict(layer: Layer) -> dict[str, Any]:
    """A layer as a spec file writes it: {kind: {settings}}, a square pair as one int, no name unless one was given."""
    out: dict[str, Any] = {}
    for f in fields(layer):
        value = getattr(layer, f.name)
        if f.name == "name" and value is None:
            continue
        out[f.name] = _compact(value) if isinstance(value, tuple) else value
    return {layer.layer_type: out}
