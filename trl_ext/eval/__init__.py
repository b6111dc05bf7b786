"""Evaluation: held-out preference metrics (accuracy, margins, log-ratios to the reference), the behaviour scorecard
(over-refusal, unsafe compliance, jailbreaks, harmlessness, length and drift, against a system-prompt baseline), the
refusal detector it is labeled by, and the run report."""

from trl_ext.eval.evaluate import evaluate_models, is_reward_model
from trl_ext.eval.generation import generate_batched
from trl_ext.eval.metrics import completion_logps, preference_metrics
from trl_ext.eval.refusal import (
    EitherDetector,
    PhraseDetector,
    ProbeDetector,
    agreement,
    drop_refusing_chosen,
    make_detector,
)
from trl_ext.eval.report import plot_training, write_report
from trl_ext.eval.scorecard import (
    Arm,
    Attack,
    PromptItem,
    load_attacks,
    load_prompt_list,
    paired_difference,
    relabel,
    remeasure,
    run_from_config,
    run_scorecard,
    scorecard_metrics,
    scorecard_section,
    split_by_label,
    subsample,
    write_scorecard,
)
from trl_ext.rewards.scoring import reward_scores

__all__ = [
    "Arm",
    "Attack",
    "EitherDetector",
    "PhraseDetector",
    "ProbeDetector",
    "PromptItem",
    "agreement",
    "completion_logps",
    "drop_refusing_chosen",
    "evaluate_models",
    "generate_batched",
    "is_reward_model",
    "load_attacks",
    "load_prompt_list",
    "make_detector",
    "paired_difference",
    "plot_training",
    "preference_metrics",
    "relabel",
    "remeasure",
    "reward_scores",
    "run_from_config",
    "run_scorecard",
    "scorecard_metrics",
    "scorecard_section",
    "split_by_label",
    "subsample",
    "write_report",
    "write_scorecard",
]
