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


def create_reference_model(model):
    """TRL's `create_reference_model` (a frozen eval-mode copy), kept among its experimental utilities since 1.13
    (`trl.create_reference_model` is a deprecated alias)."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*trl.experimental")
        from trl.experimental.utils import create_reference_model as create

    return create(model)


# transformers 5.x renames gradient checkpointing to activation checkpointing; the old names warn, then go in v6.
def checkpointing_enabled(model) -> bool:
    """Whether activation (gradient) checkpointing is on."""
    name = (
        "is_activation_checkpointing" if hasattr(model, "is_activation_checkpointing") else "is_gradient_checkpointing"
    )
    return bool(getattr(model, name, False))


def enable_checkpointing(model, kwargs: dict | None = None) -> None:
    """Turn activation checkpointing on, with `kwargs` for `torch.utils.checkpoint` (default: non-reentrant)."""
    kwargs = kwargs or {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def disable_checkpointing(model) -> None:
    (getattr(model, "activation_checkpointing_disable", None) or model.gradient_checkpointing_disable)()


__all__ += ["checkpointing_enabled", "create_reference_model", "disable_checkpointing", "enable_checkpointing"]
