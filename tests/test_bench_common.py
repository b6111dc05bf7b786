"""scripts/bench_common.py: the machine line every benchmark section carries, and the bounded matmul peak."""

import itertools

import pytest
import torch
import transformers
import trl

from tests.conftest import REPO
from trl_ext.utils.device import describe_machine


@pytest.fixture
def bench(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "scripts"))
    import bench_common

    return bench_common


def test_machine_line_names_the_machine_its_precision_peaks_and_versions(bench):
    line = bench.machine_line({"float32": 103e9, "bfloat16": 1.1e9})
    assert line == (
        f"Machine: {describe_machine()}; matmul peak 103 GFLOP/s float32, 1 GFLOP/s bfloat16; torch "
        f"{torch.__version__}, transformers {transformers.__version__}, trl {trl.__version__}."
    )


def test_matmul_peak_stops_repeating_past_its_time_budget(bench, monkeypatch):
    clock = itertools.count()  # every reading one second later: each timed matmul "takes" 1 s
    readings = []
    monkeypatch.setattr(bench.time, "perf_counter", lambda: readings.append(1) or float(next(clock)))
    flops = bench.matmul_peak_flops("float32", size=64, repeats=10, budget_s=2.5)
    assert len(readings) == 6  # three timed matmuls (start and end each): 3 s spent > 2.5 s, not ten
    assert flops == 2 * 64**3
