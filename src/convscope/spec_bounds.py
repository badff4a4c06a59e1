"""Upper bounds of a spec's numbers, checked when a NetSpec is made (spec.py), so that no number reaches
shapes.infer's arithmetic with hundreds of digits; and how a message shows a number too long to read.

A count past MAX_COUNT gives a layer more than shapes.MAX_LAYER_PARAMS parameters, refused there anyway; sizes,
strides and padding below MAX_SIDE are judged there too (with the layer's shapes: a window far larger than its input,
a padded map of too many values).
"""

from __future__ import annotations

from dataclasses import fields

from convscope.errors import SpecError
from convscope.spec_layers import Layer, is_int, shown

MAX_COUNT = 2**31  # filters, units, classes, channels, a base's params
MAX_SIDE = 10**24  # a window's size, a stride, padding
_LIMITS = {key: MAX_COUNT for key in ("filters", "units", "classes", "channels", "params")}
_LIMITS |= {key: MAX_SIDE for key in ("size", "stride", "padding")}


def number_text(value: int) -> str:
    """An int as messages show it: 1,048,576, or 'a number of 400 digits' (never an unreadable line, nor Python's
    ValueError for ints past 4,300 digits)."""
    if abs(value) < 10**15:
        return f"{value:,}"
    try:
        return f"a number of {len(str(abs(value))):,} digits"
    except ValueError:  # past Python's int-to-str limit
        return "a number of over 4,300 digits"


def check_limits(layer: Layer, index: int) -> None:
    """A SpecError naming the layer (its index in the network) and the key when one of its numbers is past its
    bound (MAX_COUNT for counts, MAX_SIDE for sizes, strides and padding)."""
    for f in fields(layer):
        limit, value = _LIMITS.get(f.name), getattr(layer, f.name)
        values = value if isinstance(value, tuple) else (value,)
        if limit is None or not any(is_int(v) and v > limit for v in values):
            continue
        big = max(v for v in values if is_int(v))
        detail = f"{f.name} must be at most {limit:,}. Received: {shown(value) if big < 10**15 else number_text(big)}"
        raise SpecError(f"layer {index} ({layer.layer_type}): {detail}", layer=index, detail=detail)
