"""Numeric precision of training and inference: autocast contexts and the ``auto`` choice.

``precision`` is one of ``fp32`` (no autocast), ``bf16`` (autocast to bfloat16, CPU or
GPU) or ``fp16`` (autocast to float16, CUDA only). :func:`auto_precision` picks
``bf16`` only where it is fast: bf16 autocast on a CPU *without* native bf16
instructions (AVX2-only machines) runs PyTorch's reference convolutions with a scalar
bf16 GEMM, tens of times slower than fp32; with AVX-512 BF16 or AMX it is about 1.5x
faster than fp32 (BENCHMARKS.md, "Pre-training throughput").
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

import torch

from mvdecor.errors import ConfigError

__all__ = ["PRECISIONS", "auto_precision", "autocast", "resolve_precision"]

#: Precisions a config may name; ``auto`` is resolved by :func:`resolve_precision`.
PRECISIONS = ("fp32", "bf16", "fp16", "auto")


def cpu_has_native_bf16(cpuinfo_path: str | Path = "/proc/cpuinfo") -> bool:
    """Whether the CPU advertises bf16 instructions (``avx512_bf16`` or ``amx_bf16``)."""
    try:
        cpuinfo = Path(cpuinfo_path).read_text()
    except OSError:
        return False
    return re.search(r"\b(avx512_bf16|amx_bf16)\b", cpuinfo) is not None


def auto_precision(device: torch.device | str | None = None) -> str:
    """``bf16`` where it is fast (a bf16-capable CUDA GPU, a CPU with native bf16), else ``fp32``."""
    device = torch.device(device) if device is not None else None
    use_cuda = device.type == "cuda" if device is not None else torch.cuda.is_available()
    if use_cuda:
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if cpu_has_native_bf16() else "fp32"


def resolve_precision(precision: str, device: torch.device | str | None = None) -> str:
    """``precision`` itself, or :func:`auto_precision` for ``"auto"``."""
    if precision not in PRECISIONS:
        raise ConfigError(None, f"unknown precision {precision!r} (one of {', '.join(PRECISIONS)})")
    return auto_precision(device) if precision == "auto" else precision


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """The autocast context of ``precision`` on ``device`` (a no-op for ``fp32``)."""
    precision = resolve_precision(precision, device)
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    if device.type != "cuda":
        raise ConfigError(None, "precision fp16 needs a CUDA device; use bf16 on the CPU")
    return torch.autocast(device_type="cuda", dtype=torch.float16)
