"""Device and precision choices, made once for the user (CPU laptop by default, GPUs when present)."""

from __future__ import annotations

import functools
from typing import Any

import torch


@functools.cache
def cpu_supports_bf16() -> bool:
    """True when the CPU has native bf16 instructions (AVX512-BF16 or AMX), where bf16 autocast is faster."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:  # not Linux: autocast still works, but we do not know that it helps
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def model_dtype() -> torch.dtype:
    """Weights' dtype for loading: bf16 on a CUDA device that supports it, float32 elsewhere."""
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def fill_precision(trainer_kwargs: dict[str, Any]) -> dict[str, Any]:
    """Fill `use_cpu` and `bf16` in a TRL config's kwargs when the user left them unset (None).

    TRL 1.16 defaults to bf16 and refuses to start without CUDA unless `use_cpu=True`. We pick: no CUDA -> `use_cpu`;
    bf16 autocast (float32 master weights) where the hardware runs it natively, on GPU or CPU.
    """
    kwargs = dict(trainer_kwargs)
    if kwargs.get("use_cpu") is None:
        kwargs["use_cpu"] = not torch.cuda.is_available()
    if kwargs.get("bf16") is None and not kwargs.get("fp16"):
        if kwargs["use_cpu"]:
            kwargs["bf16"] = cpu_supports_bf16()
        else:
            kwargs["bf16"] = torch.cuda.is_bf16_supported()
    return kwargs
