"""Phase 1 of a detector on a frozen base, on the base's features computed once (`cache_features`).

While the base is frozen (phase 1, its batchnorm layers in inference mode) its output for an image never changes, so
it is computed once per image and only the new layers run in each step. Mirroring survives: the base also runs once
on each image's mirror image (the features of the mirrored photo, not a flip of the features: a convnet's features
are not mirror-symmetric), and every step draws which of the two it trains on with the augmentation's own generator
and `flip`'s own draw, so a cached run mirrors exactly the images an uncached one would and resumes bit-identically.
Zooming and shifting (`scale`) move pixels under the base and cannot be cached: phase 1 trains without them (phase 2,
with the base training, has them again).

Shapes: images uint8 N×3×H×W; features N×C×h×w float32 (lite0-det: 112×26×26 at 416×416, 0.30 MiB an image).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from convscope.data.detection.augment import flip
from convscope.detect.decoding import mirror_average
from convscope.preprocess import batch_for, normalise


@dataclass(frozen=True)
class Features:
    """The frozen base's output of every image of a split (`plain`, N×C×h×w) and of its mirror image (`mirror`)."""

    plain: Tensor
    mirror: Tensor

    @property
    def nbytes(self) -> int:
        return sum(t.nelement() * t.element_size() for t in (self.plain, self.mirror))

    def __len__(self) -> int:
        return len(self.plain)

    def draw(
        self, index: Tensor, boxes: list[Tensor], width: int, generator: torch.Generator
    ) -> tuple[Tensor, list[Tensor]]:
        """Features of the images `index` (B), each mirrored with probability 1/2 as `flip` mirrors a batch of
        images `width` pixels wide, and their boxes (B lists of n×4 xyxy px) mirrored with them. One draw of B
        numbers from `generator`, the same as `flip` makes for B images."""
        # flip() itself draws and moves the boxes; a B×1×1×W ramp as the "images" shows which ones it mirrored.
        ramp = torch.arange(width).expand(len(index), 1, 1, width)
        flipped, boxes = flip(ramp, boxes, generator)
        mirrored = (flipped[:, 0, 0, 0] != 0).to(self.plain.device)[:, None, None, None]  # B×1×1×1
        at = index.to(self.plain.device)
        return torch.where(mirrored, self.mirror[at], self.plain[at]), boxes

    def maps(self, model, part: slice, flip_average: bool) -> Tensor:
        """The detector's N×(K+4)×h×w maps of the images `part` from their features (decoding.detector_maps with
        the base's pass taken from the cache); `flip_average`: averaged with their mirror images' maps."""
        head, classes = model.head(), model.spec.layers[-1].classes
        out = head(self.plain[part])
        return mirror_average(out, head(self.mirror[part]).flip(-1), classes) if flip_average else out


@torch.no_grad()  # not inference_mode: the head trains on these tensors
def base_features(base, images: Tensor, mean: Tensor, std: Tensor, device: torch.device) -> Features:
    """The base's features of uint8 N×3×H×W `images` and of their mirror images, in inference batches on
    `device` (standardised with mean and std, 1×3×1×1). The base is put in inference mode (frozen: it is)."""
    base.train(False)
    plain, mirror = [], []
    step = batch_for(images)
    for start in range(0, len(images), step):
        x = normalise(images[start : start + step].to(device, non_blocking=True), mean, std)
        plain.append(base(x))
        mirror.append(base(x.flip(3)))  # normalising is per pixel: the mirror of the normalised image is exact
    return Features(torch.cat(plain), torch.cat(mirror))
