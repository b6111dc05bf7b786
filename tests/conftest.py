"""Shared fixtures: the tiny model (built in-process, cached), paths to the repo and to ../shared data."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
HH_FILE = SHARED_DATA / "hh-rlhf" / "harmless-base-test.shared.jsonl.gz"
needs_hh = pytest.mark.skipif(not HH_FILE.exists(), reason=f"shared HH-RLHF data not found at {HH_FILE}")
# The scorecard's prompts in a test run: the 8 that +debug=default uses (the default, XSTest, lives in ../shared).
DEBUG_PROMPTS = REPO / "conf" / "debug" / "scorecard_prompts.csv"


def pytest_collection_modifyitems(config, items):
    import torch

    if not torch.cuda.is_available():
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(pytest.mark.skip(reason="needs a CUDA device"))


@pytest.fixture(scope="session")
def tiny_path() -> str:
    from trl_ext.models import resolve_model_path

    return resolve_model_path("tiny")


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_path):
    from trl_ext.models import load_tokenizer

    return load_tokenizer(tiny_path)


@pytest.fixture
def tiny_model(tiny_path, tiny_tokenizer):
    from trl_ext.models import load_policy

    return load_policy(tiny_path, tiny_tokenizer)


def run_cmd(args: list[str], cwd: Path = REPO, timeout: int = 600, env: dict | None = None):
    """Run a command (a recipe) in a subprocess; on failure show its output in the assertion."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=full_env)
    assert proc.returncode == 0, (
        f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    )
    return proc


def recipe(name: str, *overrides: str, **kw):
    return run_cmd([sys.executable, f"recipes/{name}.py", *overrides], **kw)


def compose(name: str, *overrides: str, hydra: bool = False):
    """The real config `conf/<name>.yaml` composed with `overrides`, as Hydra would for the recipe."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        return hydra_compose(name, overrides=list(overrides), return_hydra_config=hydra)


def cpu_args(tmp_path, **overrides) -> dict:
    """The keyword arguments every trainer config in the tests shares: output in tmp_path, CPU, float32, no
    integrations, plus `overrides`."""
    return {"output_dir": str(tmp_path), "use_cpu": True, "bf16": False, "report_to": "none", **overrides}
