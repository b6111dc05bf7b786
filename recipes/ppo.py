"""PPO (actor, critic, reward model, reference) with a KL penalty, on current TRL/transformers: trl_ext.ppo.

python recipes/ppo.py reward_model=outputs/reward/smollm2_demo/reward [trainer.kl_coef=0.1] [peft=none]
python recipes/pipeline.py pipeline=sft_rm_ppo
"""

from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from trl_ext.distributed import full_weights
from trl_ext.errors import report_user_errors
from trl_ext.models import load_policy, load_reward_model, load_tokenizer
from trl_ext.ppo import PPOConfig, PPOTrainer
from trl_ext.training import peft_config, run_stage, trainer_config


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
        reward_model=reward_model,
        reward_processing_class=reward_tokenizer,
        value_model=value_model,
        peft_config=peft_config(cfg.peft),
    )


def run(cfg: DictConfig, run_dir: str | Path, name: str = "ppo") -> Path:
    return run_stage(cfg, run_dir, name, build_trainer, prompts_only=True)


@hydra.main(version_base="1.3", config_path="../conf", config_name="ppo")
@report_user_errors
def main(cfg: DictConfig) -> None:
    print(f"PPO policy: {run(cfg, HydraConfig.get().runtime.output_dir)}")


if __name__ == "__main__":
    main()
