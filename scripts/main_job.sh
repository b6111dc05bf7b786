#!/usr/bin/env bash
# The main job, from a fresh clone: set up .venv, then SFT -> DPO -> evaluation on the embedded SmolLM2-135M with
# the shipped demo preference pairs. Extra arguments are Hydra overrides, e.g. `bash scripts/main_job.sh model=tiny`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python recipes/pipeline.py "$@"
