"""Batched augmentation on float tensors N×C×H×W: one tensor operation per batch, no per-image Python.

Every random draw comes from the `generator` passed in (on its own device; the batch may be on another), so a resumed
run draws exactly what an uninterrupted one would have. What to apply is an Augment (data/augment.py, torch-free).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from convscope.data.augment import Augment


def augment_batch(x: torch.Tensor, augment: Augment, generator: torch.Generator) -> torch.Tensor:
    """The batch with `augment`'s flips, shifts and cutouts applied, in that order."""
    if augment.flip:
        x = flip(x, generator)
    if augment.translate:
        x = translate(x, augment.translate, generator)
    if augment.cutout:
        x = cutout(x, augment.cutout, generator)
    return x


def flip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    mirror = (torch.rand(x.shape[0], generator=generator, device=generator.device) < 0.5).to(x.device)
    return torch.where(mirror[:, None, None, None], x.flip(3), x)


def translate(x: torch.Tensor, pad: int, generator: torch.Generator) -> torch.Tensor:
    """Shift each image by (dy, dx) in [−pad, pad]²: crop an H×W window out of the zero-padded batch."""
    n, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad)).permute(0, 2, 3, 1)  # N×(H+2p)×(W+2p)×C
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=generator.device).to(x.device)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=generator.device).to(x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, :, None]  # N×H×1
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, :]  # N×1×W
    out = padded[torch.arange(n, device=x.device)[:, None, None], rows, cols]  # N×H×W×C
    return out.permute(0, 3, 1, 2)  # N×C×H×W in channels_last memory


def cutout(x: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """Zero a size×size square (clipped at the border) centred at a random pixel of each image."""
    n, _, h, w = x.shape
    cy = torch.randint(0, h, (n,), generator=generator, device=generator.device).to(x.device)
    cx = torch.randint(0, w, (n,), generator=generator, device=generator.device).to(x.device)
    rows = (torch.arange(h, device=x.device)[None, :] - cy[:, None]).abs() <= size // 2  # N×H
    cols = (torch.arange(w, device=x.device)[None, :] - cx[:, None]).abs() <= size // 2  # N×W
    hole = rows[:, :, None] & cols[:, None, :]
    return x.masked_fill(hole[:, None], 0.0)
