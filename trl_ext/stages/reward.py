"""Reward-model stage: a Bradley-Terry reward model from preference pairs (TRL's RewardTrainer; a one-label
sequence classifier)."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from trl_ext._compat import RewardConfig, RewardTrainer
from trl_ext.models import load_reward_model
from trl_ext.stages.lifecycle import REWARD_MODEL, StageOutput
from trl_ext.stages.training import train_stage, trl_trainer


def build_trainer(cfg: DictConfig, path: str, tokenizer, data, work_dir: Path) -> RewardTrainer:
    model = load_reward_model(path, tokenizer, trust_remote_code=cfg.model.trust_remote_code)
    return trl_trainer(RewardTrainer, RewardConfig, cfg, model, tokenizer, data, work_dir, task_type="SEQ_CLS")


def run(cfg: DictConfig, run_dir: str | Path, name: str = "reward") -> StageOutput:
    return train_stage(cfg, run_dir, name, build_trainer, REWARD_MODEL)
