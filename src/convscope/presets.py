"""Named networks, kept as data: each preset is the dict a spec file would hold."""

from __future__ import annotations

from pathlib import Path

from convscope.errors import ConvscopeError, SpecError
from convscope.recipes import DETECTOR, RECIPES
from convscope.spec import NetSpec, load_spec


def _conv_bn_relu_pool(filters: int) -> list:
    # No conv bias: the batchnorm's shift right after it does the same job.
    return [
        {"conv": {"filters": filters, "size": 3, "padding": "same", "activation": "none", "bias": False}},
        "batchnorm",
        {"activation": {"function": "relu"}},
        {"pool": {"kind": "max", "size": 2}},
    ]


def _conv_pool_bn_gelu_twice(filters: int) -> list:
    # airbench's block (Jordan 2024, "94% on CIFAR-10 in 3.29 seconds on a single GPU"): conv, pool, batchnorm,
    # GELU, then a second conv at the pooled size.
    conv = {"conv": {"filters": filters, "size": 3, "padding": "same", "activation": "none", "bias": False}}
    gelu = {"activation": {"function": "gelu"}}
    return [conv, {"pool": {"kind": "max", "size": 2}}, "batchnorm", gelu, conv, "batchnorm", gelu]


def _conv_pool_bn_relu(filters: int) -> list:
    # Pooling first: batchnorm and relu then work on a quarter of the values. Measured on Fashion-MNIST (8 epochs,
    # 60,000 training images, seed 0): 1.5× the images/s of conv-bn-relu-pool, and 93.29% test accuracy against 93.13%.
    return [
        {"conv": {"filters": filters, "size": 3, "padding": "same", "activation": "none", "bias": False}},
        {"pool": {"kind": "max", "size": 2}},
        "batchnorm",
        {"activation": {"function": "relu"}},
    ]


_PRESETS: dict[str, dict] = {
    "cifar-3conv": {
        "description": "The TensorFlow CNN tutorial net: 3 conv layers, 2 max pools, 2 dense; 32×32×3 images",
        "input": "32x32x3",
        "layers": [
            {"conv": {"filters": 32, "size": 3, "activation": "relu"}},
            {"pool": {"kind": "max", "size": 2}},
            {"conv": {"filters": 64, "size": 3, "activation": "relu"}},
            {"pool": {"kind": "max", "size": 2}},
            {"conv": {"filters": 64, "size": 3, "activation": "relu"}},
            "flatten",
            {"dense": {"units": 64, "activation": "relu"}},
            {"dense": {"units": 10}},
        ],
    },
    "cifar-fast": {
        # What airbench does, kept where it was measured to help here (README, "Real photos"): a 2×2 valid stem conv
        # (24 filters; 32→31, so the maps pool to 15, 7, 3: 18% more images/s than 'same' and +0.6 points), three
        # airbench blocks of 64-128-256 filters, a global max pool. Not kept: a frozen whitening stem (+0.0 points),
        # EMA of the weights (+0.1).
        "description": "a 2×2 stem conv, 3 × (conv, max pool, batchnorm, GELU, conv, batchnorm, GELU) with 64-128-256 "
        "filters, global max pool, dense 10; 32×32×3",
        "input": "32x32x3",
        "layers": [
            {"conv": {"filters": 24, "size": 2, "padding": "valid", "activation": "none"}},
            *_conv_pool_bn_gelu_twice(64),
            *_conv_pool_bn_gelu_twice(128),
            *_conv_pool_bn_gelu_twice(256),
            {"global_pool": {"kind": "max"}},
            {"dense": {"units": 10}},
        ],
    },
    "fashion-fast": {
        "description": "3 × (conv 3×3 same, max pool, batchnorm, relu) with 32-64-128 filters, dense 10; 28×28×1",
        "input": "28x28x1",
        "layers": [
            *_conv_pool_bn_relu(32),
            *_conv_pool_bn_relu(64),
            *_conv_pool_bn_relu(128),
            "flatten",
            {"dropout": {"rate": 0.2}},
            {"dense": {"units": 10}},
        ],
    },
    "scenes-det": {
        # Stride 8 before the head, not 16: measured on fashion-scenes, 14 min of training each (lr 0.004), the
        # 16-stride version (one more pool) reached test mAP@0.5 0.776 / mAP@0.5:0.95 0.548 in 40 epochs, this one
        # 0.841 / 0.644 in 30: the head places boxes better from finer maps.
        "description": "a CenterNet detector: conv stride 2, 2 × (conv, batchnorm, relu, max pool), 3 conv at "
        "stride 8, detect at stride 4; 128×128×3",
        "input": "128x128x3",
        "layers": [
            {"conv": {"filters": 24, "size": 3, "stride": 2, "padding": "same", "activation": "none", "bias": False}},
            "batchnorm",
            {"activation": {"function": "relu"}},
            *_conv_bn_relu_pool(32),
            *_conv_bn_relu_pool(64),
            *_conv_bn_relu_pool(128)[:3],
            *_conv_bn_relu_pool(128)[:3],
            {"conv": {"filters": 128, "size": 3, "padding": "same"}},
            {"detect": {"classes": 10, "channels": 32}},
        ],
    },
    "lite0-det": {
        # A pretrained base for detecting objects in photos: Lite0's ImageNet features at stride 16 (blocks 0–10),
        # one 3×3 conv, and the CenterNet head upsampling to stride 4. Trained in two phases (recipes.py).
        "description": "a CenterNet detector on a pretrained EfficientNet-Lite0 cut at stride 16, conv 3×3 128, "
        "detect at stride 4; 416×416×3",
        "input": "416x416x3",
        "layers": [
            {"base": {"arch": "efficientnet-lite0", "stride": 16}},
            {"conv": {"filters": 128, "size": 3, "padding": "same", "activation": "none", "bias": False}},
            "batchnorm",
            {"activation": {"function": "relu"}},
            {"detect": {"classes": 3, "channels": 64}},
        ],
    },
    "lenet5": {
        "description": "LeCun et al. 1998: 2 conv layers (5×5, tanh), 2 average pools, 3 dense; 28×28×1 digits",
        "input": "28x28x1",
        "layers": [
            {"conv": {"filters": 6, "size": 5, "padding": 2, "activation": "tanh"}},
            {"pool": {"kind": "avg", "size": 2}},
            {"conv": {"filters": 16, "size": 5, "activation": "tanh"}},
            {"pool": {"kind": "avg", "size": 2}},
            "flatten",
            {"dense": {"units": 120, "activation": "tanh"}},
            {"dense": {"units": 84, "activation": "tanh"}},
            {"dense": {"units": 10}},
        ],
    },
}


