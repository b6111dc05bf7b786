"""PPO's models and their assembly: critics from the policy (in memory, peft or not) or the reward model, the
reference, merged copies for saving, the value head and the response log-probs."""

import logging

import pytest
import torch
from peft import LoraConfig, get_peft_model

from trl_ext._compat import checkpointing_enabled
from trl_ext.models.heads import (
    PolicyAndValue,
    assemble_roles,
    critic_from_policy,
    merged_copy,
    reference_copy,
    reference_of,
    response_logprobs,
    same_vocabulary,
    value_forward,
)
from trl_ext.models.tiny import build_tiny_model
from trl_ext.ppo.rollout import model_inputs

LORA = dict(r=4, target_modules="all-linear")


def probe(tokenizer):
    queries = tokenizer(["<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n"], return_tensors="pt")
    responses = torch.tensor([[11, 12, 13, tokenizer.eos_token_id]])
    return model_inputs(queries["input_ids"], queries["attention_mask"], responses, torch.ones_like(responses)), 4


def test_critic_from_an_in_memory_policy(tiny_tokenizer):
    policy = build_tiny_model(tiny_tokenizer, seed=5)  # no name_or_path: nothing to load from
    critic = critic_from_policy(policy)
    pairs = list(zip(critic.model.state_dict().values(), policy.model.state_dict().values()))
    assert all(torch.equal(a, b) and a.data_ptr() != b.data_ptr() for a, b in pairs)  # a copy of the body
    assert critic.score.weight.shape == (1, 64) and 0.005 < critic.score.weight.std().item() < 0.04  # fresh, std 0.02
    inputs, n = probe(tiny_tokenizer)
    assert value_forward(critic, *inputs, n).shape == (1, n)


def test_critic_from_a_lora_policy_takes_the_merged_weights(tiny_model, tiny_tokenizer):
    policy = get_peft_model(tiny_model, LoraConfig(**LORA))
    with torch.no_grad():
        for name, p in policy.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.1)  # trained-looking adapters
    before = {k: v.clone() for k, v in policy.state_dict().items()}
    critic = critic_from_policy(policy)
    merged = merged_copy(policy)
    assert all(
        torch.equal(a, b) for a, b in zip(critic.model.state_dict().values(), merged.model.state_dict().values())
    )
    assert not any("lora" in n for n, _ in critic.named_parameters())
    after = policy.state_dict()
    assert after.keys() == before.keys() and all(torch.equal(after[k], v) for k, v in before.items())  # untouched


def test_merged_copy_is_the_adapted_model_and_leaves_it_alone(tiny_model, tiny_tokenizer):
    policy = get_peft_model(tiny_model, LoraConfig(**LORA))
    with torch.no_grad():
        for name, p in policy.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.1)
    inputs, _ = probe(tiny_tokenizer)
    kwargs = dict(zip(("input_ids", "attention_mask", "position_ids"), inputs))
    with torch.no_grad():
        adapted = policy(**kwargs).logits
        merged = merged_copy(policy)
        torch.testing.assert_close(merged(**kwargs).logits, adapted, atol=1e-5, rtol=1e-5)
        assert hasattr(policy, "disable_adapter") and not hasattr(merged, "disable_adapter")
        torch.testing.assert_close(policy(**kwargs).logits, adapted)
    plain = build_tiny_model(tiny_tokenizer)
    assert merged_copy(plain) is plain  # nothing to merge: no copy


def test_reference_is_a_frozen_copy_or_the_disabled_adapters(tiny_model):
    ref = reference_copy(tiny_model)
    assert ref is not tiny_model and not ref.training and not any(p.requires_grad for p in ref.parameters())
    with reference_of(tiny_model, ref) as model:
        assert model is ref
    policy = get_peft_model(tiny_model, LoraConfig(**LORA))
    ids = torch.tensor([[5, 6, 7]])
    with torch.no_grad():
        for name, p in policy.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.1)
        assert not torch.allclose(policy(ids).logits, ref(ids).logits)
        with reference_of(policy, None) as model:
            assert model is policy
            torch.testing.assert_close(model(ids).logits, ref(ids).logits)  # adapters off: the base weights


def test_chunked_response_logprobs_equal_the_logits_path(tiny_model, tiny_tokenizer):
    inputs, n = probe(tiny_tokenizer)
    responses = inputs[0][:, -n:]
    chunked, entropy = response_logprobs(tiny_model, *inputs, responses, temperature=0.7, chunked=True)
    full, full_entropy = response_logprobs(tiny_model, *inputs, responses, temperature=0.7, chunked=False)
    torch.testing.assert_close(chunked, full, atol=2e-5, rtol=1e-5)
    torch.testing.assert_close(entropy, full_entropy, atol=2e-5, rtol=1e-5)


def test_policy_and_value_toggle_checkpointing_on_both(tiny_model):
    both = PolicyAndValue(tiny_model, critic_from_policy(tiny_model))
    both.gradient_checkpointing_enable()
    assert both.is_gradient_checkpointing and checkpointing_enabled(both.value_model)
    both.gradient_checkpointing_disable()
    assert not both.is_gradient_checkpointing and not checkpointing_enabled(both.value_model)


def test_same_vocabulary(tiny_tokenizer, tiny_path):
    from trl_ext.models import load_tokenizer
    from trl_ext.models.tiny import build_tiny_tokenizer

    assert same_vocabulary(tiny_tokenizer, None) and same_vocabulary(tiny_tokenizer, load_tokenizer(tiny_path))
    assert not same_vocabulary(tiny_tokenizer, build_tiny_tokenizer(vocab_size=300))


@pytest.mark.parametrize(
    "case, source",
    [
        ("no reward model", "the policy's backbone with a fresh value head (there is no reward model)"),
        ("own vocabulary", "the policy's backbone with a fresh value head (the reward model has its own vocabulary)"),
        ("shared vocabulary", "a copy of the reward model"),
        ("shared vocabulary, LoRA", "the reward model plus LoRA adapters"),
        ("value model given", "the given value_model"),
    ],
)
def test_default_roles(case, source, tiny_path, tiny_tokenizer, caplog):
    from trl_ext.models import load_policy, load_reward_model
    from trl_ext.models.tiny import build_tiny_tokenizer

    policy = load_policy(tiny_path, tiny_tokenizer)
    reward = None if case in ("no reward model", "value model given") else load_reward_model(tiny_path, tiny_tokenizer)
    reward_tokenizer = build_tiny_tokenizer(vocab_size=300) if case == "own vocabulary" else None
    value = load_reward_model(tiny_path, tiny_tokenizer) if case == "value model given" else None
    lora = LoraConfig(**LORA) if "LoRA" in case else None
    with caplog.at_level(logging.INFO):
        roles = assemble_roles(policy, tiny_tokenizer, reward, reward_tokenizer, value_model=value, peft_config=lora)
    assert roles.critic_source.startswith(source) and f"PPO critic: {roles.critic_source}" in caplog.text
    assert (roles.ref_model is None) == (lora is not None)  # LoRA: the reference is the base, adapters disabled
    assert roles.reward_in_critic == (lora is not None)
    assert roles.value_model is not reward and roles.value_model.config.pad_token_id == tiny_tokenizer.pad_token_id
    if value is not None:
        assert roles.value_model is value
