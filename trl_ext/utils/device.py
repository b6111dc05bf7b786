"""Device and precision choices, made once for the user (CPU laptop by default, GPUs when present)."""

from __future__ import annotations

import functools
import logging
import platform
from typing import Any

import torch

logger = logging.getLogger(__name__)


@functools.cache
def _cpuinfo() -> str:
    """/proc/cpuinfo, read once; empty where there is none (not Linux)."""
    try:
        with open("/proc/cpuinfo") as f:
            return f.read()
    except OSError:
        return ""


def cpu_supports_bf16() -> bool:
    """True when the CPU has native bf16 instructions (AVX512-BF16 or AMX), where bf16 autocast is faster.
    Without /proc/cpuinfo, False: autocast still works, but we do not know that it helps."""
    flags = _cpuinfo()
    return "avx512_bf16" in flags or "amx_bf16" in flags


def cpu_name() -> str:
    """The CPU's model name (/proc/cpuinfo), or what `platform` knows where there is none."""
    for line in _cpuinfo().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def describe_machine() -> str:
    """What sets a run's speed, in one line: the GPU or the CPU, threads, and the precision the recipes pick there.

    A CPU without native bf16 trains in float32: the same recipe then takes several times as long as on one with
    AMX (docs/benchmarks.md measures both), so every timing should be read beside this line.
    """
    if torch.cuda.is_available():
        gpus = torch.cuda.device_count()
        bf16 = "bf16" if torch.cuda.is_bf16_supported() else "float32/fp16"
        return f"{torch.cuda.get_device_name(0)} x{gpus}, {bf16}; CPU {cpu_name()}"
    precision = "yes (bf16 autocast)" if cpu_supports_bf16() else "no (float32)"
    return f"{cpu_name()}, {torch.get_num_threads()} threads, native bf16: {precision}"


@functools.cache
def _say_float32_on_cpu() -> None:
    """Once per process: why a CPU run trains in float32, and what that costs."""
    logger.info(
        "This CPU (%s) has no native bf16 (AVX512-BF16 or AMX): training in float32 (bf16 autocast would be slower "
        "still here); a CPU with it runs the same steps several times faster.",
        cpu_name(),
    )


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
            if not kwargs["bf16"]:
                _say_float32_on_cpu()
        else:
            kwargs["bf16"] = torch.cuda.is_bf16_supported()
    return kwargs
