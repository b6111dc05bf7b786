"""Reward functions of the shared protocol `fn(prompts, completions, **kwargs) -> list[float]`."""

from trl_ext.rewards.scoring import RewardFunc, RewardModelScorer, score

__all__ = ["RewardFunc", "RewardModelScorer", "score"]
