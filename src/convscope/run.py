"""The run folder: everything a training run leaves behind, and the one way back from disk to a usable model.

runs/NAME/
  config.yaml        the resolved training settings, the data (classes, normalisation) and the spec's input
  spec.yaml          the network
  metrics.csv        one row per epoch
  weights/best.safetensors, weights/last.safetensors
  state/             optimizer, scheduler, RNG, epoch and step (safetensors + JSON) for --resume
  train.log, results.json, curves.png, confusion.png
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from convscope.errors import CheckpointError
from convscope.spec import NetSpec, load_spec
from convscope.training.config import TrainConfig


@dataclass(frozen=True)
class DataInfo:
    name: str
    classes: tuple[str, ...]
    mean: tuple[float, ...]  # per channel, of the training images scaled to [0, 1]
    std: tuple[float, ...]
    source: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": self.source,
            "classes": list(self.classes),
            "mean": list(self.mean),
            "std": list(self.std),
        }


@dataclass(frozen=True)
class Run:
    path: Path
    config: TrainConfig
    spec: NetSpec
    data: DataInfo

    @property
    def weights(self) -> Path:
        return self.path / "weights"

    def metrics(self) -> list[dict[str, float]]:
        path = self.path / "metrics.csv"
        if not path.exists():
            return []
        with path.open(newline="") as f:
            return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]

    def results(self) -> dict[str, Any]:
        path = self.path / "results.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def config_yaml(self) -> str:
        body = {
            "train": self.config.to_dict(),
            "data": self.data.to_dict(),
            "input": "x".join(map(str, self.spec.input)),
        }
        return yaml.safe_dump(body, sort_keys=False, allow_unicode=True)


def new_run_folder(config: TrainConfig) -> Path:
    """config.out, or runs/MODEL-DATA with -2, -3 ... appended: an existing run is never overwritten."""
    if config.out:
        path = Path(config.out)
        if (path / "config.yaml").exists():
            raise CheckpointError(
                f"{path}: already holds a run; resume it with --resume {path} or choose another --out"
            )
        return path
    base = Path("runs") / f"{Path(config.model).stem}-{Path(config.data.rstrip('/')).name}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


def load_run(path: str | Path) -> Run:
    """Read a run folder's config.yaml and spec.yaml (the model itself: `load_model`)."""
    path = Path(path)
    config_file = path / "config.yaml"
    if not config_file.is_file():
        raise CheckpointError(f"{path}: not a run folder (no config.yaml)")
    try:
        body = yaml.safe_load(config_file.read_text(encoding="utf-8"))
        data = body["data"]
        info = DataInfo(data["name"], tuple(data["classes"]), tuple(data["mean"]), tuple(data["std"]), data["source"])
        config = TrainConfig.from_dict(body["train"], where=str(config_file))
    except (yaml.YAMLError, KeyError, TypeError) as err:
        raise CheckpointError(f"{config_file}: damaged run config ({err})") from None
    return Run(path, config, load_spec(path / "spec.yaml"), info)


def load_model(run: Run, which: str = "best"):
    """The run's network with its `best` or `last` weights, in eval mode."""
    from convscope.build import build
    from convscope.training.checkpoint import load_weights

    model = build(run.spec, pretrained=False)  # the run's own weights replace any pretrained ones
    load_weights(run.weights / f"{which}.safetensors", model)
    return model.train(False)


def load_predictor(run: Run, which: str = "best"):
    """What classifies images for the run: its network, averaged with mirror images when its config says so
    (`TrainConfig.flips_at_test`). Evaluation, prediction and export use this; the inspection tools `load_model`.
    A detector's maps are never averaged with mirrored ones (their boxes would not line up)."""
    model = load_model(run, which)
    return model if run.spec.layers[-1].layer_type == "detect" else with_test_flips(model, run.config)


def with_test_flips(model, config: TrainConfig):
    from convscope.layers import MirrorAverage

    return MirrorAverage(model) if config.flips_at_test() else model


def model_images(run: Run, images, dataset: str):
    """uint8 N×H×W×C images of `dataset` as the run's network takes them.

    A transfer run (its spec starts with a base) resizes and converts them to the base's input, as in training; any
    other network was fitted to its data, so images of another shape are an error.
    """
    from convscope.data.resize import fit_images
    from convscope.errors import DataError
    from convscope.transfer.bases import spec_base

    if tuple(images.shape[1:]) == run.spec.input:
        return images
    if spec_base(run.spec) is None:
        shape = "×".join(map(str, images.shape[1:]))
        raise DataError(
            f"{dataset}: images are {shape}, the model {run.spec.name} takes {'×'.join(map(str, run.spec.input))}"
        )
    return fit_images(images, run.spec.input)


def classifier_run(run: Run | str | Path, command: str) -> Run:
    """The run, which must be a classifier: a detector is evaluated and used with `convscope detect ...`."""
    run = run if isinstance(run, Run) else load_run(run)
    if run.spec.layers[-1].layer_type == "detect":
        from convscope.errors import SpecError

        raise SpecError(f"{run.path} is a detector: use convscope detect {command} {run.path} ...")
    return run
