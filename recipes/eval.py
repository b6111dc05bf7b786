"""Evaluate saved models (policies or reward models) on the eval split of preference data; write report.md.

python recipes/eval.py +models.dpo=outputs/pipeline/smollm2_demo/dpo [data=...] [model=...: the reference]
"""

import json
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from trl_ext.data import load_preferences
from trl_ext.distributed import full_weights, process_state
from trl_ext.errors import report_user_errors
from trl_ext.eval import evaluate_models, write_report
from trl_ext.models import model_path
from trl_ext.training import node_kwargs, to_dict


def run(cfg: DictConfig, run_dir: str | Path, models: dict[str, str], title: str = "Evaluation", sections=()) -> Path:
    """Evaluate `models` (name -> folder) against the reference `cfg.model`; only the main process works.
    `sections`: more markdown lines for the report (the pipeline's AI-feedback stages)."""
    report = Path(run_dir) / "report.md"
    state = process_state()
    if state.is_main_process:
        data, data_report = load_preferences(**node_kwargs(cfg.data))
        with full_weights():  # whole models on this one process, even after a ZeRO-3 stage in the same run
            evaluation = evaluate_models(models, model_path(cfg.model), data["eval"], **to_dict(cfg.evaluation))
        histories = {
            name: json.loads((Path(path) / "log_history.json").read_text())
            for name, path in models.items()
            if (Path(path) / "log_history.json").exists()
        }
        notes = [
            f"Data: {data_report.source}: {data_report.kept} of {data_report.rows} rows usable "
            f"({len(data['train'])} train / {len(data['eval'])} eval); reference: {model_path(cfg.model)}."
        ]
        write_report(run_dir, evaluation, histories, title=title, notes=notes, sections=sections)
        print((Path(run_dir) / "report.md").read_text())
    state.wait_for_everyone()
    return report


@hydra.main(version_base="1.3", config_path="../conf", config_name="eval")
@report_user_errors
def main(cfg: DictConfig) -> None:
    print(f"Report: {run(cfg, HydraConfig.get().runtime.output_dir, to_dict(cfg.models))}")


if __name__ == "__main__":
    main()
