"""Experience making, the first half of a PPO update (Ziegler et al. 2019; Ouyang et al. 2022): sample responses,
mask what follows EOS, score them with the critic, the reference and the reward functions, turn the scores and the
KL into per-token rewards, and those into GAE advantages. No trainer needed: give it the models and a batch.

Shapes: b = rollouts, q = prompt tokens (left padded), t = response tokens (right padded), V = vocabulary.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import Any

import torch
from transformers import GenerationConfig, PreTrainedModel, PreTrainedTokenizerBase

from trl_ext._compat import selective_log_softmax_and_entropy
from trl_ext.chat import completion_like, encode_prompts
from trl_ext.kl import kl_per_token
from trl_ext.models.heads import reference_of, response_logprobs, value_forward
from trl_ext.ppo import core
from trl_ext.ppo.config import PPOConfig
from trl_ext.rewards import score


@dataclass
class PromptBatch:
    """Prompts as the policy reads them and as the reward functions receive them."""

    queries: torch.Tensor  # (b, q) prompt ids, left padded
    query_mask: torch.Tensor  # (b, q) 1 on real prompt tokens
    prompts: list  # text or messages, one per row
    columns: dict[str, list]  # the dataset's other columns, passed to the reward functions by name
    truncated: int = 0  # prompts cut from the left to max_prompt_length


def collate_prompts(
    rows: Sequence[dict[str, Any]], tokenizer: PreTrainedTokenizerBase, max_prompt_length: int
) -> PromptBatch:
    """Dataset rows (`prompt` plus any other columns) as a left-padded batch, chat template applied to messages."""
    prompts = [row["prompt"] for row in rows]
    encoded = encode_prompts(tokenizer, prompts, max_prompt_length)
    columns = {key: [row[key] for row in rows] for key in rows[0] if key != "prompt"}
    return PromptBatch(
        encoded.inputs["input_ids"], encoded.inputs["attention_mask"], prompts, columns, encoded.truncated
    )


def model_inputs(
    queries: torch.Tensor, query_mask: torch.Tensor, responses: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask, position_ids) of prompt + response, each (b, q + t); positions start at each
    prompt's first real token (left padding)."""
    input_ids = torch.cat([queries, responses], 1)
    attention_mask = torch.cat([query_mask, mask], 1)
    return input_ids, attention_mask, (attention_mask.cumsum(1) - 1).clamp(min=0)


@dataclass
class Samples:
    """Sampled responses, scored: what a rollout and an evaluation share."""

    responses: torch.Tensor  # (b, t) sampled ids, pad after the first EOS
    mask: torch.Tensor  # (b, t) 1 up to and including the first EOS
    logprobs: torch.Tensor  # (b, t) log pi(y_t) at the sampling temperature
    entropy: torch.Tensor  # (b, t) policy entropy at each response position
    ref_logprobs: torch.Tensor  # (b, t) log pi_ref(y_t)
    kl: torch.Tensor  # (b, t) per-token KL estimate, 0 on padding
    scores: torch.Tensor  # (b,) reward-function scores, after the missing-EOS penalty
    completions: list[str]  # decoded responses


