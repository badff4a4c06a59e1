"""train(): a new run or a resumed one, in its run folder, around the trainer (training/trainer.py) and the task of
its spec (convscope.tasks.task_for).

A new run: the data is loaded and the spec fitted to it and checked before any file is written; then the run folder
is claimed (one writer at a time: run_lock.RunLock) and the trainer runs. A resumed run: its settings and checkpoint are
checked (training/checkpoints.py), then it continues exactly where its last checkpoint left it.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from convscope.config import TrainConfig
from convscope.errors import ConfigError, ConvscopeError, Interrupted, SpecError
from convscope.files import atomic_write_text
from convscope.memory import check_training_memory
from convscope.presets import preset_names, resolve_spec
from convscope.pretrained.bases import input_scaling, spec_base
from convscope.pretrained.finetune import transfer_spec
from convscope.recipes import TRANSFER
from convscope.run import (
    CONFIG,
    SPEC,
    DataInfo,
    Run,
    check_not_foreign,
    check_run_folder_is_free,
    load_run,
    new_run_folder,
    remove_run_temp_files,
    remove_unfinished,
)
from convscope.run_lock import RunLock
from convscope.shapes import infer
from convscope.signals import StopRequest
from convscope.spec import NetSpec
from convscope.tasks import task_for, task_of
from convscope.training.callbacks import data_progress
from convscope.training.checkpoints import CHANGEABLE, check_format, finished_message, is_finished, resumed_config
from convscope.training.distributed import Group
from convscope.training.trainer import Trainer, set_threads

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
    raise `epochs` (to train longer) or set `threads` (training.checkpoints). A finished run is returned unchanged.
    `stop`: the StopRequest that Ctrl-C / SIGTERM feed (the CLI's); by default one is installed while training.

    Only one training writes a run folder at a time (run_lock.RunLock); a second one is refused with CheckpointError.
    With `report` (the default) the run folder also gets confusion.png, curves.png and report.html at the end.

    Under torchrun (RANK, WORLD_SIZE … set: training/distributed.py) every process calls this with the same
    arguments: they train as one, rank 0 writes the run folder, and a worker torchrun restarted (--max-restarts)
    resumes the run of `out` that its first attempt started. The Run is returned on every rank.

    Raises (all ConvscopeError, one line each): ConfigError for settings, SpecError for a network that cannot run or
    does not fit in memory, DataError for the data, CheckpointError for a run folder that is taken, damaged or not
    resumable, OutputError when a file cannot be written, TrainingError when the loss stops being finite or a
    process is lost, and Interrupted (exit_code 130/143) after Ctrl-C / SIGTERM. Nothing is written before the first
    four are checked. Under torchrun the other ranks raise PeerFailed where rank 0 failed.
    """
    started = time.perf_counter()
    group = Group.from_env()
    if resume is None:
        if config is None:
            config = TrainConfig.from_dict(settings, where="train()")  # a preset's recipe fills what is not given
        elif settings:
            config = TrainConfig.from_dict({**config.to_dict(), **settings}, where="train()")
        config = config.with_absolute_paths()  # the run's record works from any folder
        if group.max_restarts and not config.out:
            raise ConfigError("torchrun --max-restarts: give --out DIR, the run folder that restarted workers resume")
        if (restarted := _restarted_run(config, group)) is not None:
            log.warning("restarted by torchrun (attempt %d): resuming %s", group.restart + 1, restarted)
            resume, settings = restarted, {k: getattr(config, k) for k in CHANGEABLE if k != "epochs"}
    if resume is not None:
        return _resume(Path(resume), settings, group, callbacks, report, stop, started)
    return _new_run(config, spec, group, callbacks, report, stop, started)


def _restarted_run(config: TrainConfig, group: Group) -> Path | None:
    """The run a worker that torchrun restarted goes on with: `out`, when it holds a run of these very settings
    (its first attempt's), else None (a new run, which refuses a folder holding another one)."""
    if not group.restart or not config.out or not (Path(config.out) / CONFIG).is_file():
        return None
    try:
        run = load_run(config.out)
    except ConvscopeError:  # killed while writing its first files: it is started again
        return None
    skip = {*CHANGEABLE, *run.config.chosen_keys(), "from_data"}  # what the first attempt chose from its data
    own = {k: v for k, v in run.config.to_dict().items() if k not in skip}
    return run.path if own == {k: v for k, v in config.to_dict().items() if k not in skip} else None


