"""A Bradley-Terry reward model from preference pairs (TRL RewardTrainer; a one-label sequence classifier):
`trl_ext.stages.reward`.

    python recipes/reward.py [model=tiny] [peft=none] [trainer.num_train_epochs=1]
"""

import hydra
from omegaconf import DictConfig

from trl_ext.cli import report_user_errors, run_dir
from trl_ext.stages import reward


@hydra.main(version_base="1.3", config_path="../conf", config_name="reward")
@report_user_errors
def main(cfg: DictConfig) -> None:
    print(f"Reward model: {reward.run(cfg, run_dir()).path}")


if __name__ == "__main__":
    main()
