"""Fit a whole dataset to the image shape a model takes: resize and change the number of channels, in batches."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from convscope.errors import DataError

# ITU-R 601 luma, Pillow's "L": what a grayscale model should see of a color image.
LUMA = (0.299, 0.587, 0.114)


def fit_images(images: np.ndarray, shape: tuple[int, int, int], chunk: int = 512) -> np.ndarray:
    """uint8 N×H×W×C → uint8 N×h×w×c for `shape` (h, w, c); returned unchanged when it already fits.

    Bilinear resizing (antialiased when shrinking, so no aliasing); gray → color repeats the one channel (what a base
    pretrained on color photos should see of a gray image), color → gray uses the luma weights.
    """
    h, w, c = shape
    if images.ndim != 4 or images.dtype != np.uint8:
        raise DataError(f"fit_images expects uint8 N×H×W×C images. Received {images.dtype} {images.shape}")
    if images.shape[1:] == (h, w, c):
        return images
    if images.shape[3] not in (1, 3) or c not in (1, 3):
        raise DataError(f"cannot convert {images.shape[3]}-channel images to {c} channels (only 1 ↔ 3)")
    out = np.empty((len(images), h, w, c), dtype=np.uint8)
    for start in range(0, len(images), chunk):
        x = torch.from_numpy(np.ascontiguousarray(images[start : start + chunk])).permute(0, 3, 1, 2).float()
        if x.shape[1] == 3 and c == 1:
            x = (x * torch.tensor(LUMA).view(1, 3, 1, 1)).sum(1, keepdim=True)
        if x.shape[-2:] != (h, w):
            shrinking = x.shape[-2] > h or x.shape[-1] > w
            x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=shrinking)
        if x.shape[1] == 1 and c == 3:
            x = x.expand(-1, 3, -1, -1)
        out[start : start + chunk] = x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return out
