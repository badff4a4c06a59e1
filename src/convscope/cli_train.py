"""CLI commands around runs: train, evaluate, predict, data get. Parse, call the API, format."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import signal
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from convscope.cli_args import add_config_flags, add_device_flag, add_process_flags, config_settings, int_in
from convscope.errors import EXIT_SIGPIPE, ConfigError, DataError, Interrupted, SomeImagesFailed
from convscope.recipes import TRANSFER as TRANSFER_DEFAULTS
from convscope.signals import StopRequest

log = logging.getLogger("convscope.cli")

# The settings `transfer` has flags for; the others keep recipes.TRANSFER, then TrainConfig's defaults.
TRANSFER_SETTINGS = ("data", "data_dir", "epochs", "finetune_epochs", "unfreeze_blocks", "cache_features")
TRANSFER_SETTINGS += ("per_class", "batch_size", "lr", "augment", "val_fraction", "seed", "threads", "device")
TRANSFER_SETTINGS += ("cache_limit", "out")


def _transfer_help() -> dict[str, dict[str, str]]:
    """`transfer`'s own words for its settings: its two phases, and its defaults (recipes.TRANSFER)."""
    defaults = TRANSFER_DEFAULTS
    return {
        "epochs": {
            "flag": "--head-epochs",
            "help": f"phase 1: epochs of the head on the frozen base (default {defaults['epochs']})",
        },
        "finetune_epochs": {
            "help": "phase 2: epochs with the top blocks unfrozen, at a tenth of the learning rate (default 0)"
        },
        "unfreeze_blocks": {
            "help": f"phase 2: how many of the base's last blocks train (default {defaults['unfreeze_blocks']})"
        },
        "cache_features": {"help": "phase 1 on the base's features, computed once"},
        "batch_size": {"help": f"images per batch (default {defaults['batch_size']})"},
        "lr": {"help": f"peak learning rate of phase 1 (default {defaults['lr']:g}); phase 2 uses a tenth"},
        "augment": {"help": f"default {defaults['augment']}; e.g. flip,translate=8 or none"},
        "out": {"help": "run folder (default runs/BASE-DATA)"},
    }


def add_parsers(sub, console) -> None:
    p = sub.add_parser("train", help="train a convnet on Fashion-MNIST, MNIST, CIFAR or an image folder")
    p.add_argument("--config", metavar="YAML", help="settings file; flags given here override it")
    add_config_flags(p)  # every setting of TrainConfig
    p.add_argument(
        "--resume",
        metavar="RUN",
        help="continue a stopped run exactly; with --epochs N, train a finished one on to N epochs (only --threads, "
        "--device and --cache-limit may also be given)",
    )
    add_process_flags(p)
    p.set_defaults(run=lambda args: cmd_train(args, console))

    p = sub.add_parser("transfer", help="train a new head on a pretrained base, then fine-tune the base's top blocks")
    p.add_argument(
        "--base", default="efficientnet-lite0", help="efficientnet-lite0 (default), torchvision:NAME, timm:NAME"
    )
    p.add_argument(
        "--weights", metavar="PATH", help="the base's weights (.safetensors/.pt/.pth); needed for torchvision/timm"
    )
    p.add_argument("--image-size", type=int, default=224, help="images are resized to this square (default 224)")
    add_config_flags(p, TRANSFER_SETTINGS, **_transfer_help())
    add_process_flags(p)
    p.set_defaults(run=lambda args: cmd_transfer(args, console))

    p = sub.add_parser("evaluate", help="accuracy, per-class precision/recall/F1 and the confusion matrix of a run")
    p.add_argument("run_dir", metavar="RUN")
    p.add_argument("--data", help="evaluate on another dataset's test split")
    p.add_argument("--data-dir")
    p.add_argument("--json", action="store_true")
    add_device_flag(p)
    p.set_defaults(run=lambda args: cmd_evaluate(args, console))

    p = sub.add_parser(
        "predict",
        help="labels with probabilities for image files or folders",
        description="Labels with probabilities for image files or folders. Predictions go to stdout (JSON with "
        "--json, where an unreadable image is an entry with an 'error'); each image that could not be read is "
        "named on stderr, and the others are still predicted.",
        epilog="exit status: 0 every image predicted; 1 some images could not be read (the rest were predicted); "
        "2 none could be read, or a usage error (no run, a bad flag, an unusable run or model).",
    )
    p.add_argument("items", nargs="+", metavar="RUN IMAGE|DIR", help="a run folder or an exported .onnx, then images")
    p.add_argument("--base", help="no run: ImageNet classes from a pretrained base (efficientnet-lite0)")
    p.add_argument("--top-k", type=int_in(1, 100_000), help="how many classes per image (default 3; 5 with --base)")
    p.add_argument("--json", action="store_true")
    add_device_flag(p)
    p.set_defaults(run=lambda args: cmd_predict(args, console))

    p = sub.add_parser("data", help="get datasets")
    data_sub = p.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    g = data_sub.add_parser(
        "get",
        help="download fashion-mnist, mnist, cifar10 or cifar100 (checksums verified)",
        description="Download a dataset from its official archive, check its size and checksums, and unpack it. A "
        "broken-off download continues where it stopped when run again. CIFAR goes to the data home (without --to), "
        "where `convscope train --data cifar10` finds it.",
    )
    g.add_argument("name", choices=["fashion-mnist", "mnist", "cifar10", "cifar100"])
    g.add_argument(
        "--to",
        metavar="DIR",
        help="the folder to download into; cifar10 and cifar100 default to the one `train --data NAME` reads: "
        "$CONVSCOPE_DATA_HOME/NAME, else ~/.local/share/convscope/datasets/NAME",
    )
    g.add_argument("--mirror", metavar="URL", help="a folder URL serving the same files (checksums still verified)")
    g.set_defaults(run=lambda args: cmd_data_get(args, console))


