"""Supervised fine-tuning on the chosen responses of preference pairs (TRL SFTTrainer).

python recipes/sft.py [model=tiny] [data=hh_rlhf data.path=...] [peft=none] [trainer.max_steps=10]
"""

from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from trl_ext._compat import SFTConfig, SFTTrainer
from trl_ext.data import chosen_as_completions
from trl_ext.errors import report_user_errors
from trl_ext.models import load_policy
from trl_ext.training import peft_config, run_stage, trainer_config


def build_trainer(cfg: DictConfig, path: str, tokenizer, data, work_dir: Path) -> SFTTrainer:
    return SFTTrainer(
        model=load_policy(path, tokenizer, trust_remote_code=cfg.model.trust_remote_code),
        args=trainer_config(SFTConfig, cfg.trainer, work_dir),
        train_dataset=chosen_as_completions(data["train"]),
        eval_dataset=chosen_as_completions(data["eval"]),
        processing_class=tokenizer,
        peft_config=peft_config(cfg.peft),
    )


def run(cfg: DictConfig, run_dir: str | Path, name: str = "sft") -> Path:
    return run_stage(cfg, run_dir, name, build_trainer)


@hydra.main(version_base="1.3", config_path="../conf", config_name="sft")
@report_user_errors
def main(cfg: DictConfig) -> None:
    print(f"SFT model: {run(cfg, HydraConfig.get().runtime.output_dir)}")


if __name__ == "__main__":
    main()
