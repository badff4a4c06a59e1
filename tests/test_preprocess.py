"""channel_stats: the per-channel mean and std a run standardises with, and the refusal of a blank training set."""

import numpy as np
import pytest

from convscope.errors import DataError
from convscope.preprocess import channel_stats


def test_channel_stats_are_the_mean_and_std_of_values_in_0_1():
    images = np.zeros((2, 1, 2, 3), dtype=np.uint8)
    images[0, 0, :, 0] = [0, 255]  # red: 0, 255, 0, 255 → mean 0.5, std 0.5
    images[:, 0, :, 1] = 51  # green: all 0.2, constant (allowed while another channel varies)
    mean, std = channel_stats(images)
    assert mean == pytest.approx((0.25, 0.2, 0.0))
    assert std == pytest.approx((np.std([0, 1, 0, 0]), 1e-6, 1e-6), abs=1e-9)


def test_a_training_set_of_one_value_is_refused_by_name():
    blank = np.full((4, 5, 5, 3), 17, dtype=np.uint8)
    with pytest.raises(DataError, match=r"^pets: all images have the same value \(17 of 255 in every pixel\)"):
        channel_stats(blank, name="pets")
    rgb = np.zeros((3, 2, 2, 3), dtype=np.uint8)
    rgb[..., 2] = 255
    with pytest.raises(DataError, match=r"^training images: all images have the same value \(\(0, 0, 255\) of 255 in"):
        channel_stats(rgb)
