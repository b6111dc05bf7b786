"""The models of PPO and how they are assembled: the critic's value head, the policy's response log-probs, and the
four roles (actor, critic, reference, reward) built from what the user passes.

Defaults, as in TRL's last PPOTrainer and OpenRLHF:
- reference: a frozen copy of the initial policy; with a LoRA policy no copy at all, the policy with its adapters
  disabled (one backbone for both).
- critic: the reward model's weights (Ouyang et al. 2022 initialise the value function from the reward model) when
  the reward model reads the policy's token ids, i.e. has the same vocabulary; with LoRA those weights plus the
  critic's own adapters, the reward being the same weights with the adapters disabled. Otherwise (no reward model,
  or one with its own tokenizer) the policy's backbone with a fresh scalar head, copied from the weights in memory.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers import AutoModelForSequenceClassification, PreTrainedModel, PreTrainedTokenizerBase

from trl_ext._compat import (
    checkpointing_enabled,
    create_reference_model,
    disable_checkpointing,
    disable_dropout_in_model,
    enable_checkpointing,
    selective_log_softmax_and_entropy,
)
from trl_ext.distributed import full_weights
from trl_ext.logprobs import token_logps

logger = logging.getLogger(__name__)


def is_peft_model(model: nn.Module) -> bool:
    """A peft model (adapters injected in place, `disable_adapter()` gives the base weights)."""
    return hasattr(model, "disable_adapter") and hasattr(model, "get_base_model")


def backbone(model: PreTrainedModel) -> tuple[PreTrainedModel, nn.Module]:
    """(the model under any peft wrapper, its transformer body). Adapters are injected in place, so the body runs
    with them (or without, inside peft's `disable_adapter()`)."""
    inner = model.get_base_model() if is_peft_model(model) else model
    return inner, getattr(inner, inner.base_model_prefix)


def response_logprobs(
    model: PreTrainedModel,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    position_ids: torch.Tensor,
    responses: torch.Tensor,
    temperature: float,
    chunked: bool,
    entropy: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probs at `temperature` of the response tokens (the last t positions) and the entropy there, both (b, t).

    `chunked`: from the final hidden states through torch's chunked `linear_cross_entropy` (`trl_ext.logprobs`),
    never the (b, t, vocab) logits and their log-softmax; the entropy is then computed without gradient, and only
    with `entropy` (else None). Otherwise the response positions' logits (`logits_to_keep`) and TRL's
    `selective_log_softmax_and_entropy`."""
    inputs = dict(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False)
    n = responses.shape[1]
    if chunked:
        inner, body = backbone(model)
        hidden = body(**inputs).last_hidden_state[:, -n - 1 : -1]
        out = token_logps(hidden / temperature, inner.get_output_embeddings(), responses, stats=entropy)
        return out["log_probs"], out.get("entropy")
    logits = model(**inputs, logits_to_keep=n + 1).logits[:, :-1]
    return selective_log_softmax_and_entropy(logits.float() / temperature, responses)


def value_forward(
    model: PreTrainedModel, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor, n: int
) -> torch.Tensor:
    """The critic's scalar head at every position that predicts one of the last `n` (response) tokens. Shape: (b, n).

    Works for a plain sequence classifier and for one wrapped with peft adapters (injected in place).
    """
    inner, body = backbone(model)
    hidden = body(
        input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False
    ).last_hidden_state
    return inner.score(hidden[:, -n - 1 : -1]).squeeze(-1).float()


class PolicyAndValue(nn.Module):
    """Actor and critic in one module, so that one optimizer and one `accelerator.prepare` cover both."""

    def __init__(self, policy: PreTrainedModel, value_model: PreTrainedModel):
        super().__init__()
        self.policy, self.value_model = policy, value_model

    # What TRL's `unwrap_model_for_generation` asks of the model it unwraps (checkpointing is off while sampling).
    @property
    def is_gradient_checkpointing(self) -> bool:
        return checkpointing_enabled(self.policy)

    def gradient_checkpointing_disable(self) -> None:
        for model in (self.policy, self.value_model):
            disable_checkpointing(model)

    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs: dict | None = None) -> None:
        for model in (self.policy, self.value_model):
            enable_checkpointing(model, gradient_checkpointing_kwargs)

    @property
    def config(self):  # what DeepSpeed reads to size its buckets
        return self.policy.config

    def forward(self, input_ids, attention_mask, position_ids, responses, temperature: float, chunked: bool):
        """(policy log-probs (b, t) and entropy (b, t) of the responses, critic values (b, t))."""
        inputs = (input_ids, attention_mask, position_ids)
        logprobs, entropy = response_logprobs(self.policy, *inputs, responses, temperature, chunked)
        return logprobs, entropy, value_forward(self.value_model, *inputs, responses.shape[1])


def reference_copy(policy: PreTrainedModel) -> PreTrainedModel:
    """A frozen copy of the policy in eval mode: TRL's `create_reference_model`."""
    with full_weights():  # it refuses to run while a ZeRO-3 config is registered; the copy is sharded later
        return create_reference_model(policy)


@contextlib.contextmanager
def reference_of(policy: PreTrainedModel, ref_model: PreTrainedModel | None):
    """The reference policy: `ref_model`, or when it is None the policy itself with its adapters disabled (the LoRA
    single-backbone mode: no second copy of the weights)."""
    if ref_model is not None:
        yield ref_model
    else:
        with policy.disable_adapter():
            yield policy


def merged_copy(model: PreTrainedModel) -> PreTrainedModel:
    """`model` as a plain transformers model with its peft adapters merged, made from a copy, so the model itself (and
    the reference its disabled adapters give) stays as it is; a model without adapters is returned unchanged."""
    return copy.deepcopy(model).merge_and_unload() if is_peft_model(model) else model


def critic_from_policy(policy: PreTrainedModel) -> PreTrainedModel:
    """A one-label sequence classifier of the policy's architecture: a copy of the policy's body (taken from memory,
    so an in-process model without a path works) under a fresh score head, initialised as transformers initialises
    a new one (normal, std `initializer_range`)."""
    source = merged_copy(policy) if is_peft_model(policy) else policy
    config = copy.deepcopy(source.config)
    config.num_labels = 1
    with full_weights(), torch.device("meta"):  # the skeleton only: every part is replaced below
        critic = AutoModelForSequenceClassification.from_config(config, dtype=source.dtype)
    body = getattr(source, source.base_model_prefix)
    setattr(critic, critic.base_model_prefix, body if source is not policy else copy.deepcopy(body))
    head = nn.Linear(config.hidden_size, 1, bias=False, dtype=source.dtype, device=source.device)
    nn.init.normal_(head.weight, std=getattr(config, "initializer_range", 0.02))
    critic.score = head
    left = [n for n, p in [*critic.named_parameters(), *critic.named_buffers()] if p.is_meta]
    if left:
        name = type(policy).__name__
        raise ValueError(
            f"cannot build a critic from {name}: its classifier has parts beyond a body and a score head: {left}"
        )
    return critic


def same_vocabulary(a: PreTrainedTokenizerBase, b: PreTrainedTokenizerBase | None) -> bool:
    """True when token ids mean the same in both tokenizers (None: the same tokenizer)."""
    return b is None or a is b or a.get_vocab() == b.get_vocab()


@dataclass
class Roles:
    """The four models of PPO, before any accelerate/DeepSpeed preparation."""

    policy: PreTrainedModel  # the actor, wrapped with adapters when a peft config was given
    value_model: PreTrainedModel  # the critic
    ref_model: PreTrainedModel | None  # None: the policy with its adapters disabled
    reward_model: PreTrainedModel | None  # scored frozen; None when there are only reward functions
    reward_in_critic: bool  # the reward model is the critic's base weights with the critic's adapters disabled
    critic_source: str  # how the critic was made, in words (logged)


def assemble_roles(
    policy: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    reward_model: PreTrainedModel | None = None,
    reward_tokenizer: PreTrainedTokenizerBase | None = None,
    ref_model: PreTrainedModel | None = None,
    value_model: PreTrainedModel | None = None,
    peft_config: Any = None,
) -> Roles:
    """Actor, critic, reference and reward from what was given, with the defaults of the module docstring; dropout
    off in the trained models (their log-probs and values must match between rollout and learning)."""
    peft = peft_config is not None or is_peft_model(policy)
    if ref_model is None and not peft:
        ref_model = reference_copy(policy)
    shares_ids = reward_model is not None and same_vocabulary(tokenizer, reward_tokenizer)
    reward_in_critic = False
    if value_model is not None:
        source = "the given value_model"
    elif shares_ids and peft_config is not None:
        from peft import get_peft_model

        critic_peft = dataclasses.replace(peft_config, task_type="SEQ_CLS", modules_to_save=["score"])
        value_model, reward_in_critic = get_peft_model(reward_model, critic_peft), True
        source = "the reward model plus LoRA adapters (the reward: the same weights with the adapters disabled)"
    elif shares_ids:
        value_model, source = copy.deepcopy(reward_model), "a copy of the reward model"
    else:
        value_model = critic_from_policy(policy)
        why = "the reward model has its own vocabulary" if reward_model is not None else "there is no reward model"
        source = f"the policy's backbone with a fresh value head ({why})"
    logger.info("PPO critic: %s", source)
    if peft_config is not None:
        from peft import get_peft_model

        policy = get_peft_model(policy, peft_config)
    value_model.config.pad_token_id = tokenizer.pad_token_id
    for model in (policy, value_model):
        disable_dropout_in_model(model)
    return Roles(policy, value_model, ref_model, reward_model, reward_in_critic, source)
