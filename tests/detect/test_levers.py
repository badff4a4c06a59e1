"""Better boxes on small sets (issue 28): colour (HSV) jitter and the GIoU box loss, each a setting that can be off."""

from __future__ import annotations

import colorsys

import numpy as np
import pytest
import torch

from convscope.config import TrainConfig
from convscope.data.detection.augment import _hsv_to_rgb, _rgb_to_hsv, augments, color_jitter
from convscope.detect.loss import detection_loss, encode_targets, giou_loss
from convscope.errors import ConfigError
from convscope.spec_layers import Detect


def test_the_hsv_round_trip_matches_colorsys():
    rng = np.random.default_rng(0)
    rgb = rng.random((2, 3, 5, 7)).astype(np.float32)
    rgb[0, :, 0, 0] = 0.5  # a grey pixel: no hue, no saturation
    rgb[0, :, 0, 1] = 0.0  # black
    hue, sat, val = _rgb_to_hsv(torch.from_numpy(rgb))
    expected = np.array([colorsys.rgb_to_hsv(*rgb[n, :, i, j]) for n in range(2) for i in range(5) for j in range(7)])
    got = torch.stack([hue, sat, val], dim=-1).reshape(-1, 3).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-6)
    np.testing.assert_allclose(_hsv_to_rgb(hue, sat, val).numpy(), rgb, atol=1e-6)


def test_color_jitter_moves_hue_saturation_and_value_within_the_gains():
    images = torch.tensor([[[[200, 40]], [[100, 40]], [[50, 40]]]] * 64, dtype=torch.uint8)  # 64 × 3×1×2
    generator = torch.Generator().manual_seed(1)
    out = color_jitter(images, generator, gains=(0.015, 0.7, 0.4))
    assert out.dtype == torch.uint8 and out.shape == images.shape
    assert torch.equal(generator.get_state(), torch.Generator().manual_seed(1).get_state()) is False  # it drew
    draws = torch.rand(64, 3, generator=torch.Generator().manual_seed(1)) * 2 - 1
    hue, sat, val = (t[:, 0, 0] for t in _rgb_to_hsv(out.float() / 255))  # the coloured pixel of each image
    h0, s0, v0 = colorsys.rgb_to_hsv(200 / 255, 100 / 255, 50 / 255)
    shift = (hue - h0 + 0.5) % 1 - 0.5
    torch.testing.assert_close(shift, draws[:, 0] * 0.015, atol=4e-3, rtol=0)  # 8-bit rounding of the result
    torch.testing.assert_close(sat, (s0 * (1 + 0.7 * draws[:, 1])).clamp(0, 1), atol=2e-2, rtol=0)
    torch.testing.assert_close(val, (v0 * (1 + 0.4 * draws[:, 2])).clamp(0, 1), atol=4e-3, rtol=0)
    grey = out[:, :, 0, 1].int()
    assert torch.equal(grey[:, 0], grey[:, 1]) and torch.equal(grey[:, 1], grey[:, 2])  # grey stays grey
    assert color_jitter(images, torch.Generator().manual_seed(1)).equal(out)  # the same draws, the same pixels


def test_color_is_a_detection_augment_word():
    assert augments(TrainConfig(augment="flip,scale,color")) == {"flip", "scale", "color"}
    with pytest.raises(ConfigError, match="Received: 'colour'"):
        augments(TrainConfig(augment="flip,colour"))


def _maps(boxes, size_shift=0.0, stride=4, hw=(16, 16)):
    """Output maps whose size and offset are the targets (size + size_shift px), and a heatmap of zeros."""
    t = encode_targets(boxes, [torch.zeros(len(b), dtype=torch.long) for b in boxes], 1, hw, stride)
    size = t["size"] + size_shift * t["mask"][:, None]
    return t, size, t["offset"]


def test_giou_loss_is_zero_for_the_true_boxes_and_the_giou_of_wrong_ones():
    boxes = [torch.tensor([[4.0, 8.0, 20.0, 16.0], [30.0, 30.0, 50.0, 60.0]]), torch.tensor([[0.0, 0.0, 12.0, 12.0]])]
    t, size, offset = _maps(boxes)
    assert float(giou_loss(size, offset, t, 4)) == pytest.approx(0.0, abs=1e-6)
    t, size, offset = _maps(boxes, size_shift=4.0)  # each box 4 px wider and taller, same centre: IoU = A/(A')
    areas = [(16 * 8, 20 * 12), (20 * 30, 24 * 34), (12 * 12, 16 * 16)]  # true, predicted; enclosing = predicted
    expected = np.mean([1 - a / b for a, b in areas])
    assert float(giou_loss(size, offset, t, 4)) == pytest.approx(expected, rel=1e-5)
    empty = encode_targets([torch.zeros(0, 4)], [torch.zeros(0, dtype=torch.long)], 1, (16, 16), 4)
    assert float(giou_loss(torch.ones(1, 2, 16, 16), torch.zeros(1, 2, 16, 16), empty, 4)) == 0.0


def test_the_giou_weight_adds_its_share_to_the_detection_loss():
    head = Detect(classes=1, channels=8)
    torch.manual_seed(0)
    out = torch.randn(2, 5, 16, 16, requires_grad=True)
    boxes = [torch.tensor([[4.0, 8.0, 20.0, 16.0]]), torch.tensor([[10.0, 12.0, 40.0, 44.0]])]
    classes = [torch.zeros(1, dtype=torch.long)] * 2
    plain = detection_loss(out, boxes, classes, head)
    with_giou = detection_loss(out, boxes, classes, head, giou_weight=2.0)
    t = encode_targets(boxes, classes, 1, (16, 16), head.stride)
    expected = plain + 2.0 * giou_loss(out[:, 1:3], out[:, 3:5], t, head.stride)
    torch.testing.assert_close(with_giou, expected)
    with_giou.backward()
    assert out.grad[:, 1:3].abs().sum() > 0  # the sizes learn from it
