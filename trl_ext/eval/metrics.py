"""Held-out metrics for policies and reward models on conversational preference pairs.

Policies are judged by the DPO implicit reward r(x, y) = beta * log(pi(y|x) / pi_ref(y|x)) (Rafailov et al. 2023,
https://arxiv.org/abs/2305.18290): a pair counts as correct when r(chosen) > r(rejected). Reward models by their
score. Every model is also asked to answer a few eval prompts greedily (length, examples, a KL proxy).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from trl_ext._compat import maybe_apply_chat_template, pad, selective_log_softmax

Messages = list[dict[str, str]]


def _batches(items: Sequence, batch_size: int, desc: str) -> Any:
    starts = range(0, len(items), batch_size)
    return (items[i : i + batch_size] for i in tqdm(starts, desc=desc, leave=False, disable=len(starts) < 2))


def _pad(rows: list[list[int]], pad_id: int, side: str = "right") -> tuple[torch.Tensor, torch.Tensor]:
    """Token-id rows as a padded batch and its attention mask (TRL's `pad`)."""
    tensors = [torch.tensor(row, dtype=torch.long) for row in rows]
    return pad(tensors, pad_id, side), pad([torch.ones_like(t) for t in tensors], 0, side)


def encode_completion(
    tokenizer: PreTrainedTokenizerBase, prompt: Messages, completion: Messages, max_length: int
) -> tuple[list[int], int]:
    """Token ids of prompt + completion through the chat template, and the completion's length in tokens.

    The prompt is cut from the left when the whole exceeds `max_length` (the completion is what we score).
    """
    text = maybe_apply_chat_template({"prompt": prompt, "completion": completion}, tokenizer)
    prompt_ids = tokenizer(text["prompt"], add_special_tokens=False)["input_ids"]
    completion_ids = tokenizer(text["completion"], add_special_tokens=False)["input_ids"][:max_length]
    keep = max(max_length - len(completion_ids), 0)
    return prompt_ids[len(prompt_ids) - keep :] + completion_ids, len(completion_ids)


@torch.no_grad()
def completion_logps(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[Messages],
    completions: Sequence[Messages],
    batch_size: int = 8,
    max_length: int = 256,
) -> torch.Tensor:
    """Sum of log pi(completion tokens | prompt) for each pair. Shape: (n,)."""
    model.eval()
    encoded = [encode_completion(tokenizer, p, c, max_length) for p, c in zip(prompts, completions)]
    out = []
    for batch in _batches(encoded, batch_size, "log-probs"):
        ids, mask = _pad([ids for ids, _ in batch], tokenizer.pad_token_id)
        ids, mask = ids.to(model.device), mask.to(model.device)
        logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1]
        token_logps = selective_log_softmax(logits.float(), ids[:, 1:])  # position t predicts token t+1
        for i, (row, n_completion) in enumerate(batch):
            out.append(token_logps[i, len(row) - 1 - n_completion : len(row) - 1].sum().item())
    return torch.tensor(out)


@torch.no_grad()
def reward_scores(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[Messages],
    completions: Sequence[Messages],
    batch_size: int = 8,
    max_length: int = 256,
) -> torch.Tensor:
    """A sequence-classification reward model's scalar score for each prompt + completion. Shape: (n,)."""
    model.eval()
    encoded = [encode_completion(tokenizer, p, c, max_length)[0] for p, c in zip(prompts, completions)]
    out = []
    for batch in _batches(encoded, batch_size, "rewards"):
        ids, mask = _pad(batch, tokenizer.pad_token_id)
        out.append(model(input_ids=ids.to(model.device), attention_mask=mask.to(model.device)).logits[:, 0].float())
    return torch.cat(out).cpu()


@torch.no_grad()
def generate(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[Messages],
    max_new_tokens: int = 64,
    batch_size: int = 8,
) -> list[str]:
    """Greedy answers to conversational prompts (batched, left padded), special tokens removed."""
    model.eval()
    answers = []
    for batch in _batches(list(prompts), batch_size, "generating"):
        texts = [tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in batch]
        ids, mask = _pad(
            [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts], tokenizer.pad_token_id, "left"
        )
        output = model.generate(
            input_ids=ids.to(model.device),
            attention_mask=mask.to(model.device),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
        )
        answers += tokenizer.batch_decode(output[:, ids.shape[1] :], skip_special_tokens=True)
    return [a.strip() for a in answers]


def preference_metrics(chosen: torch.Tensor, rejected: torch.Tensor, prefix: str = "") -> dict[str, float]:
    """Accuracy (strictly greater), mean margin, and the means of both scores. Inputs shape: (n,)."""
    margin = chosen - rejected
    return {
        f"{prefix}accuracy": (margin > 0).float().mean().item(),
        f"{prefix}margin": margin.mean().item(),
        f"{prefix}chosen": chosen.mean().item(),
        f"{prefix}rejected": rejected.mean().item(),
    }
