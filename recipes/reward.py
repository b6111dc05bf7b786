"""A Bradley-Terry reward model from preference pairs (TRL RewardTrainer; a one-label sequence classifier).

python recipes/reward.py [model=tiny] [peft=none] [trainer.num_train_epochs=1]
"""

from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from trl_ext._compat import RewardConfig, RewardTrainer
from trl_ext.errors import report_user_errors
from trl_ext.models import load_reward_model
from trl_ext.training import peft_config, run_stage, trainer_config


def build_trainer(cfg: DictConfig, path: str, tokenizer, data, work_dir: Path) -> RewardTrainer:
    return RewardTrainer(
        model=load_reward_model(path, tokenizer, trust_remote_code=cfg.model.trust_remote_code),
        args=trainer_config(RewardConfig, cfg.trainer, work_dir),
        train_dataset=data["train"],
        eval_dataset=data["eval"],
        processing_class=tokenizer,
        peft_config=peft_config(cfg.peft, task_type="SEQ_CLS"),
    )


def run(cfg: DictConfig, run_dir: str | Path, name: str = "reward") -> Path:
    return run_stage(cfg, run_dir, name, build_trainer)


@hydra.main(version_base="1.3", config_path="../conf", config_name="reward")
@report_user_errors
def main(cfg: DictConfig) -> None:
    print(f"Reward model: {run(cfg, HydraConfig.get().runtime.output_dir)}")


if __name__ == "__main__":
    main()
