"""trl_ext: extensions to TRL for preference alignment (PPO on current TRL, lean DPO, best-of-N, RLAIF labels,
length control, KL estimators), plus the data, model and evaluation helpers the recipes use.

The main classes are importable from here; each is loaded on first use, so `import trl_ext` stays cheap.
"""

import importlib

_EXPORTS = {
    "PPOConfig": "trl_ext.ppo",
    "PPOTrainer": "trl_ext.ppo",
    "LeanDPOTrainer": "trl_ext.dpo",
    "LengthRegularizedDPOTrainer": "trl_ext.dpo",
    "BestOfNSampler": "trl_ext.sampling",
    "Constitution": "trl_ext.rlaif",
    "ConstitutionalLabeler": "trl_ext.rlaif",
    "LengthControlledReward": "trl_ext.rewards",
    "RewardModelScorer": "trl_ext.rewards",
    "make_kl_controller": "trl_ext.kl",
    "load_preferences": "trl_ext.data",
    "load_prompts": "trl_ext.data",
    "load_policy": "trl_ext.models",
    "load_reward_model": "trl_ext.models",
    "load_tokenizer": "trl_ext.models",
    "resolve_model_path": "trl_ext.models",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'trl_ext' has no attribute {name!r}")
