"""Evaluation stage: saved models (policies or reward models) against the reference policy on the eval split of the
preference data, then the behaviour scorecard of every policy beside the reference and the reference with a system
prompt (the band-aid arm); `report.md`, `metrics.json`, `scorecard.json` and plots in the run folder. Only the main
process works."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from trl_ext.config import node_kwargs, to_dict
from trl_ext.data import load_preferences
from trl_ext.distributed import full_weights, process_state
from trl_ext.eval import (
    Arm,
    evaluate_models,
    is_reward_model,
    load_attacks,
    load_prompt_list,
    run_from_config,
    scorecard_metrics,
    scorecard_section,
    write_report,
    write_scorecard,
)
from trl_ext.exceptions import ConfigError, DataError
from trl_ext.models import load_policy, load_reward_model, load_tokenizer, model_path
from trl_ext.stages.folder import TRAINER_STATE_NAME

logger = logging.getLogger(__name__)
SCORERS = ("auto", "reward_model", "judge", "none")
BASE, BAND_AID = "base", "base + system prompt"


def log_history(path: str | Path) -> list[dict] | None:
    """The log history a training stage saved with its model (None for models saved elsewhere)."""
    state = Path(path) / TRAINER_STATE_NAME
    return json.loads(state.read_text())["log_history"] if state.exists() else None


def check_scorecard(cfg: DictConfig) -> None:
    """Load and check the scorecard's prompt list and templates, so that a bad file fails before any training."""
    node = cfg.get("scorecard")
    if not node or not node.enabled:
        return
    if node.scorer not in SCORERS:
        raise ConfigError(f"scorecard.scorer: {node.scorer!r} is not one of {SCORERS}")
    if node.scorer == "reward_model" and not node.reward_model:
        raise ConfigError("scorecard.scorer=reward_model needs scorecard.reward_model=<folder or hub id>")
    if not Path(node.prompts).exists():
        raise DataError(
            f"scorecard.prompts: {node.prompts} not found. The default is XSTest's prompt list (Röttger et al. 2024): "
            "get xstest_prompts.csv from github.com/paul-rottger/exaggerated-safety and set scorecard.prompts=<file> "
            "(or any csv/jsonl with `prompt` and `label` safe/unsafe), or run without it: scorecard.enabled=false"
        )
    load_prompt_list(node.prompts)
    load_attacks(to_dict(cfg.jailbreak), node.templates)


def scorer_for(node: DictConfig, reference: str, reward_models: Sequence[str]):
    """The harmlessness scorer of the shared protocol: the run's (latest) reward model, one given by path, or the
    RLAIF labeler with the reference judging each answer against the base model's (None: scorer=none)."""
    choice = node.scorer
    if choice == "auto":
        choice = "reward_model" if reward_models or node.reward_model else "judge"
    if choice == "none":
        return None
    if choice == "reward_model":
        from trl_ext.rewards import RewardModelScorer

        path = node.reward_model or reward_models[-1]
        tokenizer = load_tokenizer(path)
        return RewardModelScorer(load_reward_model(path, tokenizer), tokenizer)
    from trl_ext.rlaif import Constitution, ConstitutionalLabeler

    tokenizer = load_tokenizer(reference)
    judge = load_policy(reference, tokenizer)
    return ConstitutionalLabeler(judge, Constitution.from_config(node.constitution), tokenizer, progress=False)


def behaviour(cfg: DictConfig, models: Mapping[str, str], reference: str, data_prompts: Sequence[Any]) -> dict:
    """The scorecard: the reference, the reference with the system prompt, and every policy of `models`."""
    node = cfg.scorecard
    policies = {name: path for name, path in models.items() if not is_reward_model(path)}
    rewards = [path for path in models.values() if is_reward_model(path)]
    arms = {BASE: Arm(reference), BAND_AID: Arm(reference, node.system_prompt)}
    arms |= {name: Arm(path) for name, path in policies.items()}
    settings = to_dict(node)
    scorer = scorer_for(node, reference, rewards) if settings.get("n_data") != 0 else None
    return run_from_config(settings, to_dict(cfg.jailbreak), arms, reference, data_prompts, scorer, root=Path.cwd())


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
        check_scorecard(cfg)
        data, data_report = load_preferences(**node_kwargs(cfg.data))
        models = {name: str(path) for name, path in models.items()}
        reference = model_path(cfg.model)
        with full_weights():  # whole models on this one process, even after a ZeRO-3 stage in the same run
            evaluation = evaluate_models(models, reference, data["eval"], **to_dict(cfg.evaluation))
            card = (
                behaviour(cfg, models, reference, data["eval"]["prompt"])
                if cfg.get("scorecard", {}).get("enabled")
                else None
            )
        if card is not None:
            write_scorecard(card, run_dir)
            evaluation["scorecard"] = scorecard_metrics(card)
            sections = [*scorecard_section(card, run_dir), "", *sections]
        histories = {name: h for name, path in models.items() if (h := log_history(path)) is not None}
        notes = [
            f"Data: {data_report.source}: {data_report.kept} of {data_report.rows} rows usable "
            f"({len(data['train'])} train / {len(data['eval'])} eval); reference: {reference}."
        ]
        write_report(run_dir, evaluation, histories, title=title, notes=notes, sections=sections)
        print(report.read_text())
    state.wait_for_everyone()
    return report
