#!/usr/bin/env bash
# The test suite, from a fresh clone: set up .venv, then pytest (GPU tests skip themselves without CUDA).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest -q "$@"
