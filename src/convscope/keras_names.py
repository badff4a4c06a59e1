"""Keras' layer names for convscope's layers, so that a TensorFlow tutorial's model runs with its imports changed:

    from convscope import keras_names as layers
    from convscope.keras_names import Sequential

    model = Sequential()
    model = model.add(layers.Conv2D(32, (3, 3), activation="relu", input_shape=(32, 32, 3)))   # 30×30×32
    model = model.add(layers.MaxPooling2D((2, 2)))                                             # 15×15×32
    ...
    model = model.add(layers.Dense(10))                                                        # 10 logits
    model.summary()

(`model = model.add(...)`: a convscope spec never changes, see convscope.sequential.) Each name makes the convscope
layer of the same meaning, with Keras' argument names and defaults: Conv2D → Conv (activation None, i.e. linear, as
in Keras; convscope's own Conv defaults to relu), MaxPooling2D / AveragePooling2D → Pool, GlobalAveragePooling2D /
GlobalMaxPooling2D → GlobalPool, BatchNormalization → BatchNorm, Dense, Flatten, Dropout, Activation, Input.
`input_shape=` on a layer (H×W×C, or H×W for a gray image) makes the pair (Input, layer), which Sequential and add
read as the input shape followed by the layer.

What convscope cannot do the same way is refused with a SpecError that names the layer and the argument, never
approximated: a setting convscope's layer does not have (dilation_rate=2, kernel_initializer=..., channels_first),
activation='softmax' (convscope's last layer gives logits; its loss, evaluate and predict apply softmax), Keras'
leaky_relu (slope 0.2, convscope's is 0.01) and Rescaling (convscope scales and normalises images itself).

Why a module rather than convscope.Conv2D: convscope.Dense, Flatten, Dropout and Activation already are convscope's
layers, with convscope's argument names (bias, not use_bias; Activation's `function`); Keras' Dense(units,
activation=None, use_bias=True, input_shape=None) is another signature under the same name. This module, put where
Keras' `layers` was, keeps every tutorial line as it is, and the package's own names stay one vocabulary.
"""

from __future__ import annotations

from typing import Any, NoReturn

from convscope.errors import SpecError
from convscope.sequential import Sequential
from convscope.spec import Activation as _Activation
from convscope.spec import BatchNorm, Conv, GlobalPool, Input, Layer, Pool, parse_input, shown
from convscope.spec import Dense as _Dense
from convscope.spec import Dropout as _Dropout
from convscope.spec import Flatten as _Flatten

__all__ = [
    "Activation",
    "AveragePooling2D",
    "BatchNormalization",
    "Conv2D",
    "Dense",
    "Dropout",
    "Flatten",
    "GlobalAveragePooling2D",
    "GlobalMaxPooling2D",
    "Input",
    "MaxPooling2D",
    "Rescaling",
    "Sequential",
]

Made = Layer | tuple[Input, Layer]  # a layer, or (Input, layer) when input_shape= was given

# Keras activations by name -> convscope's of the same function. None and 'linear' are no activation.
_ACTIVATIONS = {"linear": "none", "swish": "silu"} | {
    name: name for name in ("relu", "relu6", "elu", "gelu", "silu", "sigmoid", "tanh")
}
_NOT_THE_SAME = {
    "softmax": "convscope's last layer gives logits, and its loss, evaluate and predict apply softmax themselves: "
    "leave it out, e.g. Dense(10)",
    "leaky_relu": "Keras' leaky_relu has a negative slope of 0.2, convscope's 0.01 (PyTorch's); "
    "convscope.Dense(..., activation='leaky_relu') is the 0.01 one",
}
# Keras settings convscope's layers have only at their Keras default: that value is accepted, any other refused.
_ONLY_DEFAULT = {
    "data_format": ((None, "channels_last"), "convscope's feature maps are H×W×C, channels last"),
    "dilation_rate": ((1, (1, 1)), "convscope's convolutions are not dilated"),
    "groups": ((1,), "convscope's convolutions are not grouped"),
    "keepdims": ((False,), "convscope's global pool gives a vector of C numbers"),
    "noise_shape": ((None,), "convscope's dropout drops single values"),
    "seed": ((None,), "convscope's random numbers come from the training's seed"),
}


