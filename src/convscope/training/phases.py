"""Transfer learning's two phases, as the TensorFlow transfer-learning tutorial trains them.

    phase 1  `epochs`           the pretrained base frozen (its batchnorm layers in inference mode); the new
                                layers train
    phase 2  `finetune_epochs`  the base's last `unfreeze_blocks` blocks train too, at FINETUNE_LR_SCALE× the rate,
                                under a learning-rate schedule of its own

A network without a pretrained base has phase 1 only, with everything trainable. The trainer asks this module what a
phase is (which blocks train, at what rate, over which epochs) and builds the optimizer and schedule for it.
"""

from __future__ import annotations

import logging

from torch import nn

from convscope.config import FINETUNE_LR_SCALE, TrainConfig

log = logging.getLogger("convscope.train")


def enter(model: nn.Module, config: TrainConfig, phase: int) -> None:
    """Freeze the model's pretrained base for phase 1, unfreeze its last `unfreeze_blocks` blocks for phase 2, and
    say so in the log; a model without a base is left as it is."""
    base = getattr(model, "base", None)
    if base is not None:
        base.set_trainable(0 if phase == 1 else config.unfreeze_blocks)
        log.info("%s", describe(model, phase))


def describe(model: nn.Module, phase: int) -> str:
    """'phase 2: 4 of the base's 16 blocks trainable'; '' for a model without a pretrained base."""
    base = getattr(model, "base", None)
    if base is None:
        return ""
    return f"phase {phase}: {base.trainable_blocks} of the base's {len(base.blocks)} blocks trainable"


def learning_rate(config: TrainConfig, phase: int) -> float:
    """The peak learning rate of a phase: the config's, FINETUNE_LR_SCALE× smaller while fine-tuning."""
    return config.learning_rate * (FINETUNE_LR_SCALE if phase == 2 else 1)


def schedule(config: TrainConfig, phase: int) -> tuple[int, int]:
    """(first epoch, epochs), 0-based, of a phase's learning-rate schedule."""
    return (0, config.epochs) if phase == 1 else (config.epochs, config.finetune_epochs)
