"""argparse types for numeric flags with a range: a value outside it is a one-line usage error (exit 2).

Flags that feed TrainConfig are checked there instead (one place for their ranges); these are for the flags that go
straight to a library function: `type=int_in(1, 100_000)` rather than `type=int`.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


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
