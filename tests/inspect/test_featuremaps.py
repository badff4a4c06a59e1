"""Feature maps: the exact layer outputs for one image, their shapes, and the PNG sheets drawn from them."""

from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import make_folder
from PIL import Image

from convscope.builder import build
from convscope.errors import ConvscopeError
from convscope.inspect.featuremaps import (
    FeatureMaps,
    _signed,
    feature_maps,
    grid_columns,
    layer_maps,
    save_feature_map_sheets,
)
from convscope.loaded import load_model
from convscope.preprocess import normalise, prepare, to_tensor
from convscope.shapes import infer
from convscope.spec import Activation, BatchNorm, Conv, Dense, Flatten, NetSpec, Pool
from convscope.tasks.train import train


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """lenet5 (input 28×28×1) trained one epoch on 20×20 gray images: conv1 (tanh), pool1 (avg), conv2, pool2, ..."""
    folder = make_folder(tmp_path_factory.mktemp("images"), per_class=12)
    out = tmp_path_factory.mktemp("runs") / "run"
    return train(model="lenet5", data=str(folder), epochs=1, batch_size=16, threads=1, out=str(out))


@pytest.fixture(scope="module")
def image(run, tmp_path_factory):
    """An RGB file of another size: the feature maps must see it converted like `predict` converts it."""
    rng = np.random.default_rng(1)
    path = tmp_path_factory.mktemp("input") / "photo.png"
    Image.fromarray(rng.integers(0, 256, (45, 30, 3)).astype(np.uint8)).save(path)
    return path


@pytest.fixture(scope="module")
def maps(run, image):
    return feature_maps(run, image)


def manual_input(run, image) -> torch.Tensor:
    array, _ = prepare(image, run.spec.input)
    c = run.spec.input[2]
    mean, std = torch.tensor(run.data.mean).view(1, c, 1, 1), torch.tensor(run.data.std).view(1, c, 1, 1)
    return normalise(to_tensor(array[None]), mean, std)


def test_maps_are_the_exact_layer_outputs(run, image, maps):
    model = load_model(run)
    x = manual_input(run, image)
    with torch.inference_mode():
        _, kept = model.forward_intermediates(x)
        for layer in maps.layers:
            by_slice = model[: layer.index](x)[0].numpy()  # the first `index` layers, run by hand
            assert layer.maps.dtype == np.float32
            assert np.array_equal(layer.maps, by_slice)
            assert np.array_equal(layer.maps, kept[layer.name][0].numpy())


def test_the_input_is_what_the_network_saw(run, image, maps):
    assert maps.image.dtype == np.uint8 and maps.image.shape == run.spec.input == (28, 28, 1)
    assert np.array_equal(maps.image, prepare(image, run.spec.input)[0])
    assert maps.conversion == "RGB 30×45 → gray 28×28"


def test_default_layers_are_every_conv_and_pool_in_order(run, maps):
    expected = [
        n for n, lay in zip(run.spec.layer_names(), run.spec.layers, strict=True) if lay.layer_type in ("conv", "pool")
    ]
    assert maps.names() == expected == ["conv1", "pool1", "conv2", "pool2"]
    assert [layer.index for layer in maps.layers] == [1, 2, 3, 4]


def test_chosen_layers_come_in_network_order(run, image):
    chosen = feature_maps(str(run.path), image, layers=["pool2", "conv1"])  # a run folder's path works too
    assert chosen.names() == ["conv1", "pool2"]
    assert np.array_equal(chosen["pool2"].maps, feature_maps(run, image)["pool2"].maps)


def test_shapes_and_labels_match_shape_inference(run, maps):
    infos = {info.name: info for info in infer(run.spec).layers}
    for layer in maps.layers:
        h, w, c = infos[layer.name].output_shape
        assert layer.shape == (h, w, c) and layer.maps.shape == (c, h, w)
        assert layer.label.startswith(infos[layer.name].label)
    assert maps["conv1"].label == "conv 5×5, stride 1, pad 2, tanh"
    assert maps["conv1"].shape == (28, 28, 6) and maps["pool2"].shape == (5, 5, 16)


