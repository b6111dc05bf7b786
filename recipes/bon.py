"""Best-of-N: N samples per prompt from the policy, scored by a reward model -> best responses, preference pairs and
the reward-versus-KL picture (`trl_ext.stages.bon`; prompts sharded across processes under `accelerate launch`).

    python recipes/bon.py reward_model=outputs/reward/smollm2_demo/reward [sampling.n=16] [max_prompts=32]
"""

import hydra
from omegaconf import DictConfig

from trl_ext.cli import report_user_errors, run_dir
from trl_ext.stages import bon


@hydra.main(version_base="1.3", config_path="../conf", config_name="bon")
@report_user_errors
def main(cfg: DictConfig) -> None:
    print(f"Best-of-N outputs: {bon.run(cfg, run_dir()).path}")


if __name__ == "__main__":
    main()
