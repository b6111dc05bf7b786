"""Every TRL import that could move between releases, in one place (TRL removed PPO, judges and best-of-N within a
year). Supported range: trl>=1.16,<2 (pinned in pyproject.toml)."""

from trl import DPOConfig, DPOTrainer, RewardConfig, RewardTrainer, SFTConfig, SFTTrainer
from trl.data_utils import extract_prompt, is_conversational, maybe_apply_chat_template

__all__ = [
    "DPOConfig",
    "DPOTrainer",
    "RewardConfig",
    "RewardTrainer",
    "SFTConfig",
    "SFTTrainer",
    "extract_prompt",
    "is_conversational",
    "maybe_apply_chat_template",
]
