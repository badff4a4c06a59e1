"""Sequential and NetSpec.add: a spec built layer by layer, Keras' way, is the same NetSpec as a spec file's; and how a
spec shows itself (one line, the summary table, a notebook's HTML)."""

import io
import re

import pytest
from rich.console import Console

from convscope import (
    Conv,
    Dense,
    Flatten,
    Input,
    NetSpec,
    Pool,
    Sequential,
    SpecError,
    build,
    infer,
)
from convscope.presets import get_preset
from convscope.spec import parse_input

TUTORIAL = [Conv(32, 3), Pool("max"), Conv(64, 3), Pool("max"), Conv(64, 3), Flatten(), Dense(64, "relu"), Dense(10)]


def test_sequential_with_layers_is_the_preset():
    spec = Sequential(TUTORIAL, input_shape=(32, 32, 3), name="cifar-3conv")
    preset = get_preset("cifar-3conv")
    assert spec.layers == preset.layers and spec.input == preset.input
    assert infer(spec).params == 122_570


@pytest.mark.parametrize(
    "make",
    [
        lambda: Sequential(TUTORIAL, input_shape=(32, 32, 3)),
        lambda: Sequential(TUTORIAL, input_shape="32x32x3"),
        lambda: Sequential([Input((32, 32, 3)), *TUTORIAL]),
        lambda: Sequential().add(Input((32, 32, 3))).add(*TUTORIAL),
        lambda: Sequential(input_shape=(32, 32, 3)).add(TUTORIAL),  # a list counts as its items
        lambda: Sequential([(Input((32, 32, 3)), TUTORIAL[0]), *TUTORIAL[1:]]),  # what Conv2D(input_shape=) makes
        lambda: NetSpec("32x32x3", TUTORIAL),
    ],
)
def test_every_route_to_the_input_gives_the_same_spec(make):
    assert make() == NetSpec("32x32x3", TUTORIAL)


def test_add_returns_a_new_spec_and_leaves_the_old_one_unchanged():
    empty = Sequential(input_shape=(28, 28, 1))
    one = empty.add(Conv(8, 3))
    two = one.add(Flatten(), Dense(10))  # several at once
    assert empty.layers == () and one.layers == (Conv(8, 3),)
    assert two.layers == (Conv(8, 3), Flatten(), Dense(10)) and two.input == (28, 28, 1)
    one.add(Dense(3))  # the Keras habit, without `one = ...`: changes nothing
    assert one.layers == (Conv(8, 3),)
    with pytest.raises(AttributeError):
        one.layers = ()  # frozen


def test_an_input_pair_is_a_gray_image():
    assert parse_input((28, 28)) == (28, 28, 1)
    assert Input([28, 28]).shape == (28, 28, 1)
    assert Sequential([Flatten(), Dense(10)], input_shape=(28, 28)).input == (28, 28, 1)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Sequential([Conv(8, 3)]), "the network's input shape (H×W×C) is missing: start the layers with"),
        (lambda: Sequential([Conv(8, 3), Input((8, 8, 1))]), "Input(8×8×1) after layer 1: the input shape goes"),
        (lambda: Sequential([Input((8, 8, 1))], input_shape=(9, 9, 1)), "the network's input is already 9×9×1"),
        (lambda: Sequential(input_shape=(8, 8)).add(Input((9, 9, 1))), "Input(9×9×1): the network's input is already"),
        (lambda: Sequential(input_shape=(8, 8, 0)), "Sequential: input_shape must be H×W×C with positive integers"),
        (lambda: Sequential(Conv(8, 3)), "Sequential: layers must be a list of layers"),
        (lambda: Sequential(name=3), "Sequential: name must be text. Received: 3"),
        (lambda: Input((8, -8, 1)), "Input must be H×W×C with positive integers"),
        (lambda: Sequential(input_shape=(8, 8, 1)).add(), "add needs at least one layer"),
        (lambda: Sequential(input_shape=(8, 8, 1)).add(Conv(2, 3), "dense"), "layer 2: expected a layer"),
        (lambda: Sequential(input_shape=(8, 8, 1)).add(Flatten), "Received: <class 'convscope.spec_layers.Flatten'>"),
        (lambda: Sequential([Conv(2, 3, name="a"), Conv(2, 3, name="a")], input_shape=(8, 8, 1)), "'a' is already"),
    ],
)
def test_mistakes_are_one_line_spec_errors(make, message):
    with pytest.raises(SpecError) as err:
        make()
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_class_instead_of_a_layer_says_call_it():
    with pytest.raises(SpecError, match=r"call it: Flatten\(\)"):
        Sequential(input_shape=(8, 8, 1)).add(Flatten)


