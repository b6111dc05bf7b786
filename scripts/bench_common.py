"""What the benchmark scripts share: run one configuration in its own process (so its peak memory is its own),
measure this machine's matmul peak, and append a dated section to docs/benchmarks.md."""

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


def matmul_peak_flops(dtype_name: str = "float32", size: int = 2048, repeats: int = 5) -> float:
    """This machine's measured dense matmul rate (best of `repeats` square matmuls), in FLOP/s."""
    import torch

    dtype = getattr(torch, dtype_name)
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    a @ b  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def append_section(text: str) -> None:
    print(text)
    with open(REPO / "docs" / "benchmarks.md", "a") as f:
        f.write("\n" + text.rstrip() + "\n")
