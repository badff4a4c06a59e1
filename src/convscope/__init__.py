"""convscope: build convnets from filters, sample size, padding, stride and pooling; see what they compute."""

import os as _os
import sys as _sys

# PyTorch's OpenMP threads (libgomp) wait for work by spinning 300,000 times before they sleep. Beside another busy
# program that spin takes turns with it and training falls to a third of its speed or less; never spinning (passive
# waiting) costs a quarter of the speed on a quiet machine. A short spin of 10,000 is as fast as spinning when the
# machine is quiet, and the trainer's auto-tuning (training/autotune.py) moves to fewer threads when it is busy
# (bench/train_throughput.py --busy 0,1 measures both). OpenMP reads this once, when torch loads, so it is set here,
# before anything imports torch, and only as a default: a wait policy or spin count the user set wins.
if "torch" not in _sys.modules and "OMP_WAIT_POLICY" not in _os.environ:
    _os.environ.setdefault("GOMP_SPINCOUNT", "10000")

from convscope.errors import (
    CheckpointError,
    ConfigError,
    ConvscopeError,
    DataError,
    Interrupted,
    OutputError,
    SpecError,
    TrainingError,
)
from convscope.sequential import Sequential
from convscope.shapes import infer
from convscope.spec import (
    Activation,
    Base,
    BatchNorm,
    Conv,
    Dense,
    Dropout,
    Flatten,
    GlobalPool,
    Input,
    NetSpec,
    Pool,
    load_spec,
)

__version__ = "0.1.0"


# torch is imported only when it is needed, so `convscope summary` and friends start instantly. No public name is
# also a submodule's name (the functions live in builder.py, api/verbs.py, classify/predict.py …): importing a
# submodule sets the package attribute of its name, which would replace the function with the module.
_LAZY = {
    "build": "convscope.builder",
    "train": "convscope.api.fit",
    "transfer": "convscope.api.fit",
    "TrainConfig": "convscope.config",
    "Callback": "convscope.training.callbacks",
    "Run": "convscope.api.run",
    "load_run": "convscope.api.run",
    "featuremaps": "convscope.api.run",
    "gradcam": "convscope.api.run",
    "walkthrough": "convscope.api.explained",
    "load_model": "convscope.loaded",
    "evaluate": "convscope.api.verbs",
    "predict": "convscope.classify.predict",
    "write_report": "convscope.api.verbs",
    "lint_detection": "convscope.api.detection_data",
    "convert_detection": "convscope.api.detection_data",
    "doctor": "convscope.api.doctor",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'convscope' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The lazy names too, so that dir(convscope) and Tab completion in a notebook show train, load_run, …"""
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "Activation",
    "Callback",
    "ConfigError",
    "Interrupted",
    "OutputError",
    "Run",
    "TrainingError",
    "walkthrough",
    "featuremaps",
    "gradcam",
    "transfer",
    "Base",
    "BatchNorm",
    "CheckpointError",
    "Conv",
    "ConvscopeError",
    "DataError",
    "Dense",
    "Dropout",
    "Flatten",
    "GlobalPool",
    "Input",
    "NetSpec",
    "Pool",
    "Sequential",
    "SpecError",
    "TrainConfig",
    "build",
    "evaluate",
    "load_model",
    "load_run",
    "predict",
    "train",
    "infer",
    "load_spec",
    "lint_detection",
    "convert_detection",
    "doctor",
]
