"""PPO (actor, critic, reward model, reference) with a KL penalty, on current TRL/transformers: `trl_ext.stages.ppo`.

python recipes/ppo.py reward_model=outputs/reward/smollm2_demo/reward [trainer.kl_coef=0.1] [peft=none]
python recipes/pipeline.py pipeline=sft_rm_ppo
"""

import hydra
from omegaconf import DictConfig

from trl_ext.cli import report_user_errors, run_dir
from trl_ext.stages import ppo


@hydra.main(version_base="1.3", config_path="../conf", config_name="ppo")
@report_user_errors
def main(cfg: DictConfig) -> None:
    print(f"PPO policy: {ppo.run(cfg, run_dir()).path}")


if __name__ == "__main__":
    main()
