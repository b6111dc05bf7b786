"""SFT stage: supervised fine-tuning on the chosen responses of preference pairs (TRL's SFTTrainer)."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from trl_ext._compat import SFTConfig, SFTTrainer
from trl_ext.data import chosen_as_completions
from trl_ext.models import load_policy
from trl_ext.stages.lifecycle import POLICY, StageOutput
from trl_ext.stages.training import train_stage, trl_trainer


def build_trainer(cfg: DictConfig, path: str, tokenizer, data, work_dir: Path) -> SFTTrainer:
    model = load_policy(path, tokenizer, trust_remote_code=cfg.model.trust_remote_code)
    completions = {split: chosen_as_completions(rows) for split, rows in data.items()}
    return trl_trainer(SFTTrainer, SFTConfig, cfg, model, tokenizer, completions, work_dir)


def run(cfg: DictConfig, run_dir: str | Path, name: str = "sft") -> StageOutput:
    return train_stage(cfg, run_dir, name, build_trainer, POLICY)
