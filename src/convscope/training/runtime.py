"""What a training loop runs on besides the model: the optimizer and learning-rate schedule, and the run's log file.
(Stopping cleanly on Ctrl-C / SIGTERM: convscope.signals.)"""

from __future__ import annotations

import logging
import sys
from contextlib import contextmanager, suppress
from pathlib import Path

import torch

from convscope.config import TrainConfig


def optimizer_for(model, cfg: TrainConfig, lr: float) -> torch.optim.Optimizer:
    # Only what trains (a frozen base is left out). No weight decay on biases and batchnorm scales/shifts (1-D
    # parameters): decaying them only hurts.
    trainable = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in trainable if p.ndim > 1]
    other = [p for p in trainable if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": other, "weight_decay": 0.0}]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(groups, lr=lr)
    return torch.optim.AdamW(groups, lr=lr)


def scheduler_for(optimizer, cfg: TrainConfig, batches: int, epochs: int, lr: float):
    """The learning-rate schedule of `epochs` × `batches` steps (any number ≥ 1 of each)."""
    total = epochs * batches + 1  # the schedule's last point is reached by the last step, not one before
    if cfg.schedule == "onecycle":
        # torch's OneCycleLR divides by the length of its warm-up (pct_start · total − 1 steps) and of its annealing:
        # both must be at least one step, so very short runs (total < 8) warm up over two steps and anneal over
        # the rest. One step (total 2) gets three points, of which it uses two.
        total = max(total, 3)
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=lr, total_steps=total, pct_start=max(0.25, 2 / total), anneal_strategy="linear"
        )
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)
    return torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)


class _RunLog(logging.FileHandler):
    """train.log. When the disk fills up (or the file cannot be written for any other reason) mid-training, logging's
    default is a "--- Logging error ---" traceback on stderr at every later line; the training itself is still fine
    (checkpoints say for themselves when they cannot be written). So: one warning naming the file, then the log goes
    on in the terminal only."""

    failed = False

    def emit(self, record: logging.LogRecord) -> None:
        if not self.failed:
            super().emit(record)

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 (logging's name)
        error = sys.exc_info()[1]
        if self.failed or not isinstance(error, OSError):
            return super().handleError(record)
        self.failed = True
        with suppress(OSError):
            self.close()
        reason = error.strerror or type(error).__name__
        logging.getLogger("convscope.train").warning(
            "%s: cannot write (%s); the log goes on in the terminal only", self.baseFilename, reason
        )

    def close(self) -> None:
        with suppress(OSError):  # flushing the last lines onto a full disk
            super().close()


@contextmanager
def log_file(path: Path):
    """Everything convscope logs while training also goes to the run's train.log."""
    logger = logging.getLogger("convscope")
    handler = _RunLog(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO if level in (logging.NOTSET,) or level > logging.INFO else level)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        handler.close()
