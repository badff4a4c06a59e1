"""Images as the network takes them: a picture of any size and mode fitted to the input (uint8 H×W×C), uint8
N×H×W×C arrays to normalised N×C×H×W batches, and batched inference over them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from convscope.data.dataset import check_not_blank, pixel_stats
from convscope.data.images import describe, open_image, to_array
from convscope.run import Run


def prepare(path: Path, shape: tuple[int, int, int]) -> tuple[np.ndarray, str]:
    """An image file as the model takes it (uint8 H×W×C of `shape`), and how it was converted. DataError for a
    file that cannot be read (data.images.open_image)."""
    return fit_image(open_image(path), shape)


def fit_image(img: Image.Image, shape: tuple[int, int, int]) -> tuple[np.ndarray, str]:
    """An upright PIL image as the model takes it (uint8 H×W×C of `shape`), and how it was converted, e.g.
    'RGB 451×300 → gray 28×28'."""
    h, w, c = shape
    before = describe(img)
    array = to_array(img, c)
    # Pillow's resize widens its filter when shrinking, so a 451-pixel photo becomes 28 pixels without aliasing.
    small = Image.fromarray(array[:, :, 0] if c == 1 else array).resize((w, h), Image.Resampling.BILINEAR)
    out = np.asarray(small, dtype=np.uint8).reshape(h, w, c)
    return out, f"{before} → {'gray' if c == 1 else 'RGB'} {w}×{h}"


def channel_stats(images: np.ndarray, name: str = "training images") -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 N×H×W×C images scaled to [0, 1] (computed in chunks: no float copy).

    Raises DataError naming `name` (the dataset) when every pixel of every image has (nearly) the same value: std
    below MIN_PIXEL_STD in every channel, which standardising would divide by; and when there are no images.
    """
    mean, std = pixel_stats(images)
    check_not_blank(name, mean, std)
    return mean, std


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 N×H×W×C -> uint8 N×C×H×W (a channels_last view: no copy unless the array is read-only)."""
    images = np.ascontiguousarray(images)
    if not images.flags.writeable:  # e.g. np.asarray of a Pillow image; torch wants memory it could write
        images = images.copy()
    return torch.from_numpy(images).permute(0, 3, 1, 2)


def run_stats(run: Run) -> tuple[torch.Tensor, torch.Tensor]:
    """The run's per-channel mean and std (of its training images in [0, 1]) as 1×C×1×1 tensors, for `normalise`."""
    c = len(run.data.mean)
    return torch.tensor(run.data.mean).view(1, c, 1, 1), torch.tensor(run.data.std).view(1, c, 1, 1)


def normalise(batch: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 N×C×H×W -> float32, scaled to [0, 1] and standardised per channel, channels_last."""
    x = batch.contiguous(memory_format=torch.channels_last).float().div_(255)
    return x.sub_(mean).div_(std)


def batch_for(images: torch.Tensor, limit: int = 1000) -> int:
    """Images per inference batch: up to `limit`, fewer for large images (224×224×3: 111), so memory stays bounded."""
    return max(1, min(limit, 2**24 // max(1, images[0].numel())))


@torch.inference_mode()
def predict_logits(model, images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, device=None) -> torch.Tensor:
    """N×classes float32 logits (on the CPU) of uint8 N×C×H×W `images`, in batches of batch_for(images), each run on
    `device` (default: where mean and std are). `model` is put in inference mode."""
    model.train(False)
    device = mean.device if device is None else device
    mean, std = mean.to(device), std.to(device)
    batch = batch_for(images)
    return torch.cat(
        [
            model(normalise(images[i : i + batch].to(device, non_blocking=True), mean, std)).float().cpu()
            for i in range(0, len(images), batch)
        ]
    )