def cmd_train(args: argparse.Namespace, console: Console) -> None:
    from convscope.config import TrainConfig
    from convscope.tasks.train import train

    given = config_settings(args)
    if args.resume:
        from convscope.run import load_run
        from convscope.tasks import task_of
        from convscope.training.checkpoints import finished_message, is_finished, resumed_config

        run = load_run(args.resume)
        # Checked before any work: settings a resume may not change are refused, a finished run is left as it is.
        config = resumed_config(run, given | ({"config": args.config} if args.config else {}))
        if config == run.config and is_finished(run):
            if _is_main():
                console.print(finished_message(run, task_of(run)))
            return
    else:
        config = TrainConfig.load(args.config, **given) if args.config else TrainConfig.from_dict(given, "flags")
        check_run_out(config.out)
    if args.nproc and not args.resume:
        from convscope.presets import resolve_spec

        resolve_spec(config.model)  # refused once, here, rather than by every process
    if launched(args, None if args.resume else config):
        return
    if args.resume:
        resume = args.resume
        show(console, lambda callbacks: train(resume=resume, callbacks=callbacks, stop=args.stop, **given), args.stop)
    else:
        show(console, lambda callbacks: train(config, callbacks=callbacks, stop=args.stop), args.stop)


def cmd_transfer(args: argparse.Namespace, console: Console) -> None:
    from convscope.config import TrainConfig
    from convscope.pretrained.finetune import transfer_spec
    from convscope.tasks.train import transfer

    given = config_settings(args)
    check_run_out(given.get("out"))
    if args.nproc:  # the run folder of the workers: named as transfer() names it
        model = transfer_spec(args.base, args.image_size, args.weights).name
        config = TrainConfig.from_dict({"model": model, **TRANSFER_DEFAULTS, **given}, "flags")
        if launched(args, config):
            return
    show(
        console,
        lambda callbacks: transfer(
            args.base, args.image_size, args.weights, callbacks=callbacks, stop=args.stop, **given
        ),
        args.stop,
    )


def check_run_out(out: str | None) -> None:
    """--out of a training, the run folder: refused in one line before any work when it is a file, a device, a pipe
    or a socket, lies under a file or inside another run, or cannot be made or written (out_paths.out_folder). A
    folder holding a user's files is refused later, by train (run.check_not_foreign)."""
    if out:
        from convscope.out_paths import out_folder

        out_folder(out)


def _is_main() -> bool:
    """Not one of torchrun's other ranks: the process that shows progress and results."""
    import os

    return os.environ.get("RANK", "0") == "0"


