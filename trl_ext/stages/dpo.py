"""DPO stage: TRL's DPOTrainer made lean (`trl_ext.dpo.LeanDPOTrainer`: chunked log-probs of the completion tokens,
packed batches; R-DPO with `rdpo_alpha`). The reference is the starting model (with LoRA: the same weights with the
adapters disabled, so no second copy is held)."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from trl_ext._compat import DPOConfig
from trl_ext.config import to_dict
from trl_ext.dpo import LeanDPOTrainer
from trl_ext.models import load_policy
from trl_ext.stages.lifecycle import POLICY, StageOutput
from trl_ext.stages.training import train_stage, trl_trainer


def build_trainer(cfg: DictConfig, path: str, tokenizer, data, work_dir: Path) -> LeanDPOTrainer:
    model = load_policy(path, tokenizer, trust_remote_code=cfg.model.trust_remote_code)
    lean = {"rdpo_alpha": cfg.get("rdpo_alpha", 0.0), **to_dict(cfg.get("lean"))}
    return trl_trainer(LeanDPOTrainer, DPOConfig, cfg, model, tokenizer, data, work_dir, **lean)


def run(cfg: DictConfig, run_dir: str | Path, name: str = "dpo") -> StageOutput:
    return train_stage(cfg, run_dir, name, build_trainer, POLICY)
