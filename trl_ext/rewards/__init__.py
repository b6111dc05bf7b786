"""Reward functions of the shared protocol `fn(prompts, completions, **kwargs) -> list[float]`."""

from trl_ext.rewards.length import LengthControlledReward
from trl_ext.rewards.scoring import RewardFunc, RewardModelScorer, score

__all__ = ["LengthControlledReward", "RewardFunc", "RewardModelScorer", "score"]
