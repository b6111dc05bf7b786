"""PPO on current TRL/transformers: `PPOConfig`, `PPOTrainer`, and the math in `trl_ext.ppo.core`."""

from trl_ext.ppo.config import PPOConfig
from trl_ext.ppo.trainer import Experience, PPOTrainer

__all__ = ["Experience", "PPOConfig", "PPOTrainer"]
