"""The `convscope` command: parse, call the API, format. Errors become one line on stderr and exit status 2."""

from __future__ import annotations

import argparse
import contextlib
import errno
import io
import json
import logging
import os
import sys

from rich.console import Console

from convscope.errors import EXIT_SIGPIPE, ConvscopeError, PeerFailed, SpecError
from convscope.memory import available_memory, training_memory
from convscope.presets import get_preset, preset_names, resolve_spec
from convscope.shapes import infer
from convscope.signals import StopRequest
from convscope.spec import PADDING_WORDS, POOL_KINDS, parse_shape, shown
from convscope.summary import formula_lines, human_bytes, summary_table, totals_lines

EXIT_USAGE = 2


class _Console(Console):
    """rich's Console, except that a closed standard output (`convscope train | head`) raises BrokenPipeError, which
    the command can answer (training saves and stops), instead of rich's SystemExit(1), which skips every clean-up."""

    def on_broken_pipe(self) -> None:
        self.quiet = True  # nothing more is written
        _stdout_to_devnull()
        raise BrokenPipeError(errno.EPIPE, "standard output closed")


def _stdout_to_devnull(stream=None) -> None:
    """Point the file descriptor of `stream` (default standard output) at /dev/null, so the interpreter's final
    flush of what is left cannot fail again (it would turn the exit status into 120)."""
    with contextlib.suppress(OSError, ValueError, io.UnsupportedOperation, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, (stream or sys.stdout).fileno())
        os.close(devnull)


def _say(line: str) -> None:
    """One line on standard error; when it is closed too (`convscope train 2>&1 | head`), nothing can be said and
    the exit status speaks alone."""
    try:
        print(line, file=sys.stderr, flush=True)
    except (OSError, ValueError):
        _stdout_to_devnull(sys.stderr)


def _console() -> Console:
    # Not a terminal (a pipe, a file, CI): a fixed width so the tables never wrap differently between machines.
    return _Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 110)


def cmd_summary(args: argparse.Namespace) -> None:
    spec = resolve_spec(args.spec)
    if args.input:
        spec = spec.with_input(parse_shape(args.input, "--input"))
    try:
        report = infer(spec)
    except SpecError as err:
        if args.spec in preset_names() or args.input:  # a preset, or another input: no file to name
            raise
        raise SpecError(f"{args.spec}: {err}", layer=err.layer, detail=err.detail) from None
    memory, warning = _training_memory(report, spec.name)
    if args.json:
        print(json.dumps({"name": spec.name, **report.to_dict(), **memory}, indent=2, ensure_ascii=False))
        if warning:
            print(f"convscope: warning: {warning}", file=sys.stderr)
        return
    console = _console()
    title = f"{spec.name}" + (f" — {spec.description}" if spec.description else "")
    console.print(summary_table(report, title))
    for line in totals_lines(report):
        console.print(line)
    estimate = f"{human_bytes(memory['training_bytes'])} ({memory['training_bytes_text']})"
    console.print(f"Training memory at batch size {memory['training_batch_size']} (float32, at least): {estimate}")
    if warning:
        console.print(f"WARNING: {warning}", markup=False)
    console.print("How each spatial size came out (out = ⌊(in + padding − size)/stride⌋ + 1):")
    for line in formula_lines(report):
        console.print("  " + line)


def _training_memory(report, name: str) -> tuple[dict, str | None]:
    """The training estimate at TrainConfig's default batch size, and the warning when this machine cannot hold
    it (`train` would refuse it; the spec itself is sound, so `summary` still exits 0)."""
    from convscope.config import TrainConfig

    estimate = training_memory(report, TrainConfig.batch_size)
    available = available_memory()
    memory = {
        "training_batch_size": estimate.batch_size,
        "training_bytes": estimate.total,
        "training_bytes_text": estimate.text(),
        "available_bytes": available,
    }
    if available is None or estimate.total <= available:
        return memory, None
    top, fits = estimate.largest, estimate.largest_batch(available)
    return memory, (
        f"{name} needs {human_bytes(estimate.total)} to train at batch size {estimate.batch_size}, this machine has "
        f"{human_bytes(available)} available: `convscope train` would refuse it "
        + (f"(the largest batch size that fits is {fits:,}); " if fits else "(not even one image fits); ")
        + f"layer {top.index} ({top.name}: {top.label}) needs the most"
    )


def cmd_presets(args: argparse.Namespace) -> None:
    for name in preset_names():
        spec = get_preset(name)
        report = infer(spec)
        h, w, c = spec.input
        print(f"{name:<14} {h}×{w}×{c}  {report.params:>9,} params  {spec.description}")


EXPLAIN_MAX = 1024  # explain is read by people: no side, window, stride or padding beyond this (and no huge arrays)


