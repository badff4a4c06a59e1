"""Mirror averaging at test time for detectors (CenterNet's flip test): what is averaged, and when it is on."""

import torch
from torch import nn

from convscope.config import TrainConfig
from convscope.detect.decoding import detector_maps
from convscope.detect.evaluate import flips_at_test
from convscope.spec import Detect, NetSpec


class _Fixed(nn.Module):
    """Returns `plain` for the image it was made with and `mirrored` for that image's mirror image."""

    def __init__(self, image, plain, mirrored):
        super().__init__()
        self.image, self.plain, self.mirrored = image, plain, mirrored
        self.spec = NetSpec.from_dict({"input": "8x8x3", "layers": [{"conv": {"filters": 4, "size": 2, "stride": 4}},
                                                                    {"detect": {"classes": 2}}]})  # fmt: skip

    def forward(self, x):
        return self.plain if torch.equal(x, self.image) else self.mirrored


def test_flip_averages_heatmap_probabilities_and_sizes_and_keeps_the_offsets():
    image = torch.rand(1, 3, 8, 8)
    plain, mirrored = torch.randn(1, 6, 2, 2), torch.randn(1, 6, 2, 2)
    model = _Fixed(image, plain, mirrored)
    assert torch.equal(detector_maps(model, image), plain)
    out = detector_maps(model, image, flip=True)
    back = mirrored.flip(-1)  # the mirror's maps, flipped back onto the image's cells
    expected_heat = (plain[:, :2].sigmoid() + back[:, :2].sigmoid()) / 2
    torch.testing.assert_close(out[:, :2].sigmoid(), expected_heat)
    torch.testing.assert_close(out[:, 2:4], (plain[:, 2:4] + back[:, 2:4]) / 2)
    assert torch.equal(out[:, 4:], plain[:, 4:])
    assert isinstance(model.spec.layers[-1], Detect)


def test_flip_at_test_follows_the_training_augmentation_unless_set():
    assert flips_at_test(TrainConfig(model="scenes-det"))  # flip,scale is the default augmentation
    assert not flips_at_test(TrainConfig(model="scenes-det", augment="scale"))
    assert not flips_at_test(TrainConfig(model="scenes-det", tta_flip=False))
    assert flips_at_test(TrainConfig(model="scenes-det", augment="none", tta_flip=True))