def Conv2D(
    filters: int,
    kernel_size: Any,
    strides: Any = (1, 1),
    padding: str = "valid",
    *,
    activation: Any = None,
    use_bias: bool = True,
    name: str | None = None,
    input_shape: Any = None,
    **rest: Any,
) -> Made:
    """`filters` patterns of kernel_size (an int or (h, w)), moved by strides; padding 'valid' (the map shrinks) or
    'same' (H×W → ⌈H/s⌉×⌈W/s⌉, padded as TensorFlow does). H×W×C → H'×W'×filters. Raises SpecError."""
    _only_defaults("Conv2D", rest, "data_format", "dilation_rate", "groups")
    conv = _make(
        "Conv2D",
        Conv,
        {"size": "kernel_size", "stride": "strides", "bias": "use_bias"},
        filters=filters,
        size=kernel_size,
        stride=strides,
        padding=_padding("Conv2D", padding),
        activation=_activation("Conv2D", activation),
        bias=use_bias,
        name=name,
    )
    return _placed("Conv2D", conv, input_shape)


def MaxPooling2D(
    pool_size: Any = (2, 2),
    strides: Any = None,
    padding: str = "valid",
    *,
    name: str | None = None,
    input_shape: Any = None,
    **rest: Any,
) -> Made:
    """The max of each pool_size window, moved by strides (default: pool_size). H×W×C → H'×W'×C. Raises SpecError."""
    return _pool("MaxPooling2D", "max", pool_size, strides, padding, name, input_shape, rest)


def AveragePooling2D(
    pool_size: Any = (2, 2),
    strides: Any = None,
    padding: str = "valid",
    *,
    name: str | None = None,
    input_shape: Any = None,
    **rest: Any,
) -> Made:
    """The mean of each pool_size window (with 'same' padding, of its real values only, as TensorFlow). Raises
    SpecError."""
    return _pool("AveragePooling2D", "avg", pool_size, strides, padding, name, input_shape, rest)


def GlobalAveragePooling2D(*, name: str | None = None, input_shape: Any = None, **rest: Any) -> Made:
    """One number per feature map, its mean: H×W×C → C. Raises SpecError."""
    return _global("GlobalAveragePooling2D", "avg", name, input_shape, rest)


def GlobalMaxPooling2D(*, name: str | None = None, input_shape: Any = None, **rest: Any) -> Made:
    """One number per feature map, its max: H×W×C → C. Raises SpecError."""
    return _global("GlobalMaxPooling2D", "max", name, input_shape, rest)


def BatchNormalization(*, name: str | None = None, input_shape: Any = None, **rest: Any) -> Made:
    """Each channel normalised by its batch statistics, then scaled and shifted (2 parameters per channel trained).
    With PyTorch's numbers, not Keras': epsilon 1e-5 (Keras 1e-3), running averages moving 0.1 per batch (Keras'
    momentum 0.99, i.e. 0.01), so none of Keras' settings is accepted. Raises SpecError."""
    _only_defaults("BatchNormalization", rest)
    return _placed("BatchNormalization", _make("BatchNormalization", BatchNorm, {}, name=name), input_shape)


def Dense(
    units: int,
    activation: Any = None,
    use_bias: bool = True,
    *,
    name: str | None = None,
    input_shape: Any = None,
    **rest: Any,
) -> Made:
    """A fully connected layer: a vector of N → `units`. activation None: linear (the last layer's logits). Raises
    SpecError."""
    _only_defaults("Dense", rest)
    dense = _make(
        "Dense",
        _Dense,
        {"bias": "use_bias"},
        units=units,
        activation=_activation("Dense", activation),
        bias=use_bias,
        name=name,
    )
    return _placed("Dense", dense, input_shape)


def Flatten(*, name: str | None = None, input_shape: Any = None, **rest: Any) -> Made:
    """H×W×C → one vector of H·W·C numbers. Raises SpecError."""
    _only_defaults("Flatten", rest, "data_format")
    return _placed("Flatten", _make("Flatten", _Flatten, {}, name=name), input_shape)


