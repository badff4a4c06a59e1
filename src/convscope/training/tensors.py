"""Images as tensors: uint8 N×H×W×C arrays to normalised N×C×H×W batches, and batched inference over them."""

from __future__ import annotations

import numpy as np
import torch

from convscope.run import Run


def channel_stats(images: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 N×H×W×C images scaled to [0, 1] (computed in chunks: no float copy)."""
    c = images.shape[-1]
    total, total_sq, count = np.zeros(c), np.zeros(c), 0
    for start in range(0, len(images), 4096):
        chunk = images[start : start + 4096].reshape(-1, c).astype(np.float64) / 255
        total += chunk.sum(0)
        total_sq += (chunk**2).sum(0)
        count += chunk.shape[0]
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean**2, 1e-12))
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)


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
def predict_logits(model, images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor):
    model.train(False)
    batch = batch_for(images)
    return torch.cat([model(normalise(images[i : i + batch], mean, std)) for i in range(0, len(images), batch)])