def _hw_arg(text: str, smallest: int) -> tuple[int, int] | None:
    """'3' -> (3, 3); '3x5' or '3×5' -> (3, 5); None unless each is an integer in [smallest, EXPLAIN_MAX]."""
    parts = [p.strip() for p in text.lower().replace("×", "x").split("x")]
    if len(parts) not in (1, 2) or not all(_is_count(p) for p in parts):
        return None
    values = [int(p) for p in parts]
    return (values[0], values[-1]) if all(smallest <= v <= EXPLAIN_MAX for v in values) else None


def _is_count(text: str) -> bool:
    """Decimal digits int() reads ('²' is a digit it refuses), 18 at most: longer ones are outside any range here,
    and int() refuses more than 4,300."""
    return text.isdecimal() and len(text) <= 18


def _pair_arg(text: str, what: str) -> tuple[int, int]:
    """'3' -> (3, 3); '3x5' -> (3, 5); each in [1, EXPLAIN_MAX]."""
    if pair := _hw_arg(text, 1):
        return pair
    raise SpecError(f"{what} must be an integer in [1, {EXPLAIN_MAX}] or H×W like 3x5. Received: {shown(text, 40)}")


def _padding_arg(text: str) -> str | tuple[int, int]:
    if text in PADDING_WORDS:
        return text
    if pair := _hw_arg(text, 0):
        return pair
    raise SpecError(
        f"--padding must be valid, same, an integer in [0, {EXPLAIN_MAX}] or H×W like 1x2. Received: {shown(text, 40)}"
    )


