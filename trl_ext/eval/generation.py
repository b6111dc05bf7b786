"""Batched generation for evaluation: many prompts answered with one `generate` per batch.

Prompts are rendered through the chat template (optionally with a system prompt), sorted by their length in tokens
so a batch pads little, left padded so every row continues on the right, and decoded greedily with the KV cache.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from trl_ext.chat import Prompt, encode_prompts, prompt_lengths


@dataclass
class Generations:
    """Answers in the order of the prompts given, with what evaluation needs about each."""

    texts: list[str]  # decoded answers, special tokens removed, stripped
    n_tokens: list[int]  # generated tokens per answer, up to and including EOS
    finished: list[bool]  # ended with EOS (False: cut at max_new_tokens)
    truncated_prompts: int = 0  # prompts cut from the left to max_prompt_length
    calls: int = 0  # `generate` calls made


@torch.no_grad()
def generate_batched(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[Prompt],
    max_new_tokens: int = 48,
    batch_size: int = 16,
    system_prompt: str | None = None,
    max_prompt_length: int | None = 512,
    sort_by_length: bool = True,
    progress: str | None = None,
    **generation_kwargs: Any,
) -> Generations:
    """Answer every prompt: batches of `batch_size` prompts of similar length, one `generate` call each, greedy
    unless `generation_kwargs` say otherwise (`do_sample=True, temperature=...`).

    `system_prompt` is put in a system turn, or prepended to the user turn when the chat template has none
    (`trl_ext.chat.with_system_prompt`). Prompts longer than `max_prompt_length` tokens keep their end.
    """
    model.eval()
    n = len(prompts)
    order = list(range(n))
    if sort_by_length and n > 1:
        lengths = prompt_lengths(tokenizer, prompts, system_prompt)
        order.sort(key=lengths.__getitem__)
    eos_ids = _eos_ids(model, tokenizer)
    kwargs = {"do_sample": False, "max_new_tokens": max_new_tokens, **generation_kwargs}
    if not kwargs["do_sample"]:
        kwargs.setdefault("temperature", None)
        kwargs.setdefault("top_p", None)
        kwargs.setdefault("top_k", None)
    texts, n_tokens, finished = [""] * n, [0] * n, [False] * n
    truncated, calls = 0, 0
    starts = range(0, n, batch_size)
    for start in tqdm(starts, desc=progress or "generating", leave=False, disable=progress is None or len(starts) < 2):
        index = order[start : start + batch_size]
        encoded = encode_prompts(tokenizer, [prompts[i] for i in index], max_prompt_length, system_prompt, model.device)
        truncated += encoded.truncated
        inputs = encoded.inputs
        out = model.generate(
            **inputs,
            pad_token_id=tokenizer.pad_token_id,
            **kwargs,
        )
        calls += 1
        new = out[:, inputs["input_ids"].shape[1] :]  # (b, steps)
        is_eos = torch.isin(new, torch.tensor(eos_ids, device=new.device))
        # tokens up to and including the first EOS are the answer; what follows is padding
        before_eos = (is_eos.cumsum(-1) - is_eos.long()) == 0
        for row, i in enumerate(index):
            keep = before_eos[row]
            n_tokens[i] = int(keep.sum())
            finished[i] = bool(is_eos[row].any())
            texts[i] = tokenizer.decode(new[row][keep], skip_special_tokens=True).strip()
    return Generations(texts, n_tokens, finished, truncated, calls)


def _eos_ids(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """Every token id that ends generation (the generation config may list several)."""
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids = configured if isinstance(configured, list) else [configured]
    ids = [i for i in ids if i is not None]
    if tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
    return sorted(set(ids))
