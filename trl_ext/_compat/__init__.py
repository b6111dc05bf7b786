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

# Building blocks for our PPO (TRL's own PPOTrainer was removed in 1.13).
from trl.models.utils import prepare_deepspeed, unwrap_model_for_generation  # noqa: E402
from trl.trainer.utils import (  # noqa: E402
    FusedCausalLMOutput,
    disable_dropout_in_model,
    pad,
    selective_log_softmax,
    selective_log_softmax_and_entropy,
)

__all__ += [
    "FusedCausalLMOutput",
    "disable_dropout_in_model",
    "pad",
    "prepare_deepspeed",
    "selective_log_softmax",
    "selective_log_softmax_and_entropy",
    "unwrap_model_for_generation",
]
