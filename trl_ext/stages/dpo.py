"""DPO stage: TRL's DPOTrainer made lean (`trl_ext.dpo.LeanDPOTrainer`: chunked log-probs of the completion tokens,
packed batches; R-DPO with `rdpo_alpha`). The reference is the starting model (with LoRA: the same weights with the
adapters disabled, so no second copy is held)."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from trl_ext._compat import DPOConfig
from trl_ext.config import peft_config, to_dict, trainer_config
from trl_ext.dpo import LeanDPOTrainer
from trl_ext.models import load_policy
from trl_ext.stages.lifecycle import POLICY, StageOutput
from trl_ext.stages.training import train_stage


def build_trainer(cfg: DictConfig, path: str, tokenizer, data, work_dir: Path) -> LeanDPOTrainer:
    return LeanDPOTrainer(
        model=load_policy(path, tokenizer, trust_remote_code=cfg.model.trust_remote_code),
        args=trainer_config(DPOConfig, cfg.trainer, work_dir),
        train_dataset=data["train"],
        eval_dataset=data["eval"],
        processing_class=tokenizer,
        peft_config=peft_config(cfg.peft),
        rdpo_alpha=cfg.get("rdpo_alpha", 0.0),
        **to_dict(cfg.get("lean")),
    )


def run(cfg: DictConfig, run_dir: str | Path, name: str = "dpo") -> StageOutput:
    return train_stage(cfg, run_dir, name, build_trainer, POLICY)
