"""An all-zero Grad-CAM has no strongest place: it says that nothing in the layer raises the class."""

import numpy as np
import torch

from convscope.builder import build
from convscope.inspect.gradcam import GradCam, gradcam
from convscope.spec import Conv, Dense, Flatten, NetSpec

SPEC = NetSpec((8, 8, 1), (Conv(4, 3, activation="relu"), Flatten(), Dense(3)), name="tiny")


def test_a_layer_that_is_all_zero_gives_an_empty_map_and_says_so():
    model = build(SPEC)
    with torch.no_grad():
        model.conv1.weight.zero_()
        model.conv1.bias.fill_(-1.0)  # relu(−1) = 0 at every position: nothing there can raise any class
    x = torch.rand(1, 1, 8, 8)
    result = gradcam(model, x, layer="conv1", class_index=2)
    assert result.empty and result.strongest() is None
    assert not result.heatmap.any() and result.heatmap.shape == (8, 8)
    named = GradCam(result.heatmap, result.layer_map, 2, 0.25, "conv1", class_name="owl")
    assert named.summary() == (
        "owl (probability 25.00%), HiResCAM at layer conv1: "
        "nothing in layer conv1 raises the score of class owl: the map is all zero"
    )


def test_a_map_with_a_peak_names_its_row_and_column():
    heatmap = np.zeros((4, 5), dtype=np.float32)
    heatmap[2, 3] = 1.0
    result = GradCam(heatmap, heatmap, 0, 0.9, "conv2", class_name="cat")
    assert not result.empty and result.strongest() == (2, 3)
    assert result.summary() == (
        "cat (probability 90.00%), HiResCAM at layer conv2: strongest at row 2, column 3 of the 4×5 input"
    )