def _position_arg(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    parts = text.replace(" ", "").split(",")
    if len(parts) == 2 and all(_is_count(p) for p in parts):
        return (int(parts[0]), int(parts[1]))
    raise SpecError(f"--at must be ROW,COLUMN of the output (counting from 0), e.g. 4,7. Received: {shown(text, 40)}")


def cmd_explain(args: argparse.Namespace) -> None:
    from convscope.explain import explain_conv, explain_pool, load_filter, load_input, walkthrough_text

    resize = None if args.resize == "none" else _pair_arg(args.resize, "--resize")
    x, source = load_input(args.image, args.array, resize)
    stride = None if args.stride is None else _pair_arg(args.stride, "--stride")
    padding, at = _padding_arg(args.padding), _position_arg(args.at)
    if args.op == "conv":
        kernel, name = load_filter(args.filter)
        walk = explain_conv(x, kernel, stride or 1, padding, at, source, name)
    else:
        walk = explain_pool(x, args.kind, _pair_arg(args.size, "--size"), stride, padding, at, source)
    print(walkthrough_text(walk))
    if args.png:
        from convscope.explain_plot import save_walkthrough_png

        print(f"picture: {save_walkthrough_png(walk, args.png)}")


def _add_explain(sub) -> None:
    p = sub.add_parser(
        "explain",
        help="one output value of a conv or pool, step by step, on a real photo or a small array",
        description="Follow one output value of a convolution or pooling layer: the window it reads, the filter, "
        "the products and their sum (or the max/min/mean), and the size of the whole output feature map.",
    )
    p.add_argument("op", choices=["conv", "pool"])
    src = p.add_mutually_exclusive_group()
    src.add_argument("--image", help="a photo file, or a sample: chelsea (default), coffee, astronaut, camera, rocket")
    src.add_argument("--array", metavar="ROWS", help="a small input like '1 2 3; 4 5 6; 7 8 9'")
    p.add_argument("--resize", default="32x32", metavar="H×W", help="resize a photo first (default 32x32; 'none')")
    p.add_argument(
        "--filter",
        default="edge-x",
        help="conv: edge-x, edge-y, blur, sharpen, outline, emboss, identity, or numbers '1 0 -1; 2 0 -2; 1 0 -1'",
    )
    p.add_argument("--kind", default="max", choices=POOL_KINDS, help="pool: the reduction (default max)")
    p.add_argument("--size", default="2", metavar="K", help="pool: window size, K or H×W (default 2)")
    p.add_argument(
        "--stride", metavar="S", help="step of the window, S or H×W (default: 1 for conv, the size for pool)"
    )
    p.add_argument("--padding", default="valid", help="valid (default), same, an integer, or H×W")
    p.add_argument("--at", metavar="ROW,COL", help="output position, counting from 0 (default: the centre)")
    p.add_argument("--png", metavar="FILE", help="also draw the walk-through as a picture")
    p.set_defaults(run=cmd_explain)


class _Parser(argparse.ArgumentParser):
    """Usage mistakes, like every other error, are one line and exit status 2 (argparse prints the whole usage)."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"convscope: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="convscope", description="Build convnets from their building blocks and see what they compute."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log what the library does")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("summary", help="layer-by-layer output shapes, params, MACs and receptive fields")
    p.add_argument("spec", metavar="SPEC_FILE|PRESET")
    p.add_argument("--input", metavar="H×W×C", help="input shape, e.g. 28x28x1 (default: the spec's own)")
    p.add_argument("--json", action="store_true", help="print the same data as JSON")
    p.set_defaults(run=cmd_summary)

    p = sub.add_parser("presets", help="list the built-in networks")
    p.set_defaults(run=cmd_presets)

    _add_explain(sub)
    from convscope import cli_detect, cli_doctor, cli_export, cli_inspect, cli_serve, cli_train

    console = _console()
    cli_train.add_parsers(sub, console)
    cli_inspect.add_parsers(sub, console)
    cli_detect.add_parsers(sub, console)
    cli_doctor.add_parsers(sub, console)
    cli_export.add_parsers(sub, console)
    cli_serve.add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    # One Ctrl-C stops any command cleanly (training saves first); more presses cannot break the stop or its message.
    # Installed first, around the whole command: the parser is built without torch (tests/test_startup.py), so
    # `summary` or `--help` start in a fraction of a second; a command's handler imports torch when it needs it.
    stop = StopRequest()
    with stop.installed(exiting=argv is None):  # argv None: this is the program itself, which ends after main
        # Recorded, not raised, while the parser is built: an interrupt raised inside an import (rich, yaml) can
        # leave that module half made, and the command then fails later with a confusing error.
        stop.armed = True
        args = build_parser().parse_args(argv)
        stop.armed = False
        if stop.signal is not None:
            print("convscope: interrupted", file=sys.stderr)
            return stop.exit_code
        args.stop, args.argv = stop, list(sys.argv[1:] if argv is None else argv)  # argv: for --nproc's workers
        # Only what the library logs at this level reaches the terminal; train.log gets everything from training.
        # torchrun's other ranks say only their errors: rank 0 speaks for the training.
        handler = logging.StreamHandler()
        handler.setLevel(logging.INFO if args.verbose else logging.WARNING)
        if os.environ.get("RANK", "0") != "0":
            handler.setLevel(logging.ERROR)
        handler.setFormatter(logging.Formatter("%(message)s"))
        # A record logged with extra={"noted": True} is a line the progress bar shows too (its on_note): said once.
        handler.addFilter(lambda record: not getattr(record, "noted", False))
        logging.getLogger().addHandler(handler)
        # -v: convscope's INFO lines reach the handler (the root logger's default level, WARNING, would stop them)
        library, level = logging.getLogger("convscope"), logging.getLogger("convscope").level
        if args.verbose:
            library.setLevel(logging.INFO)
        try:
            return _flushed(_run(args))
        finally:
            stop.done = True  # from here on, a late Ctrl-C could only break the exit
            logging.getLogger().removeHandler(handler)
            library.setLevel(level)


def _run(args: argparse.Namespace) -> int:
    """The command, with every error as one line on stderr: its exit status (2 for errors, 130/143 for signals, 141
    when standard output closed before the command was done, as a shell reports a command that SIGPIPE ended: a
    reader that stopped early never turns a failure into success)."""
    if getattr(args, "out", None) == "":  # '' is not "the default place": said before any work
        _say("convscope: error: --out: expected a file or folder path, received an empty one")
        return EXIT_USAGE
    try:
        args.run(args)
    except PeerFailed:  # torchrun's other ranks: rank 0 has said why
        return EXIT_USAGE
    except ConvscopeError as err:
        rank = os.environ.get("RANK", "0")
        if rank != "0" and err.outcome:  # e.g. stopped by a signal: rank 0 says where the run was saved
            return err.exit_code
        where = f"rank {rank}: " if rank != "0" else ""
        _say(f"convscope: {where}{'' if err.outcome else 'error: '}{err}")
        return err.exit_code
    except BrokenPipeError:  # output piped into `head` and the like: stop quietly, with SIGPIPE's status
        _stdout_to_devnull()
        return EXIT_SIGPIPE
    except OSError as err:  # a file system error convscope did not foresee: still one line naming the path
        where = f"{err.filename}: " if err.filename else ""
        _say(f"convscope: error: {where}{err.strerror or err}")
        return EXIT_USAGE
    except KeyboardInterrupt:
        _say("convscope: interrupted")
        return args.stop.exit_code
    return 0


def _flushed(code: int) -> int:
    """`code`, once what is left of standard output is written: a reader gone by then turns a success into 141 (the
    interpreter's own final flush would fail with 120 and a traceback-like line)."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _stdout_to_devnull()
        return code or EXIT_SIGPIPE
    except (OSError, ValueError):
        pass
    return code


if __name__ == "__main__":
    sys.exit(main())