def Dropout(rate: float, *, name: str | None = None, input_shape: Any = None, **rest: Any) -> Made:
    """Zeroes a fraction `rate` (in [0, 1)) of its inputs while training, identity otherwise. Raises SpecError."""
    _only_defaults("Dropout", rest, "noise_shape", "seed")
    return _placed("Dropout", _make("Dropout", _Dropout, {}, rate=rate, name=name), input_shape)


def Activation(activation: Any, *, name: str | None = None, input_shape: Any = None, **rest: Any) -> Made:
    """An activation function on its own (e.g. after BatchNormalization), by name. Raises SpecError."""
    _only_defaults("Activation", rest)
    function = _activation("Activation", activation)
    layer = _make("Activation", _Activation, {"function": "activation"}, function=function, name=name)
    return _placed("Activation", layer, input_shape)


def Rescaling(*args: Any, **kwargs: Any) -> NoReturn:
    """Refused: convscope has no rescaling layer, because it scales and normalises images itself (always raises)."""
    raise SpecError(
        "Rescaling: convscope has no rescaling layer: it scales images to [0, 1] and normalises each channel itself, "
        "in training, evaluate and predict alike. Leave it out (give its input_shape to Sequential or the next layer)"
    )


def _pool(alias: str, kind: str, pool_size, strides, padding, name, input_shape, rest: dict) -> Made:
    _only_defaults(alias, rest, "data_format")
    pool = _make(
        alias,
        Pool,
        {"size": "pool_size", "stride": "strides"},
        kind=kind,
        size=pool_size,
        stride=strides,
        padding=_padding(alias, padding),
        name=name,
    )
    return _placed(alias, pool, input_shape)


def _global(alias: str, kind: str, name, input_shape, rest: dict) -> Made:
    _only_defaults(alias, rest, "data_format", "keepdims")
    return _placed(alias, _make(alias, GlobalPool, {}, kind=kind, name=name), input_shape)


def _make(alias: str, cls: type[Layer], keras_keys: dict[str, str], **settings: Any) -> Layer:
    """cls(**settings), its SpecError told with the alias and Keras' name of the setting ('Conv2D: kernel_size ...')."""
    try:
        return cls(**settings)
    except SpecError as err:
        key, _, rest = err.detail.partition(" ")
        detail = f"{keras_keys.get(key, key)} {rest}"
        raise SpecError(f"{alias}: {detail}", detail=detail) from None


def _placed(alias: str, layer: Layer, input_shape: Any) -> Made:
    """The layer, or (Input, layer) when Keras code gave the first layer the network's input_shape."""
    return layer if input_shape is None else (Input(parse_input(input_shape, f"{alias}: input_shape")), layer)


def _activation(alias: str, value: Any) -> str:
    if isinstance(value, str) and value in _NOT_THE_SAME:
        raise SpecError(f"{alias}: activation {value!r} is not convscope's: {_NOT_THE_SAME[value]}")
    if value is None:
        return "none"
    if isinstance(value, str) and value in _ACTIVATIONS:
        return _ACTIVATIONS[value]
    names = ", ".join(repr(name) for name in _ACTIVATIONS)
    raise SpecError(f"{alias}: activation must be None or a name: {names}. Received: {shown(value)}")


def _padding(alias: str, value: Any) -> str:
    if isinstance(value, str) and value.lower() in ("valid", "same"):
        return value.lower()
    raise SpecError(f"{alias}: padding must be 'valid' or 'same'. Received: {shown(value)}")


def _only_defaults(alias: str, rest: dict[str, Any], *known: str) -> None:
    """Refuse Keras settings convscope's layer does not have; those in `known` are accepted at their Keras default."""
    for key, value in rest.items():
        if key in known and value in _ONLY_DEFAULT[key][0]:
            continue
        why = _ONLY_DEFAULT[key][1] if key in known else f"convscope's {alias} has no such setting"
        raise SpecError(f"{alias}: {key}={shown(value)} is not supported: {why}")
