"""convscope: build convnets from filters, sample size, padding, stride and pooling; see what they compute."""

from convscope.errors import CheckpointError, ConvscopeError, DataError, SpecError
from convscope.shapes import infer
from convscope.spec import (
    Activation,
    BatchNorm,
    Conv,
    Dense,
    Dropout,
    Flatten,
    GlobalPool,
    NetSpec,
    Pool,
    load_spec,
)

__version__ = "0.1.0"


def __getattr__(name: str):
    # torch is imported only when a model is built, so `convscope summary` and friends start instantly.
    if name == "build":
        from convscope.build import build

        return build
    raise AttributeError(f"module 'convscope' has no attribute {name!r}")


__all__ = [
    "Activation",
    "BatchNorm",
    "CheckpointError",
    "Conv",
    "ConvscopeError",
    "DataError",
    "Dense",
    "Dropout",
    "Flatten",
    "GlobalPool",
    "NetSpec",
    "Pool",
    "SpecError",
    "build",
    "infer",
    "load_spec",
]
