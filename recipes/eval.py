"""Evaluate saved models (policies or reward models) on the eval split of preference data; write report.md
(`trl_ext.stages.evaluation`).

    python recipes/eval.py +models.dpo=outputs/pipeline/smollm2_demo/dpo [data=...] [model=...: the reference]
"""

import hydra
from omegaconf import DictConfig

from trl_ext.cli import report_user_errors, run_dir
from trl_ext.config import to_dict
from trl_ext.stages import evaluation


@hydra.main(version_base="1.3", config_path="../conf", config_name="eval")
@report_user_errors
def main(cfg: DictConfig) -> None:
    print(f"Report: {evaluation.run(cfg, run_dir(), to_dict(cfg.models))}")


if __name__ == "__main__":
    main()
