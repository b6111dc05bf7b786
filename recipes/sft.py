"""Supervised fine-tuning on the chosen responses of preference pairs (TRL SFTTrainer): `trl_ext.stages.sft`.

python recipes/sft.py [model=tiny] [data=hh_rlhf data.path=...] [peft=none] [trainer.max_steps=10]
"""

import hydra
from omegaconf import DictConfig

from trl_ext.cli import report_user_errors, run_dir
from trl_ext.stages import sft


@hydra.main(version_base="1.3", config_path="../conf", config_name="sft")
@report_user_errors
def main(cfg: DictConfig) -> None:
    print(f"SFT model: {sft.run(cfg, run_dir()).path}")


if __name__ == "__main__":
    main()
