"""Huge integers in a spec (a layer's setting, the input shape), at each bound and just past it: one line naming the
file and the field (exit 2 from the CLI), never an OverflowError or Python's 4,300-digit ValueError."""

from __future__ import annotations

import pytest

from convscope.cli import main
from convscope.errors import SpecError
from convscope.shapes import MAX_JUMP, infer
from convscope.spec import (
    MAX_COUNT,
    MAX_INPUT_VALUES,
    MAX_SIDE,
    Conv,
    Dense,
    Detect,
    Dropout,
    Flatten,
    NetSpec,
    parse_shape,
)

NINES = "9" * 400


def refused(capsys, *argv) -> str:
    """The one line `convscope ARGV` prints on stderr, checked: exit 2, nothing on stdout, no traceback."""
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert (status, out) == (2, "")
    assert err.count("\n") == 1 and "Traceback" not in err and len(err) < 300
    return err


def spec_file(tmp_path, input: str = "28x28x1", layer: str = "conv: {filters: 8, size: 3}"):
    path = tmp_path / "net.yaml"
    path.write_text(f"input: {input}\nlayers:\n  - flatten\n  - {layer}\n")
    return path


@pytest.mark.parametrize(
    ("layer", "message"),
    [
        (f"dense: {{units: {NINES}}}", "layer 2 (dense): units must be at most 2,147,483,648. Received: a number of"),
        (f"conv: {{filters: {NINES}}}", "filters must be at most 2,147,483,648. Received: a number of 400 digits"),
        (f"conv: {{filters: 8, size: [3, {NINES}]}}", "size must be at most 1,000,000,000,000,000,000,000,000."),
        (f"pool: {{stride: {NINES}}}", "stride must be at most"),
        (f"detect: {{classes: 2, channels: {NINES}}}", "channels must be at most 2,147,483,648"),
    ],
)
def test_a_400_digit_setting_is_one_line_naming_the_file_line_and_key(capsys, tmp_path, layer, message):
    path = spec_file(tmp_path, layer=layer)
    err = refused(capsys, "summary", path)
    assert err.startswith(f"convscope: error: {path}, line 4: layer 2 (")
    assert message in err


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (f"{'9' * 5000}x28x1", "input: a side of 5,000 digits is more than the 268,435,456 values an input may have"),
        (f"[{NINES}, 28, 1]", "input: a side of 400 digits is more than the 268,435,456 values"),
        ("268435457x1x1", "input: a side of 268,435,457 is more than the 268,435,456 values"),
        ("²x2x1", "input must be H×W×C with positive integers, e.g. 32x32x3. Received: '²x2x1'"),
    ],
)
def test_a_huge_input_side_is_one_line(capsys, tmp_path, text, message):
    path = spec_file(tmp_path, input=text, layer="dense: {units: 2}")
    assert message in refused(capsys, "summary", path)


def test_input_sides_at_the_bound_are_read():
    assert parse_shape(f"{MAX_INPUT_VALUES}x1x1") == (MAX_INPUT_VALUES, 1, 1)
    assert parse_shape(f"0000000000000000{MAX_INPUT_VALUES}x1x1") == (MAX_INPUT_VALUES, 1, 1)  # leading zeros
    with pytest.raises(SpecError, match="a side of 13 digits"):
        parse_shape("1000000000000x1x1")


def test_each_bound_is_allowed_and_one_past_it_refused():
    NetSpec((1, 1, 1), [Flatten(), Dense(MAX_COUNT, bias=False)])  # exactly MAX_COUNT parameters: infer allows it
    NetSpec((8, 8, 1), [Conv(MAX_COUNT, size=(1, MAX_SIDE), padding="same")])  # infer judges the window
    NetSpec((8, 8, 1), [Conv(1, 1, stride=MAX_SIDE), Detect(MAX_COUNT, channels=MAX_COUNT)])
    for layer, key in [
        (Dense(MAX_COUNT + 1), "units"),
        (Conv(MAX_COUNT + 1), "filters"),
        (Conv(1, size=(1, MAX_SIDE + 1)), "size"),
        (Conv(1, padding=MAX_SIDE + 1), "padding"),
        (Detect(MAX_COUNT + 1), "classes"),
    ]:
        with pytest.raises(SpecError, match=f"^layer 2 \\({layer.layer_type}\\): {key} must be at most") as err:
            NetSpec((8, 8, 1), [Flatten(), layer])
        assert err.value.layer == 2 and "Received" in str(err.value)


def test_an_int_past_the_str_limit_from_python_is_one_line():
    with pytest.raises(SpecError, match=r"filters must be at most 2,147,483,648. Received: a number of over 4,300"):
        NetSpec((8, 8, 1), [Conv(10**5000)])
    with pytest.raises(SpecError, match=r"input: a side of over 4,300 digits .* Received: a tuple holding a number"):
        parse_shape((10**5000, 1, 1))


def test_strides_that_multiply_past_the_bound_are_a_spec_error_not_a_huge_number():
    stride = 2**32
    report = infer(NetSpec((1, 1, 1), [Conv(1, 1, stride=stride), Conv(1, 1, stride=stride)]))
    assert report.layers[-1].jump == (MAX_JUMP, MAX_JUMP)
    with pytest.raises(SpecError, match=r"^layer 3 \(.*\): the strides up to conv3 multiply to a number of 29 digits"):
        infer(NetSpec((1, 1, 1), [Conv(1, 1, stride=stride)] * 3))


def test_a_value_past_pythons_str_limit_is_shown_by_its_kind_not_a_traceback():
    with pytest.raises(SpecError) as err:
        Dropout(rate=10**5000)
    assert str(err.value) == (
        "dropout: rate must be a number in [0, 1). Received: an int holding a number of over 4,300 digits"
    )
