"""Evaluation stage: saved models (policies or reward models) against the reference policy on the eval split of the
preference data; `report.md`, `metrics.json` and plots in the run folder. Only the main process works."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from omegaconf import DictConfig

from trl_ext.config import node_kwargs, to_dict
from trl_ext.data import load_preferences
from trl_ext.distributed import full_weights, process_state
from trl_ext.eval import evaluate_models, write_report
from trl_ext.models import model_path
from trl_ext.stages.folder import TRAINER_STATE_NAME


def log_history(path: str | Path) -> list[dict] | None:
    """The log history a training stage saved with its model (None for models saved elsewhere)."""
    state = Path(path) / TRAINER_STATE_NAME
    return json.loads(state.read_text())["log_history"] if state.exists() else None


def run(
    cfg: DictConfig,
    run_dir: str | Path,
    models: Mapping[str, str | Path],
    title: str = "Evaluation",
    sections: Sequence[str] = (),
) -> Path:
    """Evaluate `models` (name -> folder) against the reference `cfg.model`; return the report's path.
    `sections`: more markdown lines for the report (the pipeline's AI-feedback stages)."""
    report = Path(run_dir) / "report.md"
    state = process_state()
    if state.is_main_process:
        data, data_report = load_preferences(**node_kwargs(cfg.data))
        models = {name: str(path) for name, path in models.items()}
        with full_weights():  # whole models on this one process, even after a ZeRO-3 stage in the same run
            evaluation = evaluate_models(models, model_path(cfg.model), data["eval"], **to_dict(cfg.evaluation))
        histories = {name: h for name, path in models.items() if (h := log_history(path)) is not None}
        notes = [
            f"Data: {data_report.source}: {data_report.kept} of {data_report.rows} rows usable "
            f"({len(data['train'])} train / {len(data['eval'])} eval); reference: {model_path(cfg.model)}."
        ]
        write_report(run_dir, evaluation, histories, title=title, notes=notes, sections=sections)
        print(report.read_text())
    state.wait_for_everyone()
    return report