def test_only_sequential_makes_a_spec_without_layers():
    with pytest.raises(SpecError, match="a network needs at least one layer"):
        NetSpec("8x8x1", [])
    with pytest.raises(SpecError, match="a network needs at least one layer"):
        NetSpec.from_dict({"input": "8x8x1", "layers": []})
    assert Sequential().layers == () and Sequential().input is None


@pytest.mark.parametrize("use", [infer, build, lambda s: s.is_detector, lambda s: s.to_dict(), lambda s: s.summary()])
def test_an_empty_spec_is_refused_where_it_would_be_used(use):
    """infer (and so summary, build, train's fit), the task question train asks first, writing a spec file."""
    for empty in (Sequential(), Sequential(input_shape=(8, 8, 1), name="mine")):
        with pytest.raises(SpecError) as err:
            use(empty)
        text = str(err.value)
        assert text.startswith(f"network {empty.name!r} has no layers yet") and "spec = spec.add(layer)" in text
        assert "\n" not in text


def test_the_train_route_asks_the_task_first_and_is_refused():
    from convscope.tasks import task_for

    with pytest.raises(SpecError, match="has no layers yet"):
        task_for(Sequential(input_shape=(8, 8, 1)))


def test_repr_is_one_short_line():
    preset = get_preset("cifar-3conv")
    assert repr(preset) == (
        "NetSpec('cifar-3conv', input 32×32×3, 8 layers: conv 3×3 ×32 relu → pool max 2×2 → conv 3×3 ×64 relu → "
        "pool max 2×2 → conv 3×3 ×64 relu → flatten → dense 64 relu → dense 10)"
    )
    assert repr(Sequential()) == (
        "NetSpec('net', no input shape yet, no layers yet — add() returns a new spec: spec = spec.add(layer))"
    )
    one = Sequential([Conv(4, (3, 5), stride=2, padding="same", activation="none")], input_shape=(9, 9, 1))
    assert repr(one) == "NetSpec('net', input 9×9×1, 1 layer: conv 3×5 ×4 stride 2 same)"
    long = get_preset("cifar-fast")
    text = repr(long)
    assert "\n" not in text and len(text) < 300 and text.endswith(f"… {len(long.layers) - 9} more → dense 10)")
    assert preset == get_preset("cifar-3conv")  # eq is the dataclass's, fields by fields


def test_summary_prints_the_table_and_totals():
    out = io.StringIO()
    get_preset("cifar-3conv").summary(Console(file=out, width=110, highlight=False))
    text = out.getvalue()
    assert text.startswith("cifar-3conv — The TensorFlow CNN tutorial net")
    row = next(line for line in text.splitlines() if " conv2 " in line).split()
    assert row[:2] == ["3", "conv2"] and "13×13×64" in row and "18,496" in row and "3,115,008" in row
    assert "Total params: 122,570" in text and "Multiply-adds per image: 4,548,608 (4.55 M)" in text


def test_summary_without_a_console_prints_on_stdout(capsys):
    Sequential([Flatten(), Dense(10)], input_shape=(28, 28), name="mlp").summary()
    out = capsys.readouterr().out
    assert "dense1" in out and "Total params: 7,850" in out


def test_a_notebook_shows_a_spec_as_its_table():
    page = get_preset("cifar-3conv")._repr_html_()
    cells = [re.findall(r"<td[^>]*>(.*?)</td>", row) for row in re.findall(r"<tr>(.*?)</tr>", page)]
    assert cells[0] == []  # the header row: <th> cells
    assert cells[1] == ["", "input", "", "32×32×3", "", "", ""]
    assert cells[3] == ["2", "pool1", "pool max 2×2", "15×15×32", "0", "0", "4×4"]
    assert cells[-1] == ["8", "dense2", "dense 10", "10", "650", "640", "whole image"]
    assert "Total params: 122,570" in page and "<b>cifar-3conv — The TensorFlow CNN tutorial net" in page


def test_a_notebook_shows_why_a_spec_cannot_run():
    page = NetSpec("4x4x1", [Conv(2, 5)], name="tiny")._repr_html_()
    assert "layer 1 (conv 5×5, stride 1, valid): input is 4×4×1, the window needs at least 5×5" in page
    assert "NetSpec(&#x27;tiny&#x27;" in page or "NetSpec('tiny'" in page
    assert "has no layers yet" in Sequential()._repr_html_()


def test_a_shape_report_shows_itself_too():
    report = infer(get_preset("cifar-3conv"))
    assert repr(report) == "ShapeReport(32×32×3 → 10, 8 layers, 122,570 params, 4,548,608 MACs)"
    assert "<td>36,928</td>" in report._repr_html_()