def _resume(path: Path, settings, group: Group, callbacks, report, stop, started) -> Run:
    run = load_run(path)
    if run.config.image_size is None and "image_size" in run.config.chosen_keys():  # a run from before image_size:
        run = replace(run, config=replace(run.config, image_size=run.spec.input[0]))  # its size, never chosen anew
    check_format(run)
    config = resumed_config(run, settings)
    device = group.device_for(config.device)  # refused before the run's config is touched
    if config == run.config and is_finished(run):
        if group.is_main:
            log.warning("%s", finished_message(run, task_of(run)))
        return run
    with group.joined(device), contextlib.ExitStack() as stack:

        def claim() -> None:  # rank 0: the run folder's lock, for the whole training
            stack.enter_context(RunLock(run.path))
            remove_run_temp_files(run.path)

        def record() -> None:  # rank 0, once the checkpoint is found sound: the changed setting in the run's record
            log.info("%s: now set to train %d epochs", run.path, config.epochs)
            atomic_write_text(run.path / CONFIG, replace(run, config=config).config_yaml())

        group.on_main(claim)
        resumed = replace(run, config=config)
        trainer = Trainer(resumed, task_for(run.spec), callbacks, resuming=True, started=started, group=group)
        if config != run.config:
            group.on_main(record)
        run = resumed
        trainer.fit(stop)
        if report:
            group.on_main(trainer.write_report)  # the processes end together, once the run folder is complete
    return run


def _new_run(config: TrainConfig, spec: NetSpec | None, group: Group, callbacks, report, stop, started) -> Run:
    spec = spec or resolve_spec(config.model)
    device = group.device_for(config.device)  # a device this machine lacks is refused before the data is read
    _check_processes(config, group, device)
    set_threads(config, group)
    task = task_for(spec)
    if config.out and Path(config.out).is_dir():  # a user's folder is refused before minutes of reading data
        check_not_foreign(Path(config.out))
    base = spec_base(spec)
    if base is None and (config.finetune_epochs or config.cache_features):
        raise ConfigError(f"{spec.name}: finetune_epochs and cache_features need a spec that starts with a base")
    with group.joined(device), contextlib.ExitStack() as stack:
        # Rank 0 first: it decodes an image folder into the cache, which the others then read.
        data = group.main_first(lambda: task.load_data(config, spec, data_progress(callbacks)))
        spec = task.fit_spec(spec, data)
        config = task.fit_config(config, spec, data)  # settings chosen from the data, recorded in config.yaml
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
        # A base's weights expect the input scaling they were trained with; a new network, that of its images (a
        # set of blank images is refused here, before anything is written).
        mean, std = input_scaling(base) if base else task.input_stats(data)
        info = DataInfo(data.name, data.classes, mean, std, data.source)
        made = False

        def claim() -> str:  # rank 0: the run folder, held by its lock for the whole training
            nonlocal made
            path, made = new_run_folder(config)
            stack.enter_context(RunLock(path))  # refused here, before anything is written, when another holds it
            check_run_folder_is_free(path)
            atomic_write_text(path / SPEC, spec.to_yaml())
            atomic_write_text(path / CONFIG, Run(path, config, spec, info).config_yaml())
            return str(path)

        run = Run(Path(group.on_main(claim)), config, spec, info)
        try:
            trainer = Trainer(run, task, callbacks, resuming=False, data=data, started=started, group=group)
            trainer.fit(stop)
        except (Exception, KeyboardInterrupt):  # a stop before the first checkpoint has nothing to resume either
            if group.is_main:  # nothing of it can be resumed: a retry with this --out must not be blocked
                remove_unfinished(run.path, made)
            raise
        if report:
            group.on_main(trainer.write_report)
    return run


def _check_processes(config: TrainConfig, group: Group, device) -> None:
    """Refuse what several processes cannot do, before the data is read. Raises ConfigError."""
    if config.sync_bn and device.type != "cuda":
        raise ConfigError(
            f"sync_bn: torch's SyncBatchNorm runs only on CUDA GPUs (this training is on {device.type}); without it "
            "each process normalises with its own images and rank 0's BatchNorm statistics are saved"
        )
    if group.distributed and config.cache_features:
        raise ConfigError(
            "cache_features computes the frozen base's features in one process; with several processes, train "
            "without it (the base then runs in every step)"
        )


def transfer(arch: str = "efficientnet-lite0", image_size: int = 224, weights: str | None = None, **settings: Any):
    """Train a new head on a pretrained base (and fine-tune its top); returns the Run. `settings`: TrainConfig's."""
    spec = transfer_spec(arch, image_size, weights)
    return train(spec=spec, **{"model": spec.name, **TRANSFER, **settings})
