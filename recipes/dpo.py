"""Direct preference optimisation (TRL's DPOTrainer made lean by trl_ext.dpo.LeanDPOTrainer): `trl_ext.stages.dpo`.
The reference is the starting model (with LoRA: the same weights with the adapters disabled).

    python recipes/dpo.py [model=tiny] [trainer.beta=0.2] [trainer.loss_type=[ipo]] [peft=none]
    python recipes/dpo.py rdpo_alpha=0.01      # R-DPO: length-regularised margin (TRL's LD-DPO: trainer.ld_alpha)
    python recipes/dpo.py lean=off trainer.train_sampling_strategy=random   # TRL's own computation
    accelerate launch --config_file conf/accelerate/cpu.yaml recipes/dpo.py model=tiny
"""

import hydra
from omegaconf import DictConfig

from trl_ext.cli import report_user_errors, run_dir
from trl_ext.stages import dpo


@hydra.main(version_base="1.3", config_path="../conf", config_name="dpo")
@report_user_errors
def main(cfg: DictConfig) -> None:
    print(f"DPO model: {dpo.run(cfg, run_dir()).path}")


if __name__ == "__main__":
    main()
