"""argparse helpers: the flags of TrainConfig's settings, and types for numeric flags with a range.

add_config_flags builds a command's training flags from TrainConfig's field metadata (its help, choices, metavar),
so each setting is described once; config_settings collects the ones given. Their values are checked by TrainConfig
(one place for their ranges). int_in and float_in are for the flags that go straight to a library function: a value
outside the range is a one-line usage error (exit 2), e.g. `type=int_in(1, 100_000)` rather than `type=int`.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import typing
from collections.abc import Callable, Iterable
from typing import Any

_GIVEN = "config_flags"  # the namespace attribute holding {setting: dest} of the flags add_config_flags added


def add_process_flags(parser: argparse.ArgumentParser) -> None:
    """--nproc and --max-restarts: the command in N processes on this machine (convscope.training.launch)."""
    parser.add_argument(
        "--nproc",
        type=int_in(1, 1024),
        metavar="N",
        help="train in N processes on this machine, started by torchrun (DistributedDataParallel); each trains "
        "--batch-size images of every step",
    )
    parser.add_argument(
        "--max-restarts",
        type=int_in(0, 1000),
        default=0,
        metavar="K",
        help="with --nproc: when a process dies, start them all again, up to K times; they resume the run from its "
        "last checkpoint (default 0)",
    )


def int_in(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: a whole number in [low, high]; '1e3', '-', 23 digits past `high` are refused."""

    def parse(text: str) -> int:
        value = _number(text, int)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"expected an integer in [{low:,}, {high:,}]. Received: {_cut(text)}")
        return value

    parse.__name__ = "integer"  # argparse names the type in its own messages
    return parse


def float_in(low: float, high: float) -> Callable[[str], float]:
    """An argparse type: a finite number in [low, high] ('nan' and 'inf' are refused)."""

    def parse(text: str) -> float:
        value = _number(text, float)
        if not (math.isfinite(value) and low <= value <= high):
            raise argparse.ArgumentTypeError(f"expected a number in [{low:g}, {high:g}]. Received: {_cut(text)}")
        return value

    parse.__name__ = "number"
    return parse


def _number(text: str, kind: type):
    try:
        return kind(text)
    except (ValueError, OverflowError):
        what = "an integer" if kind is int else "a number"
        raise argparse.ArgumentTypeError(f"expected {what}. Received: {_cut(text)}") from None


def _cut(text: str, limit: int = 40) -> str:
    return repr(text) if len(text) <= limit else repr(text[: limit - 1] + "…")


def add_config_flags(
    parser: argparse.ArgumentParser, names: Iterable[str] | None = None, **overrides: dict[str, Any]
) -> None:
    """Add a flag for each TrainConfig field in `names` (default: every field), as its metadata describes it.

    The flag is `--field-name`; its kind follows the field's annotation: int and float values are converted (their
    ranges are checked by TrainConfig, in one place), `bool` is a switch (`--cache-features`) and `bool | None` a
    switch with a `--no-` form whose absence leaves the choice to the run (`--tta-flip`, `--no-tta-flip`).
    `overrides[name]` replaces argparse keywords for this command, e.g. `epochs={"flag": "--head-epochs"}` or
    `data={"required": True, "help": ...}`. Every flag's default is None, so that config_settings sees which were given.
    """
    from convscope.config import TrainConfig  # not at the top: most commands never need it

    described = {f.name: f for f in dataclasses.fields(TrainConfig)}
    names = list(described if names is None else names)
    if unknown := set(overrides) - set(names):
        raise ValueError(f"overrides for settings that get no flag: {', '.join(sorted(unknown))}")
    hints = typing.get_type_hints(TrainConfig)
    added = dict(parser.get_default(_GIVEN) or {})
    for name in names:
        if name not in described:
            raise ValueError(f"{name!r} is not a TrainConfig setting")
        options = {**_flag_kind(name, hints[name]), **described[name].metadata, **overrides.get(name, {})}
        flag = options.pop("flag", "--" + name.replace("_", "-"))
        options.setdefault("dest", name)
        parser.add_argument(flag, default=None, **options)
        added[name] = options["dest"]
    parser.set_defaults(**{_GIVEN: added})


def add_device_flag(parser: argparse.ArgumentParser) -> None:
    """`--device` for a command that runs a trained network (evaluate, predict, inspection, export): training's flag,
    described by TrainConfig's metadata; `args.device` is None when not given (auto)."""
    from convscope.config import TrainConfig

    described = next(f for f in dataclasses.fields(TrainConfig) if f.name == "device")
    add_config_flags(parser, ["device"], device={"help": "where the network runs: " + described.metadata["help"]})


def config_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The TrainConfig settings given on the command line: {setting: value} for each flag of add_config_flags that was
    given (flags not given are None and left out, so a settings file or the model's recipe fills them)."""
    added = getattr(args, _GIVEN, {})
    return {name: getattr(args, dest) for name, dest in added.items() if getattr(args, dest) is not None}


def _flag_kind(name: str, annotation: Any) -> dict[str, Any]:
    """The argparse keywords that the field's annotation implies: a type to convert to, or a switch's action."""
    kinds = set(typing.get_args(annotation) or (annotation,)) - {type(None)}
    optional = type(None) in typing.get_args(annotation)
    if kinds == {bool}:
        return {"action": argparse.BooleanOptionalAction if optional else "store_true"}
    if len(kinds) == 1 and (kind := kinds.pop()) in (int, float, str):
        return {"type": kind}
    raise TypeError(f"TrainConfig.{name}: no command-line flag for values of type {annotation}")
