"""Will training fit in memory? An estimate from `shapes.infer` alone (pure Python, no torch), checked before
anything is allocated or written.

Training at batch size B keeps, in float32 (4 bytes a number):
  state        4 × the parameters: the weights, their gradients, and the optimizer's state (Adam's two moments;
               SGD's momentum is one, so this is the larger case)
  activations  B × (the input and every layer's output for one image): the forward pass keeps them for backward
The real need is higher (a conv's output before and after its activation, batchnorm's saved inputs, the data set,
torch itself; bf16 autocast halves some activations but keeps float32 copies of others), so this is close to a lower
bound: a network refused here cannot train on this machine; one that passes may still be tight.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

from convscope.errors import ConfigError, SpecError
from convscope.shapes import LayerInfo, ShapeReport, infer
from convscope.spec import NetSpec
from convscope.summary import human_bytes

FLOAT_BYTES = 4
STATE_COPIES = 4  # weights, gradients, two Adam moments


UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "kib": 2**10, "m": 10**6, "mb": 10**6, "mib": 2**20}
UNITS |= {"g": 10**9, "gb": 10**9, "gib": 2**30, "t": 10**12, "tb": 10**12, "tib": 2**40}


def parse_bytes(text: str, key: str = "size") -> int:
    """'6GiB' -> 6442450944, '500MB' -> 500000000, '0' -> 0 (units as written: GB = 10^9, GiB = 2^30; case and a
    space between are ignored). Raises ConfigError naming `key` for anything else."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", text)
    unit = match and match.group(2).lower()
    if not match or unit not in UNITS or float(match.group(1)) * UNITS[unit] >= 2**63:
        raise ConfigError(f"{key} must be a size such as 6GiB, 500MB or 0. Received: {text[:40]!r}")
    return int(float(match.group(1)) * UNITS[unit])


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes that training one batch needs at least (see the module's docstring)."""

    batch_size: int
    state_bytes: int  # weights + gradients + optimizer state
    image_bytes: int  # activations kept for backward, per image
    largest: LayerInfo  # the layer that needs the most (its parameters' state plus its output for the batch)

    @property
    def total(self) -> int:
        return self.state_bytes + self.batch_size * self.image_bytes

    def largest_batch(self, available: int) -> int:
        """The largest batch size whose estimate fits in `available` bytes (0: not even one image)."""
        return max(0, (available - self.state_bytes) // self.image_bytes)

    def text(self) -> str:
        """'61.0 MiB of weights, gradients and optimizer state + 598.2 MiB of activations per image × 128'."""
        return (
            f"{human_bytes(self.state_bytes)} of weights, gradients and optimizer state + "
            f"{human_bytes(self.image_bytes)} of activations per image × {self.batch_size}"
        )


def training_memory(report: ShapeReport, batch_size: int) -> MemoryEstimate:
    """The estimate for training the network of `report` (from `shapes.infer`) at `batch_size` images."""

    def need(info: LayerInfo) -> int:
        return FLOAT_BYTES * (STATE_COPIES * info.params + batch_size * math.prod(info.output_shape))

    return MemoryEstimate(
        batch_size=batch_size,
        state_bytes=FLOAT_BYTES * STATE_COPIES * report.params,
        image_bytes=report.activation_bytes,
        largest=max(report.layers, key=need),
    )


def available_memory() -> int | None:
    """Bytes this process can still get: MemAvailable of /proc/meminfo, lowered to the room left under a cgroup
    memory limit (containers); elsewhere the physical memory (os.sysconf); None when nothing says."""
    found = [n for n in (_meminfo_available(), _cgroup_room()) if n is not None]
    if found:
        return min(found)
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def _meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024  # the file says kB and means KiB
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_room() -> int | None:
    """limit − usage + reclaimable page cache, for cgroup v2 or v1; None without a limit."""
    for limit_file, usage_file, cache_key in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current", "inactive_file"),
        (
            "/sys/fs/cgroup/memory/memory.limit_in_bytes",
            "/sys/fs/cgroup/memory/memory.usage_in_bytes",
            "total_inactive_file",
        ),
    ):
        try:
            limit = Path(limit_file).read_text().strip()
            if limit == "max" or int(limit) >= 2**60:  # v1 writes 'no limit' as a number near 2⁶³
                return None
            usage = int(Path(usage_file).read_text())
            stat = Path(limit_file).with_name(Path(limit_file).name.split(".")[0] + ".stat").read_text().split()
            cache = dict(zip(stat[::2], stat[1::2], strict=False)).get(cache_key, "0")
            return max(0, int(limit) - usage + int(cache))
        except (OSError, ValueError):
            continue
    return None


def check_training_memory(
    spec: NetSpec | ShapeReport, batch_size: int, available: int | None = None, name: str | None = None
) -> MemoryEstimate:
    """Refuse training that cannot fit: SpecError when the estimate exceeds `available` bytes (default: what
    `available_memory()` finds; no check when nothing is known). Returns the estimate.

    The one-line message names the network, the batch size, the bytes needed and available, the layer that needs
    the most (index, name and what it is) and the largest batch size that would fit.
    """
    report = spec if isinstance(spec, ShapeReport) else infer(spec)
    name = name or (spec.name if isinstance(spec, NetSpec) else "the network")
    estimate = training_memory(report, batch_size)
    available = available_memory() if available is None else available
    if available is None or estimate.total <= available:
        return estimate
    raise SpecError(refusal(estimate, available, name), layer=estimate.largest.index)


def refusal(estimate: MemoryEstimate, available: int, name: str) -> str:
    """'bigact: training at batch size 128 needs 74.8 GiB (…), 21.0 GiB available; …' (one line)."""
    top = estimate.largest
    fits = estimate.largest_batch(available)
    advice = f"the largest batch size that fits is {fits:,}" if fits else "not even one image fits"
    return (
        f"{name}: training at batch size {estimate.batch_size:,} needs {human_bytes(estimate.total)} "
        f"({estimate.text()}), {human_bytes(available)} available; layer {top.index} ({top.name}: {top.label}) "
        f"needs the most ({human_bytes(FLOAT_BYTES * math.prod(top.output_shape))} of output per image, "
        f"{top.params:,} parameters); {advice}"
    )
