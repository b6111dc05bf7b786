"""Direct preference optimisation (TRL's DPOTrainer, extended by trl_ext.dpo.LeanDPOTrainer: chunked log-probs of the
completion tokens, packed batches); the reference is the starting model (with LoRA: the same weights with the
adapters disabled, so no second copy is held).

    python recipes/dpo.py [model=tiny] [trainer.beta=0.2] [trainer.loss_type=[ipo]] [peft=none]
    python recipes/dpo.py rdpo_alpha=0.01      # R-DPO: length-regularised margin (TRL's LD-DPO: trainer.ld_alpha)
    python recipes/dpo.py lean=off trainer.train_sampling_strategy=random   # TRL's own computation
    accelerate launch --config_file conf/accelerate/cpu.yaml recipes/dpo.py model=tiny
"""

from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from trl_ext._compat import DPOConfig
from trl_ext.dpo import LeanDPOTrainer
from trl_ext.errors import report_user_errors
from trl_ext.models import load_policy
from trl_ext.training import peft_config, run_stage, trainer_config


def build_trainer(cfg: DictConfig, path: str, tokenizer, data, work_dir: Path) -> LeanDPOTrainer:
    return LeanDPOTrainer(
        model=load_policy(path, tokenizer, trust_remote_code=cfg.model.trust_remote_code),
        args=trainer_config(DPOConfig, cfg.trainer, work_dir),
        train_dataset=data["train"],
        eval_dataset=data["eval"],
        processing_class=tokenizer,
        peft_config=peft_config(cfg.peft),
        rdpo_alpha=cfg.get("rdpo_alpha", 0.0),
        **cfg.get("lean", {}),
    )


def run(cfg: DictConfig, run_dir: str | Path, name: str = "dpo") -> Path:
    return run_stage(cfg, run_dir, name, build_trainer)


@hydra.main(version_base="1.3", config_path="../conf", config_name="dpo")
@report_user_errors
def main(cfg: DictConfig) -> None:
    print(f"DPO model: {run(cfg, HydraConfig.get().runtime.output_dir)}")


if __name__ == "__main__":
    main()
