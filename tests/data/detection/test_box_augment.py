"""Box-aware augmentation: the returned boxes must be where the augmented pixels are."""

import pytest
import torch

from convscope.data.detection.augment import _move_boxes, flip, scale_translate

H, W = 64, 96  # not square, so x and y mix-ups show


def rendered_batch(n: int, seed: int, dtype=torch.float32) -> tuple[torch.Tensor, list, list]:
    """n images; image i has up to 4 filled rectangles at integer boxes, box j drawn alone in channel j.

    The class of box j is j, so after boxes are dropped the surviving classes still name their channel.
    """
    g = torch.Generator().manual_seed(seed)
    images = torch.zeros(n, 4, H, W)
    boxes, classes = [], []
    for i in range(n):
        count = int(torch.randint(0, 5, (1,), generator=g))
        x1 = torch.randint(0, W - 12, (count,), generator=g)
        y1 = torch.randint(0, H - 12, (count,), generator=g)
        x2 = x1 + 6 + (torch.rand(count, generator=g) * (W - x1 - 6)).long()
        y2 = y1 + 6 + (torch.rand(count, generator=g) * (H - y1 - 6)).long()
        for j in range(count):
            images[i, j, y1[j] : y2[j], x1[j] : x2[j]] = 1.0
        boxes.append(torch.stack([x1, y1, x2, y2], 1).float())
        classes.append(torch.arange(count))
    if dtype == torch.uint8:
        images = (images * 255).to(torch.uint8)
    return images, boxes, classes


def pixel_box(channel: torch.Tensor, level: float) -> torch.Tensor:
    """xyxy extent (px edges) of the pixels brighter than level: half-way up a bilinear edge is the true edge."""
    rows = torch.nonzero((channel > level).any(1)).ravel()
    cols = torch.nonzero((channel > level).any(0)).ravel()
    return torch.stack([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1]).float()


def assert_boxes_match_pixels(images, boxes, classes, level):
    checked = 0
    for i, (image_boxes, image_classes) in enumerate(zip(boxes, classes, strict=True)):
        assert len(image_boxes) == len(image_classes)
        for box, cls in zip(image_boxes, image_classes, strict=True):
            assert (pixel_box(images[i, cls], level) - box).abs().max() <= 1.0, (i, int(cls), box)
            checked += 1
    return checked


@pytest.mark.parametrize("dtype", [torch.float32, torch.uint8])
def test_scale_translate_boxes_follow_the_pixels(dtype):
    images, boxes, classes = rendered_batch(32, seed=0, dtype=dtype)
    out, out_boxes, out_classes = scale_translate(images, boxes, classes, torch.Generator().manual_seed(1))
    assert out.dtype == dtype and out.shape == images.shape
    level = 127.5 if dtype == torch.uint8 else 0.5
    checked = assert_boxes_match_pixels(out, out_boxes, out_classes, level)
    assert checked > 40
    assert sum(map(len, out_boxes)) <= sum(map(len, boxes))
    for b in out_boxes:  # clipped to the image, not degenerate
        assert (b[:, 0] >= 0).all() and (b[:, 2] <= W).all() and (b[:, 1] >= 0).all() and (b[:, 3] <= H).all()
        assert (b[:, 2:] - b[:, :2] >= 2).all()


def test_scale_translate_drops_boxes_that_leave_the_image_with_their_classes():
    images, boxes, classes = rendered_batch(64, seed=2)
    g = torch.Generator().manual_seed(3)
    _, out_boxes, out_classes = scale_translate(images, boxes, classes, g, scale=(1.2, 1.6), translate=0.4)
    assert sum(map(len, out_boxes)) < sum(map(len, boxes))  # such strong shifts must push some boxes out
    for before, after in zip(classes, out_classes, strict=True):
        assert set(after.tolist()) <= set(before.tolist())


def test_drop_rule_is_thirty_percent_of_the_area_and_two_pixels():
    boxes = torch.tensor([[40.0, 10, 80, 30], [30, 10, 70, 30], [10, 10, 20, 11.5], [0, 0, 10, 10]])
    s = torch.tensor([1.0, 1.0, 1.0, 2.0])
    shift = torch.tensor([[0.5, 0.0], [0.5, 0.0], [0.0, 0.0], [0.0, 0.0]])  # half the image width to the right
    moved, keep = _move_boxes(boxes, s, shift, (100, 100))
    # 1: x 90..130 → 10 of 40 px inside (25%): dropped. 2: x 80..120 → 20 of 40 (50%): kept, clipped to 80..100.
    # 3: 1.5 px high: dropped. 4: zoomed ×2 about (50, 50) → −50..−30, entirely outside: dropped.
    assert keep.tolist() == [False, True, False, False]
    assert moved[1].tolist() == [80.0, 10.0, 100.0, 30.0]


def no_boxes(n: int) -> tuple[list, list]:
    return [torch.zeros(0, 4)] * n, [torch.zeros(0, dtype=torch.long)] * n


def test_grey_padding_and_identity_at_scale_one():
    images = torch.rand(3, 2, H, W)
    same, boxes, _ = scale_translate(images, *no_boxes(3), torch.Generator(), scale=(1.0, 1.0), translate=0.0)
    assert torch.allclose(same, images, atol=1e-5) and all(len(b) == 0 for b in boxes)
    ones = torch.ones(2, 1, H, W)
    out, _, _ = scale_translate(ones, *no_boxes(2), torch.Generator(), scale=(0.5, 0.5), translate=0.0, fill=0.5)
    # Zoomed out to half size about the centre: the middle W/2 × H/2 shows the image, the border is grey.
    middle = out[:, :, H // 4 + 1 : 3 * H // 4 - 1, W // 4 + 1 : 3 * W // 4 - 1]
    assert torch.allclose(middle, torch.tensor(1.0))
    assert torch.allclose(out[:, :, : H // 4 - 1], torch.tensor(0.5))
    assert torch.allclose(out[..., -W // 4 + 1 :], torch.tensor(0.5))


def test_flip_boxes_follow_the_pixels_and_flipping_twice_is_identity():
    images, boxes, classes = rendered_batch(16, seed=4)
    flipped, flipped_boxes = flip(images, boxes, torch.Generator().manual_seed(5))
    assert assert_boxes_match_pixels(flipped, flipped_boxes, classes, 0.5) > 10
    mirrored = [not torch.equal(a, b) for a, b in zip(flipped_boxes, boxes, strict=True) if len(a)]
    assert 0 < sum(mirrored) < len(mirrored)  # a random part of the batch, not all or nothing
    back, back_boxes = flip(flipped, flipped_boxes, torch.Generator().manual_seed(5))  # the same draws again
    assert torch.equal(back, images)
    assert all(torch.equal(a, b) for a, b in zip(back_boxes, boxes, strict=True))


def test_same_seed_same_augmentation():
    images, boxes, classes = rendered_batch(8, seed=6, dtype=torch.uint8)
    a = scale_translate(images, boxes, classes, torch.Generator().manual_seed(7))
    b = scale_translate(images, boxes, classes, torch.Generator().manual_seed(7))
    c = scale_translate(images, boxes, classes, torch.Generator().manual_seed(8))
    assert torch.equal(a[0], b[0]) and not torch.equal(a[0], c[0])
    assert all(torch.equal(x, y) for x, y in zip(a[1] + a[2], b[1] + b[2], strict=True))
    f1 = flip(images, boxes, torch.Generator().manual_seed(9))
    f2 = flip(images, boxes, torch.Generator().manual_seed(9))
    assert torch.equal(f1[0], f2[0]) and all(torch.equal(x, y) for x, y in zip(f1[1], f2[1], strict=True))