def launched(args: argparse.Namespace, config) -> bool:
    """--nproc N outside torchrun: the command again in N processes (training.launch); True once they have finished.
    `config`: a new run's settings (None: resuming). Under torchrun, --nproc must say its number of processes."""
    from convscope.training.distributed import Group
    from convscope.training.launch import launch

    group = Group.from_env()
    if group.launched:  # a worker: --nproc was for the command that started it
        if args.nproc and args.nproc != group.local_world_size:
            raise ConfigError(
                f"--nproc {args.nproc}: this process is one of the {group.local_world_size} that torchrun started on "
                "this machine; leave --nproc out under torchrun"
            )
        return False
    if not args.nproc:
        if args.max_restarts:
            raise ConfigError("--max-restarts restarts the processes that --nproc N starts; give --nproc N too")
        return False
    launch(args.argv, args.nproc, args.max_restarts, config)
    return True


def show(console: Console, work, stop: StopRequest | None = None) -> None:
    """`work(callbacks)` trains; rank 0 (or the only process) shows its progress bar and result line.

    When standard output closes (`convscope train | head`), `stop` asks the training to stop at the end of the batch
    and save, as SIGPIPE would, and the command ends with Interrupted (exit status 141, one line on stderr); a
    training that had already finished is saved as it is."""
    from convscope.progress import ProgressBar

    if not _is_main():
        work([])
        return
    bar = _Piped(ProgressBar(console), stop)
    try:
        run = work([bar])
    finally:
        bar.close()
    try:
        if not bar.closed:
            _print_result(run, console)
    except BrokenPipeError:
        bar.closed = True
    if bar.closed:
        raise Interrupted(
            f"standard output closed (broken pipe) after the training finished; it is saved in {run.path}",
            EXIT_SIGPIPE,
            path=run.path,
        )


class _Piped:
    """The progress bar, on a standard output that may close (`| head`): the first BrokenPipeError asks `stop` to
    end the training as SIGPIPE would (at the end of the batch, saved), is said in train.log, and nothing more is
    shown."""

    def __init__(self, bar, stop: StopRequest | None):
        self.bar, self.stop = bar, stop
        self.closed = False
        self.unsaid = False  # closed before train.log was open (on_start comes first): said at the next batch

    def _show(self, hook, *args) -> None:
        if self.closed:
            return
        try:
            hook(*args)
        except BrokenPipeError:
            self.closed = self.unsaid = True
            if self.stop is not None and self.stop.signal is None:
                self.stop.signal = signal.SIGPIPE  # the loop saves at the end of the batch and raises Interrupted

    def _say(self) -> None:  # from the hooks the epoch loop calls, while train.log is open
        if self.unsaid:
            self.unsaid = False
            log.info("standard output closed (broken pipe): the training stops at the end of this batch and saves")

    def on_data(self, done, total):
        self._show(self.bar.on_data, done, total)

    def on_start(self, run, epochs, batches, epoch):
        self._show(self.bar.on_start, run, epochs, batches, epoch)

    def on_note(self, line):
        self._show(self.bar.on_note, line)

    def on_batch(self, epoch, batch, loss, accuracy, images_per_s):
        self._show(self.bar.on_batch, epoch, batch, loss, accuracy, images_per_s)
        self._say()

    def on_epoch(self, row):
        self._show(self.bar.on_epoch, row)
        self._say()

    def on_end(self, run, results):
        self._show(self.bar.on_end, run, results)

    def close(self):
        with contextlib.suppress(BrokenPipeError):
            self.bar.close()


def _print_result(run, console: Console) -> None:
    from convscope.tasks import task_of

    results = run.results()
    score = task_of(run).headline(results)
    scored = "validation images (no test split)" if results.get("test_split") == "val" else "test images"
    console.print(
        f"{score} on {results['test_images']:,} {scored} after {results['epochs']} "
        f"epoch{'' if results['epochs'] == 1 else 's'} in "
        f"{results['train_seconds']:.0f} s; run: {run.path} (report: report.html)"
    )