@dataclass
class Experience:
    """One rollout batch, what the learner trains on."""

    queries: torch.Tensor  # (b, q) prompt ids
    query_mask: torch.Tensor  # (b, q) 1 on real prompt tokens
    responses: torch.Tensor  # (b, t) sampled ids, padded after EOS
    mask: torch.Tensor  # (b, t) 1 up to and including the first EOS
    logprobs: torch.Tensor  # (b, t) log pi_old(y_t)
    ref_logprobs: torch.Tensor  # (b, t) log pi_ref(y_t)
    values: torch.Tensor  # (b, t) V_old before each response token
    scores: torch.Tensor  # (b,) sequence scores (after the missing-EOS penalty)
    kl: torch.Tensor  # (b, t) per-token KL estimate
    advantages: torch.Tensor  # (b, t) whitened GAE advantages
    returns: torch.Tensor  # (b, t) advantages + values
    entropy: torch.Tensor  # (b, t) policy entropy at each response position

    def select(self, index: torch.Tensor) -> Experience:
        return Experience(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    @property
    def sequence_kl(self) -> torch.Tensor:
        """KL to the reference summed over each response, what the adaptive KL controller tracks. Shape: (b,)."""
        return self.kl.sum(1)


@dataclass
class Rollout:
    """An experience batch and the texts it came from."""

    experience: Experience
    prompts: list
    completions: list[str]


def generation_config(args: PPOConfig, tokenizer: PreTrainedTokenizerBase) -> GenerationConfig:
    """Sampling as `args` sets it, stopping at EOS, returning the raw logits of every sampled position."""
    return GenerationConfig(
        max_new_tokens=args.response_length,
        do_sample=True,
        temperature=args.temperature,
        top_k=args.top_k or None,
        top_p=args.top_p,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        return_dict_in_generate=True,
        output_logits=True,
    )


@dataclass
class ExperienceMaker:
    """generate -> mask -> log-probs -> reference log-probs -> KL -> scores (`sample`, what evaluation uses too),
    then values -> per-token rewards -> GAE (`__call__`).

    `chunked`: reference log-probs from the hidden states through the chunked head (see `response_logprobs`).
    """

    args: PPOConfig
    tokenizer: PreTrainedTokenizerBase
    reward_funcs: list[Callable]
    chunked: bool = True

    def __post_init__(self):
        self.generation_config = generation_config(self.args, self.tokenizer)

    @torch.no_grad()
    def sample(
        self,
        policy: PreTrainedModel,
        ref_model: PreTrainedModel | None,
        batch: PromptBatch,
        reward_kwargs: dict[str, Any] | None = None,
    ) -> Samples:
        """Sample one response per prompt; its log-probs under policy and reference, the KL, the scores."""
        args, eos, pad = self.args, self.tokenizer.eos_token_id, self.tokenizer.pad_token_id
        # The sampling pass computes the policy's logits at every response token already: the log-probs come from
        # them (equal to a fresh forward pass up to float rounding), not from a second policy pass.
        out = policy.generate(
            input_ids=batch.queries, attention_mask=batch.query_mask, generation_config=self.generation_config
        )
        responses, logits = out.sequences[:, batch.queries.shape[1] :], torch.stack(out.logits, 1)  # (b, t, V)
        del out
        logits = logits.float().div_(args.temperature)
        mask = core.response_mask(responses, eos)
        responses = responses.masked_fill(mask == 0, pad)
        logprobs, entropy = selective_log_softmax_and_entropy(logits, responses)
        full = args.kl_estimator == "full"  # the exact KL needs both distributions whole
        if not full:
            logits = None  # freed before the reference's and the critic's passes
        inputs, n = model_inputs(batch.queries, batch.query_mask, responses, mask), responses.shape[1]
        with reference_of(policy, ref_model) as reference:
            if self.chunked and not full:
                ref_logprobs = response_logprobs(reference, *inputs, responses, args.temperature, True, False)[0]
                ref_logits = None
            else:
                keys = ("input_ids", "attention_mask", "position_ids")
                ref_logits = reference(**dict(zip(keys, inputs)), logits_to_keep=n + 1, use_cache=False).logits
                ref_logits = ref_logits[:, :-1].float() / args.temperature
                ref_logprobs = selective_log_softmax_and_entropy(ref_logits, responses)[0]
        kl = kl_per_token(logprobs, ref_logprobs, args.kl_estimator, logits, ref_logits) * mask

        texts = self.tokenizer.batch_decode(responses, skip_special_tokens=True)
        completions = [completion_like(p, t) for p, t in zip(batch.prompts, texts)]
        completion_ids = [row[m.bool()].tolist() for row, m in zip(responses, mask)]
        kwargs = {**batch.columns, **(reward_kwargs or {})}
        scores = score(
            self.reward_funcs, batch.prompts, completions, args.reward_weights, completion_ids=completion_ids, **kwargs
        )
        scores = scores.to(logprobs.device)
        if args.missing_eos_penalty is not None:
            scores = scores - args.missing_eos_penalty * (~(responses == eos).any(1)).float()
        return Samples(responses, mask, logprobs, entropy, ref_logprobs, kl, scores, texts)

    @torch.no_grad()
    def __call__(
        self,
        policy: PreTrainedModel,
        value_model: PreTrainedModel,
        ref_model: PreTrainedModel | None,
        batch: PromptBatch,
        kl_coef: float,
        reward_kwargs: dict[str, Any] | None = None,
    ) -> Rollout:
        """One rollout batch, with `kl_coef` the KL controller's current coefficient."""
        args = self.args
        s = self.sample(policy, ref_model, batch, reward_kwargs)
        inputs = model_inputs(batch.queries, batch.query_mask, s.responses, s.mask)
        values = value_forward(value_model, *inputs, s.responses.shape[1]) * s.mask
        reward_kl_coef, _ = core.kl_coefs(kl_coef, args.kl_placement)
        rewards = core.per_token_rewards(s.scores, s.kl, reward_kl_coef, s.mask)
        if args.whiten_rewards:
            rewards = core.masked_whiten(rewards, s.mask, shift_mean=False)
        advantages, returns = core.gae(rewards, values, s.mask, args.gamma, args.lam)
        advantages = core.masked_whiten(advantages, s.mask)
        experience = Experience(
            batch.queries,
            batch.query_mask,
            s.responses,
            s.mask,
            s.logprobs,
            s.ref_logprobs,
            values,
            s.scores,
            s.kl,
            advantages,
            returns,
            s.entropy,
        )
        return Rollout(experience, batch.prompts, s.completions)
