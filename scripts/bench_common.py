"""What the benchmark scripts share: run one configuration in its own process (so its peak memory is its own),
name the machine and measure its matmul peak, and append a dated section to docs/benchmarks.md.

`python scripts/bench_common.py` prints the machine line the benchmarks write."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_worker(script: str, name: str, *args: str, python: str = sys.executable) -> dict:
    """Run `python script --worker name *args` in a fresh process; it prints one JSON line last."""
    out = subprocess.run(
        [python, script, "--worker", name, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    if out.returncode != 0:
        raise RuntimeError(f"worker {name} failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def peak_rss_gib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux reports KiB


def matmul_peak_flops(dtype_name: str = "float32", size: int = 2048, repeats: int = 5, budget_s: float = 5.0) -> float:
    """This machine's measured dense matmul rate (best of up to `repeats` square matmuls, fewer where they would take
    longer than `budget_s`: bfloat16 without native support runs about 100x slower than float32), in FLOP/s."""
    import torch

    dtype = getattr(torch, dtype_name)
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    a @ b  # warm-up
    best, spent = float("inf"), 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        took = time.perf_counter() - start
        best, spent = min(best, took), spent + took
        if spent > budget_s:
            break
    return 2 * size**3 / best


def machine_line(peaks: dict[str, float] | None = None) -> str:
    """`Machine: ...` for a benchmark's section: the CPU or GPU, threads, whether the recipes train in bf16 there,
    matmul peaks (FLOP/s by dtype name; measured here when not given: timings from different machines compare only
    through these), and the library versions."""
    import torch
    import transformers
    import trl

    from trl_ext.utils.device import describe_machine

    peaks = peaks or {name: matmul_peak_flops(name, size=1024) for name in ("float32", "bfloat16")}
    return (
        f"Machine: {describe_machine()}; matmul peak {peaks['float32'] / 1e9:.0f} GFLOP/s float32, "
        f"{peaks['bfloat16'] / 1e9:.0f} GFLOP/s bfloat16; torch {torch.__version__}, transformers "
        f"{transformers.__version__}, trl {trl.__version__}."
    )


def append_section(text: str) -> None:
    print(text)
    with open(REPO / "docs" / "benchmarks.md", "a") as f:
        f.write("\n" + text.rstrip() + "\n")


if __name__ == "__main__":
    print(machine_line())
