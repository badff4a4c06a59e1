"""Where tensors live and in what precision the forward pass runs: one device for a training or an inference command.

The device is a parameter (TrainConfig.device, `--device`), never a global: the trainer and the inference functions
move the model, the batches and the targets to it, and bring results back with `.cpu()` before NumPy sees them.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import re

import torch

from convscope.errors import ConfigError

log = logging.getLogger("convscope.device")


def resolve_device(name: str = "auto") -> torch.device:
    """The torch.device for `name`: auto (the first CUDA GPU when there is one, else Apple's MPS when there is one,
    else the CPU), cpu, cuda, cuda:N or mps.

    Raises ConfigError for another name, and when the device asked for is not there (no CUDA build or GPU, an
    index past the GPU count, no MPS), naming what this machine has instead.
    """
    if not isinstance(name, str) or not re.fullmatch(r"auto|cpu|mps|cuda(:\d{1,3})?", name):
        raise ConfigError(f"device must be auto, cpu, cuda, cuda:N or mps. Received: {str(name)[:40]!r}")
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", 0)
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ConfigError(f"device {name}: no CUDA GPU here (this machine has: {available_devices()})")
        if (device.index or 0) >= count:
            raise ConfigError(f"device {name}: this machine has {count} CUDA GPU(s), cuda:0 to cuda:{count - 1}")
        return torch.device("cuda", device.index or 0)
    if device.type == "mps" and not _mps_available():
        raise ConfigError(f"device mps: Apple's MPS is not available here (this machine has: {available_devices()})")
    return device


def available_devices() -> str:
    """'cpu', 'cpu, cuda:0, cuda:1' …: the devices this machine offers, for messages."""
    names = ["cpu"]
    if torch.cuda.is_available():
        names += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if _mps_available():
        names.append("mps")
    return ", ".join(names)


def device_line(device: torch.device) -> str:
    """'device cuda:0 (NVIDIA H200)', 'device mps', or '' for the CPU (what training runs on unless said)."""
    if device.type == "cuda":
        return f"device {device} ({torch.cuda.get_device_name(device)})"
    return "" if device.type == "cpu" else f"device {device}"


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())


def autocast_dtype(device: torch.device, precision: str) -> torch.dtype | None:
    """The dtype of the autocast forward pass, or None for float32.

    CPU: bf16 when asked, or with `auto` on CPUs that multiply bf16 natively (cpu_has_fast_bf16). CUDA: `bf16` is
    bf16; `auto` is bf16 on GPUs that support it (Ampere and later) and fp16 on older ones, where fp16 needs a
    GradScaler (see `needs_grad_scaler`). MPS: float32 (its autocast covers few operations).
    """
    if precision == "fp32" or device.type == "mps":
        return None
    if device.type == "cuda":
        if precision == "bf16" or torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float16
    return torch.bfloat16 if precision == "bf16" or cpu_has_fast_bf16() else None


def needs_grad_scaler(device: torch.device, precision: str) -> bool:
    """fp16 gradients underflow without loss scaling (torch.amp.GradScaler); bf16 has float32's range and needs none."""
    return autocast_dtype(device, precision) == torch.float16


def autocast(device: torch.device, precision: str):
    """The autocast context of the forward pass (a null context for float32)."""
    dtype = autocast_dtype(device, precision)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def precision_line(device: torch.device, precision: str) -> str:
    """'precision auto: bf16 on cuda:0', '…: fp16 on cuda:0 (with loss scaling)', or '' when precision is not auto
    and on the CPU (where the trainer measures which is faster: training/autotune.py, and says so itself)."""
    if precision != "auto" or device.type == "cpu":
        return ""
    dtype = autocast_dtype(device, precision)
    shown = {torch.bfloat16: "bf16", torch.float16: "fp16 (with loss scaling)", None: "fp32"}[dtype]
    return f"precision auto: {shown} on {device}"


@functools.cache
def cpu_has_fast_bf16() -> bool:
    """True when the CPU multiplies bfloat16 natively (AMX or AVX512-BF16, read from Linux's /proc/cpuinfo), where
    bf16 convolutions run 1.6–2.4× faster than fp32 (measured on cifar-fast here: 1.8×). Elsewhere oneDNN emulates
    bf16 and it is slower, so False; also False where /proc/cpuinfo cannot be read (not Linux)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            flags = next((line.split(":", 1)[1].split() for line in info if line.startswith("flags")), [])
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags
