"""The trainer's side of auto-tuning (training/autotune.py): when to tune, the trial steps on a copy of the model,
applying a choice, and recording it in train.log, config.yaml and the checkpoint."""

from __future__ import annotations

import copy
import logging

import torch
import yaml

from convscope.device import cpu_has_fast_bf16
from convscope.errors import CheckpointError
from convscope.files import atomic_write_text
from convscope.run import CONFIG
from convscope.training import phases
from convscope.training.autotune import (
    DROP,
    RECHECK_SECONDS,
    Choice,
    Tuning,
    Watch,
    candidates,
    cores_for,
    steps_to_tune,
    thread_counts,
    time_steps,
    tune,
    worth_tuning,
)
from convscope.training.runtime import optimizer_for
from convscope.yamlfile import read_yaml

log = logging.getLogger("convscope.train")


class Tuned:
    """Auto-tuning of the Trainer's threads and precision (a mixin: it reads the trainer's model, task, config, group,
    device, phase, epoch and batches). `self.tuning` is the choice in effect (None before the first phase begins)."""

    tuning: Tuning | None = None
    watch: Watch | None = None

    @property
    def precision(self) -> str:
        """The forward pass's precision for autocast: the tuned one on the CPU, else the config's (device.py)."""
        on_cpu = self.device.type == "cpu" and self.tuning is not None
        return self.tuning.choice.precision if on_cpu else self.config.precision

    def _cores(self) -> int:
        return cores_for(self.group.local_world_size if self.group.distributed else 1)

    def _choose(self, restored: bool) -> None:
        """At the start of a phase: the restored choice of a resumed run, or a new one (measured where worth it)."""
        if self.device.type != "cpu":  # threads do not matter there, and the precision is the device's (device.py)
            self.tuning = None
            return
        cfg = self.config
        if restored and self.tuning is not None and cfg.threads not in (None, self.tuning.choice.threads):
            # `--resume --threads N`: the user's count, with the run's precision
            precision = self.tuning.choice.precision
            self.tuning = Tuning(
                Choice(cfg.threads, precision), "forced", notes=["threads given", "the run's precision"]
            )
            self._apply(f"resumed with {self.tuning.choice.label()} (threads given; {precision}: the run's precision)")
            return
        if restored and self.tuning is not None:
            self._apply(f"resumed with {self.tuning.choice.label()} (the choice this run's checkpoint was made with)")
            return
        choices, notes = candidates(cfg.threads, cfg.precision, self._cores(), cpu_has_fast_bf16())
        steps = (self._phase_end() - self.epoch) * self.batches - self.batch
        if self.group.distributed:
            why = "several processes: each its share of the cores"
            tuning = Tuning(Choice(cfg.threads or self._cores(), _fixed(cfg.precision)), "default", notes=[why])
        elif len(choices) == 1:
            given = [
                f"{what} given"
                for what, v in (("threads", cfg.threads), ("precision", cfg.precision))
                if v and v != "auto"
            ]
            tuning = Tuning(choices[0], "forced", notes=given + notes)
        elif not worth_tuning(len(choices), steps):
            # too short for every candidate: the precisions alone, on all cores, where that is worth it (bf16 is up
            # to 2.4× fp32 on AMX, so a phase of a few hundred steps is worth a few steps of timing)
            threads = cfg.threads or self._cores()
            precisions = [choice for choice in choices if choice.threads == threads]
            if worth_tuning(len(precisions), steps):
                tuning = tune(self._trial(), precisions, [*notes, f"{steps} steps: too short to tune the threads too"])
            else:
                need = steps_to_tune(len(precisions) if len(precisions) > 1 else len(choices))
                short = f"{steps} step{'s' * (steps != 1)}: too short to tune, which takes {need}"
                why = f"{short}; --threads N sets the count"
                tuning = Tuning(Choice(threads, _fixed(cfg.precision)), "default", notes=[why])
        else:
            tuning = tune(self._trial(), choices, notes)
        self.tuning = tuning
        self._apply(tuning.line())

    def _phase_end(self) -> int:
        return self.config.epochs if self.phase == 1 else self.total_epochs

    def _apply(self, line: str) -> None:
        threads = self.tuning.choice.threads
        torch.set_num_threads(threads)
        watched = self.tuning.how == "measured" and self.config.threads is None
        # re-checks while on few threads: every RECHECK_SECONDS, or 20× what one costs (≤ 5% of the time)
        period = max(RECHECK_SECONDS, 20 * self.tuning.seconds)
        self.watch = Watch(self._cores(), threads, self.tuning.seconds, period) if watched else None
        log.info("%s", line)
        for cb in self.callbacks:
            if hasattr(cb, "on_note"):  # the CLI's and the notebook's progress show it
                cb.on_note(line)
        self._record_tuning()

    def _step_done(self, images: int, seconds: float) -> None:
        """After each training step: re-check the thread count when the watch says the machine changed. Only the
        thread count is re-measured (the precision is the run's), on the copy, so the weights are untouched."""
        if self.watch is None or not self.watch.step(images, seconds):
            return
        old = self.tuning.choice
        choices = [Choice(t, old.precision) for t in thread_counts(self._cores())]
        tuning = tune(self._trial(), choices, [])
        why = (
            f"the steps ran at {self.watch.now:,.0f} images/s, against {self.watch.reference:,.0f} after the choice"
            if self.watch.now < DROP * self.watch.reference
            else f"on {old.threads} of {self._cores()} cores for {self.watch.period:.0f} s"
        )
        kept = "kept" if tuning.choice == old else f"now {tuning.choice.label()}, was {old.label()}"
        tuning.notes = [f"re-checked at epoch {self.epoch + 1}, batch {self.batch}: {why}"]
        self.tuning = tuning
        self._apply(f"threads re-checked: {kept}; {tuning.line().removeprefix('tuned: ')}")

    def _trial(self):
        """A function timing one choice: training steps on a copy of the model and optimizer, on the phase's first
        batch, with torch's random generators set back afterwards (dropout draws of the run stay its own)."""
        model = copy.deepcopy(self.model)
        optimizer = optimizer_for(model, self.config, phases.learning_rate(self.config, self.phase))
        order = torch.randperm(self.task.train_size, generator=torch.Generator().manual_seed(self.config.seed))
        batch = next(iter(self.task.batches([order[: self.config.batch_size]])))
        generator = torch.Generator().manual_seed(self.config.seed)
        images = 0

        def step(choice: Choice) -> None:
            nonlocal images
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=choice.precision == "bf16"):
                loss, _, images = self.task.loss(model, batch, generator)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        def trial(choice: Choice) -> float:
            torch.set_num_threads(choice.threads)
            with torch.random.fork_rng(devices=[]):
                step(choice)  # the batch's size, and the first kernels built
                return time_steps(lambda: step(choice), images)

        model.train()
        return trial

    def _record_tuning(self) -> None:
        """config.yaml's `tuning` section: the choice of each phase so far and how it was made (rank 0 writes)."""
        path = self.run.path / CONFIG
        if not self.group.is_main or not path.is_file():  # a Trainer driven without train() has no config.yaml
            return
        body = read_yaml(path, CheckpointError, "run config")
        if not isinstance(body.get("tuning"), dict):  # absent, or edited into something else: the record is rewritten
            body["tuning"] = {}
        body["tuning"][f"phase {self.phase}"] = self.tuning.to_dict()
        atomic_write_text(path, yaml.safe_dump(body, sort_keys=False, allow_unicode=True))


def _fixed(precision: str) -> str:
    """The precision of a run that is not measured: the one asked for, and float32 for auto."""
    return "fp32" if precision == "auto" else precision
