"""Policies, reward models and tokenizers from a hub id, a local folder, the embedded SmolLM2, or `tiny`."""

from trl_ext.models.loading import (
    cache_dir,
    embedded_model_dir,
    ensure_pad_token,
    load_policy,
    load_reward_model,
    load_tokenizer,
    model_path,
    resolve_model_path,
)

__all__ = [
    "cache_dir",
    "embedded_model_dir",
    "ensure_pad_token",
    "load_policy",
    "load_reward_model",
    "load_tokenizer",
    "model_path",
    "resolve_model_path",
]
