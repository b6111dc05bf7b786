"""PPO on current TRL/transformers: `PPOConfig`, `PPOTrainer` (the loop), `ExperienceMaker` (rollouts), `Learner`
(PPO epochs), and the math in `trl_ext.ppo.core`."""

from trl_ext.ppo.config import PPOConfig
from trl_ext.ppo.learner import Learner
from trl_ext.ppo.rollout import Experience, ExperienceMaker, Rollout
from trl_ext.ppo.trainer import PPOTrainer

__all__ = ["Experience", "ExperienceMaker", "Learner", "PPOConfig", "PPOTrainer", "Rollout"]