@pytest.mark.parametrize("name", ["conv9", "dense1"])
def test_a_layer_without_maps_is_a_one_line_error(run, image, name):
    with pytest.raises(ConvscopeError) as err:
        feature_maps(run, image, layers=[name])
    message = str(err.value)
    assert "\n" not in message and repr(name) in message
    assert "conv1, pool1, conv2, pool2" in message


def test_the_low_level_call_takes_a_tensor_and_keeps_the_models_mode(run, image):
    model = load_model(run).train()  # training mode: batchnorm/dropout would change the outputs
    x = manual_input(run, image)
    layers = layer_maps(model, x, ["conv2"])
    assert model.training
    with torch.inference_mode():
        expected = model.eval()[:3](x)[0].numpy()
    assert [lay.name for lay in layers] == ["conv2"] and np.array_equal(layers[0].maps, expected)
    # C×H×W is taken as one image (equal up to rounding: its memory layout differs, so torch sums in another order)
    np.testing.assert_allclose(layer_maps(model, x[0], ["conv2"])[0].maps, expected, rtol=0, atol=1e-5)
    with pytest.raises(ConvscopeError, match="one image"):
        layer_maps(model, x.expand(2, -1, -1, -1))


def test_which_layers_can_be_negative():
    spec = NetSpec(
        input=(8, 8, 1),
        layers=(
            Conv(4, 3, activation="relu"),  # ≥ 0
            Pool(),  # a pool of values ≥ 0
            Conv(4, 3, padding="same", activation="none"),  # signed
            BatchNorm(),  # signed
            Activation("relu"),  # ≥ 0
            Activation("none"),  # keeps ≥ 0
            Conv(4, 1, activation="tanh"),  # signed
            Flatten(),
            Dense(2, activation="sigmoid"),  # ≥ 0
        ),
    )
    assert _signed(spec) == [False, False, True, True, False, False, True, True, False]
    torch.manual_seed(0)
    layers = layer_maps(build(spec), torch.randn(1, 1, 8, 8))
    assert [(lay.name, lay.signed) for lay in layers] == [
        ("conv1", False),
        ("pool1", False),
        ("conv2", True),
        ("conv3", True),
    ]


def test_grid_columns_fill_whole_rows():
    assert [grid_columns(n) for n in (1, 6, 16, 32, 64, 128, 7, 17)] == [1, 3, 4, 8, 8, 16, 7, 5]
    assert grid_columns(512) == 16


def pixels(path: Path) -> np.ndarray:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)


def test_sheets_are_readable_pngs(maps, tmp_path):
    paths = save_feature_map_sheets(maps, tmp_path / "sheets")
    assert [p.name for p in paths] == ["01-conv1.png", "02-pool1.png", "03-conv2.png", "04-pool2.png"]
    for path in paths:
        rgb = pixels(path)
        height, width, _ = rgb.shape
        assert 800 <= width <= 4000 and 400 <= height <= 3000
        assert 20_000 < path.stat().st_size < 3_000_000
        assert rgb.std() > 20  # not blank
    # conv1 (tanh) can be negative: diverging colours, both reds and blues; pool2 of tanh values too.
    conv1 = pixels(paths[0])
    red = (conv1[..., 0] > conv1[..., 2] + 60).sum()
    blue = (conv1[..., 2] > conv1[..., 0] + 60).sum()
    assert red > 500 and blue > 500


def test_a_sheet_of_responses_that_are_never_negative(run, image, tmp_path):
    """A ReLU network's maps: one sequential scale from 0, and a map that is 0 everywhere is labelled so."""
    spec = NetSpec(input=(12, 12, 3), layers=(Conv(6, 3, activation="relu"), Pool(), Flatten(), Dense(2)))
    torch.manual_seed(0)
    model = build(spec)
    with torch.no_grad():
        model.conv1.bias[0] = -100.0  # filter 0 never fires
    array = np.random.default_rng(2).integers(0, 256, (12, 12, 3)).astype(np.uint8)
    x = normalise(to_tensor(array[None]), torch.full((1, 3, 1, 1), 0.5), torch.full((1, 3, 1, 1), 0.25))
    fm = FeatureMaps(array, "RGB 12×12 → RGB 12×12", layer_maps(model, x))
    assert not fm["conv1"].signed and not fm["conv1"].maps[0].any()
    [conv1, pool1] = save_feature_map_sheets(fm, tmp_path)
    assert pixels(conv1).std() > 20 and pixels(pool1).std() > 20
