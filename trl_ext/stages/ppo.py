"""PPO stage: actor, critic, reward model and reference with a KL penalty (`trl_ext.ppo.PPOTrainer`), on the prompts
of the data, against `cfg.reward_model` (a folder or hub id)."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from trl_ext.config import peft_config, trainer_config
from trl_ext.distributed import full_weights
from trl_ext.models import load_policy, load_reward_model, load_tokenizer
from trl_ext.ppo import PPOConfig, PPOTrainer
from trl_ext.stages.lifecycle import POLICY, StageOutput
from trl_ext.stages.training import train_stage


def build_trainer(cfg: DictConfig, path: str, tokenizer, data, work_dir: Path) -> PPOTrainer:
    remote = cfg.model.trust_remote_code
    reward_tokenizer = load_tokenizer(cfg.reward_model, trust_remote_code=remote)
    with full_weights():  # loaded whole, then sharded by the trainer's DeepSpeed engine (also after a ZeRO-3 stage)
        reward_model = load_reward_model(cfg.reward_model, reward_tokenizer, trust_remote_code=remote)
        value_model = load_reward_model(cfg.value_model, tokenizer) if cfg.get("value_model") else None
        policy = load_policy(path, tokenizer, trust_remote_code=remote)
    return PPOTrainer(
        model=policy,
        args=trainer_config(PPOConfig, cfg.trainer, work_dir),
        processing_class=tokenizer,
        train_dataset=data["train"],
        eval_dataset=data["eval"],  # evaluated at trainer.eval_strategy, and once at the end of the stage
        reward_model=reward_model,
        reward_processing_class=reward_tokenizer,
        value_model=value_model,
        peft_config=peft_config(cfg.peft, model=policy),
    )


def run(cfg: DictConfig, run_dir: str | Path, name: str = "ppo") -> StageOutput:
    return train_stage(cfg, run_dir, name, build_trainer, POLICY, prompts_only=True)
