"""Evaluation: preference accuracy, margins, log-ratios to the reference, generations, and the run report."""

from trl_ext.eval.evaluate import evaluate_models, is_reward_model
from trl_ext.eval.metrics import completion_logps, generate, preference_metrics
from trl_ext.eval.report import plot_training, write_report
from trl_ext.rewards.scoring import reward_scores

__all__ = [
    "completion_logps",
    "evaluate_models",
    "generate",
    "is_reward_model",
    "plot_training",
    "preference_metrics",
    "reward_scores",
    "write_report",
]
