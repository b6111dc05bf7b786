"""RLAIF: the policy's responses labeled by an AI judge following a constitution -> preference pairs for DPO
(`trl_ext.stages.rlaif`; the judge is audited on held-out human pairs first, when the data has them).

    python recipes/rlaif.py [model=tiny] [constitution=anthropic_rl] [sampling.n=4] [max_prompts=32]
    python recipes/rlaif.py judge.source=pretrained judge.path=Qwen/Qwen2.5-1.5B-Instruct   # a bigger judge
    python recipes/pipeline.py pipeline=sft_rlaif_dpo                                           # SFT -> RLAIF -> DPO
"""

import hydra
from omegaconf import DictConfig

from trl_ext.cli import report_user_errors, run_dir
from trl_ext.stages import rlaif


@hydra.main(version_base="1.3", config_path="../conf", config_name="rlaif")
@report_user_errors
def main(cfg: DictConfig) -> None:
    print(f"RLAIF preference pairs: {rlaif.run(cfg, run_dir()).path}")


if __name__ == "__main__":
    main()
