"""Which augmentations a classifier trains with: the words ('flip,translate=2,cutout=8'), parsed and shown.

No torch here: TrainConfig validates its `augment` words with `Augment.parse` when it is created, and TrainConfig is
read by the command line while it builds its flags (which must not wait for torch). The batch code that applies an
Augment to images is data/augment_batch.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

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