# A preset's own training settings, used where a setting is not given (flags, a config file, train(**settings)).
# cifar-fast's were chosen by a sweep of 44 runs (README, "Real photos"; bench/cifar_sweep.py): batch 256 gained 1.0
# point over 512; AdamW at 4e-3 scored 0.2–0.4 points above Nesterov SGD at 0.2, inside the 0.6-point spread between
# seeds (SGD is airbench's); label smoothing 0.2 as airbench; flips and 2-pixel shifts (+1.2 points over flips
# alone); 2% held out for validation instead of 10% (+0.4 points from the larger training set); 14 epochs is what
# fits 10 minutes of this 2-core CPU.
def preset_recipe(name: str) -> dict:
    """The training settings a model comes with ({} for most): defaults that given settings override. Detectors (a
    detection preset, or a spec file whose last layer is detect) take theirs from convscope.recipes."""
    if name in RECIPES:
        return dict(RECIPES[name])
    return dict(DETECTOR) if _is_detector_file(name) else {}


def _is_detector_file(name: str) -> bool:
    """True for a readable spec file whose last layer is detect (a bad file is reported later, where it is built)."""
    if name in _PRESETS or Path(name).suffix.lower() not in (".yaml", ".yml", ".json") or not Path(name).is_file():
        return False
    try:
        return load_spec(name).is_detector
    except ConvscopeError:
        return False


def preset_names() -> list[str]:
    return list(_PRESETS)


def get_preset(name: str) -> NetSpec:
    if name not in _PRESETS:
        raise SpecError(f"unknown preset {name!r}. Presets: {', '.join(_PRESETS)}")
    return NetSpec.from_dict({"name": name, **_PRESETS[name]})


def resolve_spec(name: str) -> NetSpec:
    """A preset name or a spec file (YAML/JSON) path."""
    if name in _PRESETS:
        return get_preset(name)
    if Path(name).suffix.lower() in (".yaml", ".yml", ".json") or Path(name).exists():
        return load_spec(name)
    raise SpecError(f"{name!r} is neither a spec file nor a preset. Presets: {', '.join(_PRESETS)}")