def cmd_evaluate(args: argparse.Namespace, console: Console) -> None:
    """The evaluation training saved (evaluation.json), or, for other data or other weights, a new one; the picture of
    its confusion matrix: RUN/confusion.png for the run's own data, RUN/confusion-NAME.png for another dataset's."""
    from convscope.api.verbs import classifier_run, evaluate
    from convscope.classify.evaluate import confusion_path

    run = classifier_run(args.run_dir, "evaluate")
    result = evaluate(run, args.data, args.data_dir, device=args.device or "auto")
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
        return
    console.print(f"accuracy {result.accuracy:.2%}  loss {result.loss:.4f}  ({int(result.confusion.sum()):,} images)")
    table = Table("class")
    for header in ("precision", "recall", "F1", "images"):
        table.add_column(header, justify="right")
    for row in result.per_class():
        table.add_row(
            row["class"], f"{row['precision']:.3f}", f"{row['recall']:.3f}", f"{row['f1']:.3f}", str(row["support"])
        )
    console.print(table)
    confusion = Table("true \\ predicted", title="confusion matrix (rows: true class, columns: predicted)")
    for i in range(len(result.classes)):
        confusion.add_column(str(i), justify="right")
    for i, (name, counts) in enumerate(zip(result.classes, result.confusion, strict=True)):
        confusion.add_row(f"{i} {name}", *[str(n) for n in counts])
    console.print(confusion)
    console.print("most confused: " + "; ".join(f"{t} → {p} ({n})" for t, p, n in result.most_confused()))
    picture = confusion_path(run, args.data, args.data_dir)
    own = (
        ""
        if run.trained_on(args.data, args.data_dir)
        else f" (on {args.data or args.data_dir}; the run's own test results are kept)"
    )
    console.print(f"picture: {picture}{own}", markup=False, highlight=False)


def _classifier(path: str, command: str):
    """The run folder at `path`, which must hold a classifier (api.verbs.classifier_run)."""
    from convscope.api.verbs import classifier_run  # here: `convscope --help` starts without torch

    return classifier_run(path, command)


def cmd_predict(args: argparse.Namespace, console: Console) -> None:
    """Predictions on stdout; one line per unreadable image on stderr ("convscope: PATH: reason"), then exit status 1
    when some images failed (SomeImagesFailed) or 2 when all did (see the parser's epilog)."""
    from convscope.classify.predict import predict, predict_imagenet

    if args.base:
        results = predict_imagenet(args.base, args.items, args.top_k or 5)
    elif len(args.items) < 2:
        raise DataError("predict needs a run folder and at least one image (or --base NAME and images)")
    else:
        source = args.items[0]  # a run folder, which must be a classifier's, or an exported .onnx classifier
        source = source if Path(source).suffix.lower() == ".onnx" else _classifier(source, "predict")
        results = predict(source, args.items[1:], args.top_k or 3, device=args.device or "auto")
    if args.json:
        print(json.dumps([r.to_dict() for r in results], indent=2))
    else:
        for r in results:
            if not r.error:
                top = ", ".join(f"{c} {p:.1%}" for c, p in r.top)
                console.print(f"{r.path} ({r.conversion}): {top}", markup=False)  # a path may hold [brackets]
    failed = [r for r in results if r.error]
    for r in failed:
        print(f"convscope: {r.path}: {r.error}", file=sys.stderr)
    if failed and len(failed) == len(results):
        raise DataError(f"none of the {len(results)} images could be read")
    if failed:
        raise SomeImagesFailed(f"{len(failed)} of {len(results)} images could not be read; the rest were predicted")


def cmd_data_get(args: argparse.Namespace, console: Console) -> None:
    from rich.progress import DownloadColumn, Progress, TransferSpeedColumn

    from convscope.data.download import download_dataset

    with Progress(*Progress.get_default_columns(), DownloadColumn(), TransferSpeedColumn(), console=console) as bar:
        tasks: dict[str, int] = {}

        def show(filename: str, done: int, total: int) -> None:
            if filename not in tasks:
                tasks[filename] = bar.add_task(filename, total=total)
            bar.update(tasks[filename], completed=done)

        path = download_dataset(args.name, args.to, base_url=args.mirror, progress=show)
    data_dir = "" if args.to is None else f" --data-dir {path}"  # no --to: the default folder, where train looks
    console.print(
        f"{args.name} is in {path} (checksums verified); train on it with convscope train --data {args.name}{data_dir}"
    )
