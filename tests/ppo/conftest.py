"""Shared PPO test setup: demo prompts, a reward the tiny model learns fast, small configs and trainers, and a reward
model with a vocabulary of its own."""

from __future__ import annotations

import pytest

from trl_ext.data import load_prompts
from trl_ext.models import load_policy
from trl_ext.ppo import PPOConfig, PPOTrainer


def letter_e_reward(prompts, completions, **kwargs):
    """Share of the letter 'e' in the completion, times 10: a reward a tiny random model can learn quickly."""
    texts = [c[0]["content"] if isinstance(c, list) else c for c in completions]
    return [10 * t.count("e") / max(len(t), 1) for t in texts]


@pytest.fixture(scope="session")
def prompts():
    return load_prompts("demo")[0]["train"]


@pytest.fixture(scope="session")
def eval_prompts():
    return load_prompts("demo")[0]["eval"]


def small_config(tmp_path, **overrides) -> PPOConfig:
    """One update of 8 rollouts of up to 16 tokens, fp32 on CPU, no checkpoints, no sample tables."""
    args = dict(
        output_dir=str(tmp_path),
        use_cpu=True,
        bf16=False,
        per_device_train_batch_size=8,
        max_steps=1,
        learning_rate=1e-3,
        response_length=16,
        temperature=1.0,
        kl_coef=0.05,
        save_strategy="no",
        sample_every=0,
        seed=0,
        disable_tqdm=True,
    )
    return PPOConfig(**{**args, **overrides})


def make_trainer(
    tmp_path, tiny_path, tiny_tokenizer, prompts, reward=letter_e_reward, trainer_kwargs=None, **overrides
) -> PPOTrainer:
    """A PPOTrainer on the tiny policy with `reward` as its only reward function; `trainer_kwargs` go to the trainer
    (peft_config, eval_dataset, callbacks, ...), `overrides` to the config."""
    return PPOTrainer(
        load_policy(tiny_path, tiny_tokenizer),
        small_config(tmp_path, **overrides),
        tiny_tokenizer,
        prompts,
        reward_funcs=[reward],
        **(trainer_kwargs or {}),
    )


def scores(trainer) -> list[float]:
    return [h["objective/scores"] for h in trainer.state.log_history if "objective/scores" in h]


@pytest.fixture(scope="session")
def other_tokenizer():
    """A tokenizer whose vocabulary differs from the tiny model's (300 words instead of 1,024)."""
    from trl_ext.models.tiny import build_tiny_tokenizer

    return build_tiny_tokenizer(vocab_size=300)


@pytest.fixture
def other_vocab_reward_model(other_tokenizer):
    """A reward model built in process on `other_tokenizer`'s vocabulary: the policy's ids overflow its embeddings."""
    import torch
    from transformers import LlamaConfig, LlamaForSequenceClassification

    from trl_ext.models.tiny import TINY_ARCH

    torch.manual_seed(1)
    config = LlamaConfig(
        vocab_size=len(other_tokenizer), pad_token_id=other_tokenizer.pad_token_id, num_labels=1, **TINY_ARCH
    )
    return LlamaForSequenceClassification(config)
