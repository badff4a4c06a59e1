"""An exponential moving average of the weights (`ema_decay`), as YOLOv5/Ultralytics' ModelEMA keeps one.

After every optimizer step each floating-point entry of the model's state dict (weights and batchnorm statistics)
moves a share 1 − d towards the model's: ema ← d·ema + (1 − d)·model, with d = decay·(1 − exp(−updates/tau)). The
ramp (d near 0 for the first steps, `decay` after a few `tau`) keeps the random start from weighing on the average;
Ultralytics' decay 0.9999 and tau 2000 suit its hundreds of thousands of steps, a few hundred steps want less (the
lite0-det recipe's numbers: recipes.py). Integer entries (batchnorm's step counts) are copied.

The averaged copy is what validation, the test and the saved weights use; the model itself trains on. Its state
(`state()`: the update count and the averaged tensors) goes into the trainer's one checkpoint, so a resumed run
continues the same average bit for bit.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping

import torch
from torch import Tensor, nn

from convscope.errors import CheckpointError


class ModelEMA:
    """The moving average of `model`'s weights: `update(model)` after each step, `module` to evaluate.

    decay: the average's long-run decay per step, in (0, 1); tau: steps of the ramp (the decay reaches 63% of
    `decay` after tau steps).
    """

    def __init__(self, model: nn.Module, decay: float, tau: float) -> None:
        self.decay, self.tau, self.updates = decay, tau, 0
        self.module = copy.deepcopy(model).train(False)  # eval mode: batchnorm uses its averaged statistics
        for p in self.module.parameters():
            p.requires_grad_(False)

    def rate(self) -> float:
        """The decay d of the update just counted (0 before any)."""
        return self.decay * (1 - math.exp(-self.updates / self.tau))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """One step: every float entry of the average moves (1 − d) of the way to the model's."""
        self.updates += 1
        d = self.rate()
        source = model.state_dict()
        for name, value in self.module.state_dict().items():
            if value.dtype.is_floating_point:
                value.mul_(d).add_(source[name].detach(), alpha=1 - d)
            else:
                value.copy_(source[name])

    def weights(self) -> dict[str, Tensor]:
        """A copy of the averaged state dict (what weights/best and weights/last hold)."""
        return {k: v.detach().clone() for k, v in self.module.state_dict().items()}

    def state(self) -> dict:
        """For the checkpoint: the update count and the averaged tensors (names → tensors)."""
        return {"updates": self.updates, "weights": self.module.state_dict()}

    def load_state(self, state: object, where: str) -> None:
        """Put back `state()` read from the checkpoint at `where`. Raises CheckpointError when it is missing or does
        not fit the model (another run's, or one saved without EMA)."""
        weights = state.get("weights") if isinstance(state, Mapping) else None
        updates = state.get("updates") if isinstance(state, Mapping) else None
        own = self.module.state_dict()
        if (
            not isinstance(updates, int)
            or isinstance(updates, bool)
            or updates < 0
            or not isinstance(weights, Mapping)
            or set(weights) != set(own)
            or any(
                not isinstance(weights[k], Tensor) or weights[k].shape != v.shape or weights[k].dtype != v.dtype
                for k, v in own.items()
            )
        ):
            raise CheckpointError(
                f"{where}: expected the weights' moving average (ema_decay is set) with an update count and one "
                "tensor per weight of the model (saved without ema_decay, or edited?)"
            )
        self.module.load_state_dict(dict(weights), strict=True)
        self.updates = updates
