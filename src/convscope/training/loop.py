"""train(): a new run or a resumed one, in its run folder, around the trainer (training/trainer.py) and the task of
its spec (convscope.tasks.task_for).

A new run: the data is loaded and the spec fitted to it and checked before any file is written; then the run folder
is claimed (one writer at a time: run.RunLock) and the trainer runs. A resumed run: its settings and checkpoint are
checked (training/resume.py), then it continues exactly where its last checkpoint left it.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import replace
from pathlib import Path

from convscope.device import resolve_device
from convscope.errors import ConfigError, SpecError
from convscope.files import atomic_write_text, remove_temp_files
from convscope.memory import check_training_memory
from convscope.presets import preset_names, resolve_spec
from convscope.run import (
    CONFIG,
    SPEC,
    DataInfo,
    Run,
    RunLock,
    check_run_folder_is_free,
    load_run,
    new_run_folder,
    remove_unfinished,
)
from convscope.shapes import infer
from convscope.signals import StopRequest
from convscope.spec import NetSpec
from convscope.tasks import task_for
from convscope.training.callbacks import Interrupted, data_progress
from convscope.training.config import TrainConfig
from convscope.training.resume import check_format, finished_message, is_finished, resumed_config
from convscope.training.trainer import Trainer, set_threads
from convscope.transfer.bases import input_scaling, spec_base

__all__ = ["CACHE_LIMIT", "Interrupted", "train"]

log = logging.getLogger("convscope.train")
CACHE_LIMIT = 4 * 2**30  # bytes of cached base features allowed in memory


def _cache_bytes(spec: NetSpec, images: int) -> int:
    """float32 bytes of the base's features of `images` images (cache_features keeps them in memory)."""
    return math.prod(infer(spec).layers[0].output_shape) * 4 * images


def train(
    config: TrainConfig | None = None,
    *,
    resume: str | Path | None = None,
    spec: NetSpec | None = None,
    callbacks=(),
    report=True,
    stop: StopRequest | None = None,
    **settings,
) -> Run:
    """Train and return the run. `train(model="fashion-fast", epochs=3)` or `train(resume="runs/x")`.

    `spec`: train this network instead of resolving `config.model` (which then only names it).
    `resume`: continue the run in that folder exactly where its last checkpoint left it; `settings` may then only
    raise `epochs` (to train longer) or set `threads` (training.resume). A finished run is returned unchanged.
    `stop`: the StopRequest that Ctrl-C / SIGTERM feed (the CLI's); by default one is installed while training.

    Only one training writes a run folder at a time (run.RunLock); a second one is refused with CheckpointError.
    With `report` (the default) the run folder also gets confusion.png, curves.png and report.html at the end.

    Raises (all ConvscopeError, one line each): ConfigError for settings, SpecError for a network that cannot run or
    does not fit in memory, DataError for the data, CheckpointError for a run folder that is taken, damaged or not
    resumable, OutputError when a file cannot be written, TrainingError when the loss stops being finite, and
    Interrupted (exit_code 130/143) after Ctrl-C / SIGTERM. Nothing is written before the first four are checked.
    """
    started = time.perf_counter()
    if resume is not None:
        run = load_run(resume)
        check_format(run)
        config = resumed_config(run, settings)
        resolve_device(config.device)  # refused before the run's config is touched
        if config == run.config and is_finished(run):
            log.warning("%s", finished_message(run))
            return run
        with RunLock(run.path):
            remove_temp_files(run.path)
            if config != run.config:
                run = replace(run, config=config)
                log.info("%s: now set to train %d epochs", run.path, config.epochs)
                atomic_write_text(run.path / CONFIG, run.config_yaml())
            trainer = Trainer(run, task_for(run.spec), callbacks, resuming=True, started=started)
            trainer.fit(stop)
            if report:
                trainer.write_report()
        return run
    if config is None:
        config = TrainConfig.from_dict(settings, where="train()")  # a preset's recipe fills what is not given
    elif settings:
        config = TrainConfig.from_dict({**config.to_dict(), **settings}, where="train()")
    config = config.with_absolute_paths()  # the run's record works from any folder
    spec = spec or resolve_spec(config.model)
    resolve_device(config.device)  # a device this machine lacks is refused before the data is read
    set_threads(config)
    task = task_for(spec)
    base = spec_base(spec)
    if base is None and (config.finetune_epochs or config.cache_features):
        raise ConfigError(f"{spec.name}: finetune_epochs and cache_features need a spec that starts with a base")
    data = task.load_data(config, spec, data_progress(callbacks))
    spec = task.fit_spec(spec, data)
    try:
        infer(spec)
        check_training_memory(spec, config.batch_size)  # what this machine cannot hold: refused before any write
    except SpecError as err:  # name the spec file, as `convscope summary` does
        if config.model in preset_names() or not Path(config.model).is_file():
            raise
        raise SpecError(f"{config.model}: {err}", layer=err.layer, detail=err.detail) from None
    if config.cache_features and (needed := _cache_bytes(spec, len(data.train))) > CACHE_LIMIT:
        raise ConfigError(
            f"cache_features would hold {needed / 2**30:.1f} GiB of features (limit {CACHE_LIMIT / 2**30:.0f}); "
            "use a smaller image size or per_class, or train without cache_features"
        )  # a spec that cannot run on these images fails here, before anything is written
    # A base's weights expect the input scaling they were trained with; a new network, that of its images (a set of
    # blank images is refused here, before anything is written).
    mean, std = input_scaling(base) if base else task.input_stats(data)
    path, made = new_run_folder(config)
    with RunLock(path):  # refused here, before anything is written, when another training holds the folder
        check_run_folder_is_free(path)
        try:
            run = Run(path, config, spec, DataInfo(data.name, data.classes, mean, std, data.source))
            atomic_write_text(path / SPEC, spec.to_yaml())
            atomic_write_text(path / CONFIG, run.config_yaml())
            trainer = Trainer(run, task, callbacks, resuming=False, data=data, started=started)
            trainer.fit(stop)
        except (Exception, KeyboardInterrupt):  # a stop before the first checkpoint has nothing to resume either
            remove_unfinished(path, made)  # nothing of it can be resumed: a retry with this --out must not be blocked
            raise
        if report:
            trainer.write_report()
    return run
