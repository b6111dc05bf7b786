"""Chain stages in one run folder, each starting from the previous policy, then evaluate them all
(`trl_ext.stages.pipeline`).

    python recipes/pipeline.py                      # SFT -> DPO -> evaluation on the embedded SmolLM2
    python recipes/pipeline.py model=tiny dpo.trainer.beta=0.2
    python recipes/pipeline.py data=hh_rlhf data.path=../shared/data/hh-rlhf/harmless-base-test.shared.jsonl.gz
    python recipes/pipeline.py pipeline=sft_rlaif_dpo  # SFT -> AI-labeled pairs by a constitution -> DPO

Rerunning the same command skips complete stages and resumes an interrupted one; +force=true redoes them all.
"""

import hydra
from omegaconf import DictConfig

from trl_ext.cli import report_user_errors, run_dir
from trl_ext.stages import pipeline


@hydra.main(version_base="1.3", config_path="../conf", config_name="pipeline")
@report_user_errors
def main(cfg: DictConfig) -> None:
    print(f"Report: {pipeline.run(cfg, run_dir())}")


if __name__ == "__main__":
    main()
