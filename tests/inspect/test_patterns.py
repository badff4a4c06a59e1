"""What each filter looks for, by gradient ascent (convscope.inspect.patterns): answers known in advance.

A first-layer filter set by hand to Sobel's vertical-edge detector must yield vertical stripes; in a trained
network, each filter must respond to its own pattern more than to noise and more than to the dataset's images that
excite it most."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import make_folder
from safetensors.torch import load_file, save_file

from convscope.cli import main
from convscope.errors import DataError
from convscope.inspect.patterns import filter_patterns, layer_output
from convscope.loaded import load_model
from convscope.preprocess import normalise, run_stats, to_tensor
from convscope.run import load_run
from convscope.spec import NetSpec
from convscope.tasks.train import train

SOBEL_X = [[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]]  # responds to change along x: vertical edges


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_folder(tmp_path_factory.mktemp("data"), per_class=40, size=20)


def test_a_vertical_edge_filter_set_by_hand_yields_vertical_stripes(folder, tmp_path):
    # The ReLU as a layer of its own, whose output is the objective: a conv layer's own patterns are found before
    # its activation, and the mean of a linear zero-sum filter's response only rewards the image's borders.
    layers = [
        {"conv": {"filters": 2, "size": 3}},
        {"activation": {"function": "relu"}},
        "global_pool",
        {"dense": {"units": 2}},
    ]
    spec = NetSpec.from_dict({"name": "edges", "input": "20x20x1", "layers": layers})
    (tmp_path / "edges.yaml").write_text(spec.to_yaml())
    run = train(model=str(tmp_path / "edges.yaml"), data=str(folder), epochs=1, threads=1, out=str(tmp_path / "r"))
    for which in ("best", "last"):
        path = run.weights / f"{which}.safetensors"
        weights = load_file(path)
        weights["conv1.weight"][0, 0] = torch.tensor(SOBEL_X)
        weights["conv1.weight"][1, 0] = torch.tensor(SOBEL_X).T  # and a horizontal-edge one beside it
        weights["conv1.bias"][:] = 0
        save_file(weights, path)
    patterns = filter_patterns(run, "activation1", [0, 1], steps=96, device="cpu")
    assert patterns.images.shape == (2, 20, 20, 1) and patterns.images.dtype == np.uint8
    for image, across, along in ((patterns.images[0], 1, 0), (patterns.images[1], 0, 1)):
        pixels = image[:, :, 0].astype(float)
        change_across = np.abs(np.diff(pixels, axis=across)).mean()
        change_along = np.abs(np.diff(pixels, axis=along)).mean()
        # Stripes the way the filter says (measured: 80.6 against 41.7 per pixel step, both filters alike): the
        # ReLU'd Sobel response is unbounded, so the ascent pushes pixels to 0 and 255 in stripes across its axis.
        assert change_across > 1.5 * change_along, (change_across, change_along)


def test_each_filter_prefers_its_pattern_to_noise_and_to_its_best_images(folder, tmp_path):
    run = train(model="lenet5", data=str(folder), epochs=4, batch_size=16, threads=1, out=str(tmp_path / "lenet"))
    filters = [0, 1, 2, 3, 4, 5]
    patterns = filter_patterns(run, "conv2", filters, steps=128, device="cpu")
    images = load_run(run.path)
    model = load_model(images, device="cpu")
    from convscope.data.load import load_dataset

    data = load_dataset(run.config.data, None, run.spec.input, run.config.seed)
    mean, std = run_stats(run)
    with torch.inference_mode():
        maps = layer_output(model, "conv2", normalise(to_tensor(data.train.images), mean, std))
    per_image = maps[:, filters].mean(dim=(2, 3)).numpy()  # images × filters
    best_nine = np.sort(per_image, axis=0)[-9:].mean(axis=0)  # each filter's 9 most exciting training images
    margin_best = patterns.activation - best_nine
    margin_noise = patterns.activation - patterns.noise_activation
    assert (margin_noise > 0.1).all(), margin_noise
    assert (margin_best > 0.05).all(), (patterns.activation, best_nine)


def test_the_command_writes_a_sheet_and_refuses_what_a_layer_lacks(folder, tmp_path, capsys):
    run = train(model="lenet5", data=str(folder), epochs=1, batch_size=16, threads=1, out=str(tmp_path / "l"))
    assert main(["filters", str(run.path), "--patterns", "--layer", "conv2", "--filters", "0-3", "--steps", "8"]) == 0
    out = capsys.readouterr().out
    assert "conv2: 4 patterns of 28×28 in 8 steps" in out and (run.path / "patterns-conv2.png").is_file()
    assert main(["filters", str(run.path), "--patterns", "--layer", "dense1"]) == 2
    assert "'dense1' has no feature maps" in capsys.readouterr().err
    with pytest.raises(DataError, match="conv2 has filters 0 to 15"):
        filter_patterns(run, "conv2", [16], steps=1)
    with pytest.raises(DataError, match="no layer 'conv9'"):
        filter_patterns(run, "conv9", steps=1)
