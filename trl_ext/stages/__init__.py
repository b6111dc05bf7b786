"""Stages of a run, as library functions: `sft`, `reward`, `dpo`, `ppo`, `bon`, `rlaif` (each
`run(cfg, run_dir, name) -> StageOutput`, registered in `trl_ext.stages.registry.STAGES`), `evaluation`, and
`pipeline`, which chains them. A stage's output folder is skipped when complete, resumed when interrupted and
published atomically (`Stage`). The recipes are the Hydra entry points that call these."""

from trl_ext.exceptions import StageConfigMismatch
from trl_ext.stages.folder import MANIFEST, Stage, config_diff, config_hash
from trl_ext.stages.lifecycle import PAIRS, POLICY, REWARD_MODEL, StageOutput, run_stage

__all__ = [
    "MANIFEST",
    "PAIRS",
    "POLICY",
    "REWARD_MODEL",
    "Stage",
    "StageConfigMismatch",
    "StageOutput",
    "config_diff",
    "config_hash",
    "run_stage",
]
