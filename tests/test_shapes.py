import pytest

from convscope import Conv, Dense, Flatten, GlobalPool, NetSpec, Pool, SpecError, infer
from convscope.presets import get_preset
from convscope.shapes import formula, out_size, pad_amounts


def test_cifar_3conv_matches_the_keras_summary():
    report = infer(get_preset("cifar-3conv"))
    shapes = [info.output_shape for info in report.layers]
    assert shapes == [(30, 30, 32), (15, 15, 32), (13, 13, 64), (6, 6, 64), (4, 4, 64), (1024,), (64,), (10,)]
    assert [info.params for info in report.layers] == [896, 0, 18496, 0, 36928, 0, 65600, 650]
    assert report.params == 122_570
    # multiply-adds: out_h·out_w·filters·k·k·in_channels for convs, in·out for dense layers
    assert report.layers[0].macs == 30 * 30 * 32 * 3 * 3 * 3
    assert report.macs == 777_600 + 3_115_008 + 589_824 + 65_536 + 640
    # receptive field r += (k − 1)·jump, jump *= stride
    assert [info.receptive_field for info in report.layers[:5]] == [(3, 3), (4, 4), (8, 8), (10, 10), (18, 18)]
    assert report.layers[4].jump == (4, 4)
    assert report.layers[5].receptive_field is None
    assert report.activation_bytes == 4 * (3072 + 28800 + 7200 + 10816 + 2304 + 1024 + 1024 + 64 + 10)


def test_lenet5_has_its_published_parameter_count():
    assert infer(get_preset("lenet5")).params == 61_706


@pytest.mark.parametrize(
    ("size", "k", "s", "padding", "expected_pads", "expected_out"),
    [
        (32, 3, 1, "valid", (0, 0), 30),
        (32, 3, 1, "same", (1, 1), 32),
        (32, 3, 2, "same", (0, 1), 16),  # total 1: the extra one goes after (bottom/right), as in TensorFlow
        (7, 3, 2, "same", (1, 1), 4),
        (6, 1, 4, "same", (0, 0), 2),  # window smaller than the stride: no padding needed
        (28, 5, 1, 2, (2, 2), 28),
        (5, 2, 2, "valid", (0, 0), 2),  # floor: the last row is dropped
    ],
)
def test_padding_arithmetic(size, k, s, padding, expected_pads, expected_out):
    assert pad_amounts(size, k, s, padding) == expected_pads
    assert out_size(size, k, s, padding) == expected_out
    if padding == "same":
        assert expected_out == -(-size // s)  # same: ⌈in / s⌉ for any stride


def test_formula_text_shows_the_numbers():
    assert formula(32, 3, 1, "valid") == "⌊(32 − 3)/1⌋ + 1 = 30"
    assert formula(32, 3, 2, "same") == "⌈32/2⌉ = 16"
    assert formula(28, 5, 1, 2) == "⌊(28 + 2·2 − 5)/1⌋ + 1 = 28"
    report = infer(NetSpec(input="10x6x1", layers=[Conv(2, (3, 1))]))
    assert report.layers[0].formula == "H: ⌊(10 − 3)/1⌋ + 1 = 8; W: ⌊(6 − 1)/1⌋ + 1 = 6"


def test_window_larger_than_its_input_names_layer_and_source():
    spec = get_preset("cifar-3conv").with_input("20x20x3")  # 18, 9, 7, 3, then conv3 fits; 16x16 does not
    infer(spec)
    with pytest.raises(SpecError) as err:
        infer(get_preset("cifar-3conv").with_input("12x12x3"))
    assert str(err.value) == (
        "layer 5 (conv 3×3, stride 1, valid): input is 1×1×64, the window needs at least 3×3. "
        "Received input 1×1 after layer 4 (pool max 2×2)."
    )
    assert err.value.layer == 5


def test_first_layer_errors_talk_about_the_network_input():
    with pytest.raises(SpecError, match=r"^layer 1 \(conv 5×5, stride 1, valid\): input is 3×3×1, .*the network input"):
        infer(NetSpec(input="3x3x1", layers=[Conv(2, 5)]))


def test_padding_counts_towards_the_window():
    infer(NetSpec(input="3x3x1", layers=[Conv(2, 5, padding=1)]))  # 5×5 padded input: fits exactly
    with pytest.raises(SpecError, match=r"input is 2×2×1 \(4×4 with padding\), the window needs at least 5×5"):
        infer(NetSpec(input="2x2x1", layers=[Conv(2, 5, padding=1)]))


@pytest.mark.parametrize(
    ("layers", "message"),
    [
        ([Conv(4, 3), Dense(10)], "layer 2 (dense 10): dense needs a flat vector; put a flatten or global_pool"),
        ([Flatten(), Conv(4, 3)], "layer 2 (conv 3×3, stride 1, valid): conv needs an H×W×C feature map"),
        ([GlobalPool(), Pool()], "layer 2 (pool max 2×2): pool needs an H×W×C feature map"),
        ([Pool("max", 2, padding=2)], "whole 2-wide windows in the padding"),
        ([Pool("max", size=(3, 1), stride=1, padding=(1, 1))], "whole 1-wide windows in the padding"),
    ],
)
def test_linter_rejects_specs_that_cannot_run(layers, message):
    with pytest.raises(SpecError) as err:
        infer(NetSpec(input="8x8x3", layers=layers))
    assert message in str(err.value)


def test_global_pool_and_batchnorm_counts():
    from convscope import BatchNorm

    report = infer(NetSpec(input="8x8x3", layers=[Conv(16, 3, padding="same"), BatchNorm(), GlobalPool(), Dense(4)]))
    assert [info.output_shape for info in report.layers] == [(8, 8, 16), (8, 8, 16), (16,), (4,)]
    assert report.layers[1].params == 32  # a scale and a shift per channel
    assert report.params == (3 * 3 * 3 * 16 + 16) + 32 + (16 * 4 + 4)
