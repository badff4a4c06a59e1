"""Filters: a conv layer's weights as numbers, and the sheet that draws them (colour, diverging, mosaic)."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from convscope.builder import build
from convscope.errors import ConvscopeError
from convscope.inspect.filters import _mosaic, filter_weights, save_filter_sheet
from convscope.presets import get_preset
from convscope.spec import Conv, Flatten, NetSpec, Pool
from convscope.weights import save_weights


@pytest.fixture(scope="module")
def gray_model():
    torch.manual_seed(0)
    return build(get_preset("lenet5")).eval()  # conv1 6 filters 5×5×1, conv2 16 filters 5×5×6


@pytest.fixture(scope="module")
def rgb_model():
    spec = NetSpec(
        input=(16, 16, 3),
        layers=(Conv(8, 3), Pool(), Conv(5, 3, padding="same"), Conv(4, 1), Flatten()),
        name="tiny-rgb",
    )
    torch.manual_seed(0)
    return build(spec).eval()


def pixels(path: Path) -> np.ndarray:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)


def test_weights_are_the_layers_own(gray_model):
    w = filter_weights(gray_model)  # default: the first conv layer
    assert (w.name, w.index, w.first) == ("conv1", 1, True)
    assert w.weights.dtype == np.float32 and w.weights.shape == (6, 1, 5, 5)
    assert np.array_equal(w.weights, gray_model.conv1.weight.detach().numpy())
    assert np.array_equal(w.bias, gray_model.conv1.bias.detach().numpy())
    assert w.shape_text == "6 filters 5×5×1" and w.label == "conv 5×5, stride 1, pad 2, tanh"
    w2 = filter_weights(gray_model, "conv2")
    assert (w2.index, w2.first, w2.weights.shape) == (3, False, (16, 6, 5, 5))
    assert np.array_equal(w2.weights, gray_model.conv2.weight.detach().numpy())
    w2.weights[:] = 0  # a copy: drawing or editing it never touches the model
    assert gray_model.conv2.weight.abs().sum() > 0


def test_weights_from_a_run_folder(tmp_path, gray_model):
    """A run folder's best weights (config.yaml and spec.yaml written as a training run writes them)."""
    from convscope.config import TrainConfig
    from convscope.run import DataInfo, Run

    run = Run(tmp_path, TrainConfig(model="lenet5"), gray_model.spec, DataInfo("x", ("a",) * 10, (0.5,), (0.25,)))
    (tmp_path / "config.yaml").write_text(run.config_yaml())
    (tmp_path / "spec.yaml").write_text(gray_model.spec.to_yaml())
    (tmp_path / "weights").mkdir()
    save_weights(tmp_path / "weights" / "best.safetensors", gray_model)
    w = filter_weights(str(tmp_path), "conv2")
    assert np.array_equal(w.weights, gray_model.conv2.weight.detach().numpy())


@pytest.mark.parametrize("name", ["pool1", "conv7"])
def test_not_a_conv_layer_is_a_one_line_error(gray_model, name):
    with pytest.raises(ConvscopeError) as err:
        filter_weights(gray_model, name)
    message = str(err.value)
    assert "\n" not in message and repr(name) in message and "Conv layers: conv1, conv2" in message


def test_the_first_layer_on_rgb_images_is_drawn_in_colour(rgb_model, tmp_path):
    path = save_filter_sheet(rgb_model, tmp_path / "rgb.png")
    rgb = pixels(path)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    coloured = (np.abs(r - g) > 40) & (np.abs(g - b) > 40) & (np.abs(r - b) > 40)
    assert coloured.sum() > 2000  # many pixels with R ≠ G ≠ B: the filters themselves, not just the title
    assert rgb.std() > 20


def test_one_channel_filters_are_diverging_around_zero(gray_model, tmp_path):
    path = save_filter_sheet(filter_weights(gray_model), tmp_path / "gray.png")
    rgb = pixels(path)
    assert (rgb[..., 0] > rgb[..., 2] + 60).sum() > 300  # red: positive weights
    assert (rgb[..., 2] > rgb[..., 0] + 60).sum() > 300  # blue: negative weights
    height, width, _ = rgb.shape
    assert width >= 800 and height >= 300 and path.stat().st_size > 10_000


@pytest.mark.parametrize("layer", ["conv2", "conv3"])  # 5 filters 3×3×8, 4 filters 1×1×5 (5 is prime: unused cells)
def test_deeper_layers_are_mosaics(rgb_model, tmp_path, layer):
    path = save_filter_sheet(rgb_model, tmp_path / f"{layer}.png", layer=layer)
    rgb = pixels(path)
    assert rgb.std() > 20 and (rgb[..., 0] > rgb[..., 2] + 60).sum() > 100


def test_a_mosaic_places_each_input_channel_block_row_by_row():
    filt = np.arange(5 * 2 * 3, dtype=np.float32).reshape(5, 2, 3)  # 5 input channels of 2×3
    out = _mosaic(filt, cols=3)
    assert out.shape == (2 * 2, 3 * 3)
    assert np.array_equal(out[0:2, 3:6], filt[1]) and np.array_equal(out[2:4, 3:6], filt[4])
    assert np.isnan(out[2:4, 6:9]).all()  # no sixth channel
