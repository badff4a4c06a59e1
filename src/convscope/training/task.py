"""The Task interface: what a kind of convnet (a classifier, a detector) adds to the trainer, which knows only steps.

The trainer (training/trainer.py) owns epochs, batches, the optimizer and its schedule, checkpoints, Ctrl-C and the
callbacks; it never asks which task it runs. A task owns the data and what the numbers mean:

    data     load_data(config, spec) → dataset;  fit_spec(spec, dataset) → the spec fitted to it (classes, input);
             fit_config(config, spec, dataset) → settings chosen from the data (a new run)
    batches  batches(index) → the training batches of an epoch (index: each one's images), on the device
    loss     loss(model, batch, generator) → (loss, right answers, images) of one training batch
    validate validate(model) → the row entries named validation_keys;  score(row) → what "best" maximises
    test     test(model) → results.json entries;  write_report() → report.html and its pictures

and what the rest of convscope asks of a finished run's task, so that no module outside `convscope.tasks` asks
whether a network is a detector:

    words    name ("classification"), command ("convscope" / "convscope detect"), outputs (what the network returns)
    numbers  score_key / score_name (the headline number of results.json), headline(results) (the line people read)
    mirror   predictor(model, config) → the network as evaluate/predict/export run it (mirror averaging if trained so)
    after    evaluation(run, ...) (saved, or scored and saved) · report(run) → report.html · predict(loaded, items)

`convscope.tasks.task_for(spec)` picks the task of a spec (one place); classification is `classify/task.py`,
detection `detect/task.py`. A new task subclasses this class and implements these methods; it does not subclass or
change the trainer.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from convscope.config import TrainConfig
from convscope.loaded import LoadedRun
from convscope.run import Run
from convscope.spec import NetSpec


class Task:
    """One task's data, loss, validation, score, test and report (see the module's docstring)."""

    name: ClassVar[str] = ""  # the task in words: "classification", "detection"
    command: ClassVar[str] = "convscope"  # the CLI's words before a run's commands (detect evaluate)
    outputs: ClassVar[str] = ""  # what the network returns, for export's model.json
    score_key: ClassVar[str] = ""  # results.json's headline number ("test_acc")
    score_name: ClassVar[str] = ""  # its name in words ("test accuracy")
    counts_correct: ClassVar[bool] = True  # loss() counts right answers: a training accuracy exists
    validation_keys: ClassVar[tuple[str, ...]] = ()  # what validate() adds to an epoch's row (NaN when not validated)

    # -- before the run folder exists --------------------------------------------------------------------------------
    @staticmethod
    def load_data(config: TrainConfig, spec: NetSpec, progress=None) -> Any:
        """The dataset of `config.data`. Raises DataError / ConfigError / SpecError before anything is written."""
        raise NotImplementedError

    @staticmethod
    def fit_spec(spec: NetSpec, data: Any) -> NetSpec:
        """The spec fitted to the data (its classes; its input where the network allows)."""
        raise NotImplementedError

    @staticmethod
    def fit_config(config: TrainConfig, spec: NetSpec, data: Any) -> TrainConfig:
        """The config with the settings it lets the data choose (TrainConfig.from_data) chosen; a new run only."""
        return config

    @staticmethod
    def input_stats(data: Any) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Per-channel mean and std of the training images in [0, 1], for a network without a pretrained base."""
        raise NotImplementedError

    # -- while training ------------------------------------------------------------------------------------------------
    def __init__(self, run: Run, data: Any, device: torch.device) -> None:
        self.run, self.config, self.device = run, run.config, device
        self.train_size = 0  # training images per epoch

    def train_and_val(self, data: Any, hold_out) -> tuple[Any, Any]:
        """The dataset's train and val splits; without a val split, `hold_out(train, val_fraction, seed)` takes a
        seeded share of train for validation (none when val_fraction is 0)."""
        train, val = data.train, data.val
        if val is None and self.config.val_fraction > 0:
            train, val = hold_out(train, self.config.val_fraction, self.config.seed)
        return train, val

    def log_data_notes(self) -> None:
        """Write to train.log (open now) what loading the data found besides the images: skipped files, label
        problems. The data is read before the run folder exists, so this is said again once it does."""

    def data_lines(self) -> list[str]:
        """Lines the terminal shows when training starts, after the data notes (a detector: what its data holds)."""
        return []

    def start_phase(self, model: torch.nn.Module, phase: int, epoch: int) -> None:
        """Called when training starts or resumes and when a phase begins (2: a base's top blocks unfrozen), with
        the epoch (0-based) it begins at; e.g. to compute a frozen base's features once."""

    def probe_image(self) -> torch.Tensor | None:
        """The film strip's probe image (training/filmstrip.py): uint8 C×H×W on the CPU, the same for every run of the
        same data and seed and drawn without a random number. By default the first training image, from `train_x`
        (a uint8 N×C×H×W tensor, or a streamed split that decodes one image); None for a task that keeps neither."""
        images = getattr(self, "train_x", None)
        if isinstance(images, torch.Tensor) and images.ndim == 4 and len(images):
            return images[0].cpu().clone()
        if hasattr(images, "take") and len(images):  # data.stream.FileSplit
            one = images.take(np.array([0])).load().images[0]  # H×W×C uint8
            return torch.from_numpy(np.ascontiguousarray(one.transpose(2, 0, 1)))
        return None

    def batches(self, index: list[torch.Tensor]) -> Iterator[Any]:
        """One training batch per tensor of `index` (the positions of its images in the training split, from the
        trainer: the epoch's seeded order cut into batch_size images, and into this rank's part under torchrun;
        those still to train when an epoch resumes), in that order, each ready for loss() on the device."""
        raise NotImplementedError

    def loss(self, model: torch.nn.Module, batch: Any, generator: torch.Generator) -> tuple[torch.Tensor, int, int]:
        """(loss tensor, right answers, images) of one batch; augmentation draws come from `generator` only."""
        raise NotImplementedError

    def validate(self, model: torch.nn.Module) -> dict[str, float]:
        """The validation entries of an epoch's row (validation_keys), NaN where there is no validation split."""
        raise NotImplementedError

    def score(self, row: dict[str, float]) -> float:
        """What the best checkpoint maximises, from an epoch's row (NaN: not validated this epoch)."""
        raise NotImplementedError

    def test(self, model: torch.nn.Module, epochs: int) -> dict[str, Any]:
        """Evaluate `model` (the best weights) on the test split: results.json's entries."""
        raise NotImplementedError

    def write_report(self) -> None:
        """report.html and its pictures, from the test pass just made."""

    # -- after training: a finished run -------------------------------------------------------------------------------
    @classmethod
    def headline(cls, results: dict[str, Any]) -> str:
        """The test numbers of results.json in one line ('test accuracy 93.07%'); '' before the run was tested."""
        raise NotImplementedError

    @staticmethod
    def predictor(model: torch.nn.Module, config: TrainConfig) -> torch.nn.Module:
        """The network as evaluation, prediction and export run it (the run's test-time augmentation inside)."""
        return model

    @staticmethod
    def evaluation(run: Run, data: str | None = None, data_dir: str | None = None, device: str = "auto") -> Any:
        """A finished run's test evaluation: the one training saved while the run's best weights are unchanged, else
        scored on the test split of its data (or of `data`, a dataset as training takes it) and saved."""
        raise NotImplementedError

    @staticmethod
    def report(run: Run) -> Path:
        """Write a finished run's report.html and its pictures (from the saved evaluation); return its path."""
        raise NotImplementedError

    @staticmethod
    def predict(loaded: LoadedRun, items: list, top_k: int = 3) -> list:
        """What the network finds in each image of `items` (files, sample names; a classifier also takes PIL images
        and arrays): a classifier's top_k classes (Prediction), a detector's boxes (Found)."""
        raise NotImplementedError
