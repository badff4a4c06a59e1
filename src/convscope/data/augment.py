"""Batched augmentation on float tensors N×C×H×W: one tensor operation per batch, no per-image Python.

Every random draw comes from the `generator` passed in (on its own device; the batch may be on another), so a resumed
run draws exactly what an uninterrupted one would have.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from convscope.errors import ConfigError


@dataclass(frozen=True)
class Augment:
    flip: bool = False  # mirror left-right with probability 1/2 (right for clothes and objects, wrong for digits)
    translate: int = 0  # shift by up to this many pixels in each direction (zero padding)
    cutout: int = 0  # blank a random square of this side

    @classmethod
    def parse(cls, text: str) -> Augment:
        """'flip,translate=2,cutout=8' or 'none'."""
        if text.strip() in ("", "none"):
            return cls()
        values: dict = {}
        for part in text.split(","):
            m = re.fullmatch(r"\s*(flip|translate|cutout)\s*(?:=\s*(\d+))?\s*", part)
            if part.strip() == "scale":
                raise ConfigError("augment: scale (zooming images and their boxes together) is for detectors")
            if not m:
                raise ConfigError(
                    f"augment: expected words like 'flip,translate=2,cutout=8' or 'none'. Received: {part.strip()!r}"
                )
            name, number = m.group(1), m.group(2)
            if name == "flip":
                values["flip"] = True
            else:
                values[name] = int(number) if number is not None else {"translate": 2, "cutout": 8}[name]
        return cls(**values)

    def text(self) -> str:
        parts = (["flip"] if self.flip else []) + [
            f"{k}={v}" for k, v in (("translate", self.translate), ("cutout", self.cutout)) if v
        ]
        return ",".join(parts) or "none"

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if self.flip:
            x = flip(x, generator)
        if self.translate:
            x = translate(x, self.translate, generator)
        if self.cutout:
            x = cutout(x, self.cutout, generator)
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
