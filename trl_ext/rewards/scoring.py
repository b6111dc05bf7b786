"""The one scoring protocol: `fn(prompts, completions, **kwargs) -> list[float]`, as TRL's `reward_funcs` in
GRPO/RLOO. Reward models are wrapped to meet it; every score is checked before it reaches a trainer."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence
from numbers import Real
from typing import Any

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from trl_ext.chat import Prompt, encode_completion, pad_batch

RewardFunc = Callable[..., list[float]]


@torch.no_grad()
def reward_scores(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[Prompt],
    completions: Sequence[Any],
    batch_size: int = 8,
    max_length: int = 256,
) -> torch.Tensor:
    """A sequence-classification reward model's scalar score for each prompt + completion (text or messages).
    Prompts too long for `max_length` are cut from the left. Shape: (n,)."""
    model.eval()
    rows = [encode_completion(tokenizer, p, c, max_length)[0] for p, c in zip(prompts, completions)]
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]))  # batches of like lengths: little padding
    starts = range(0, len(rows), batch_size)
    out = torch.zeros(len(rows))
    for i in tqdm(starts, desc="rewards", leave=False, disable=len(starts) < 2):
        batch = pad_batch(tokenizer, [rows[j] for j in order[i : i + batch_size]], "right", model.device)
        out[order[i : i + batch_size]] = model(**batch).logits[:, 0].float().cpu()
    return out


class RewardModelScorer:
    """A sequence-classification reward model as a reward function.

    >>> scorer = RewardModelScorer(model, tokenizer)                                  # doctest: +SKIP
    >>> scorer([[{"role": "user", "content": "Hi"}]], [[{"role": "assistant", "content": "Hello!"}]])  # +SKIP
    [0.73]
    """

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        batch_size: int = 8,
        max_length: int = 512,
        adapters_disabled: bool = False,
    ):
        self.model, self.tokenizer, self.batch_size, self.max_length = model, tokenizer, batch_size, max_length
        self.adapters_disabled = adapters_disabled  # a peft model whose base weights are the reward model
        self.__name__ = f"reward_model({getattr(model.config, 'name_or_path', '') or type(model).__name__})"

    def __call__(self, prompts: Sequence, completions: Sequence, **kwargs) -> list[float]:
        with self.model.disable_adapter() if self.adapters_disabled else contextlib.nullcontext():
            return reward_scores(
                self.model, self.tokenizer, prompts, completions, self.batch_size, self.max_length
            ).tolist()


def func_name(fn: Callable) -> str:
    return getattr(fn, "__name__", None) or type(fn).__name__


def score(
    funcs: Sequence[RewardFunc],
    prompts: Sequence,
    completions: Sequence,
    weights: Sequence[float] | None = None,
    **kwargs,
) -> torch.Tensor:
    """Weighted sum of every reward function's scores, each checked: one finite number per completion.

    Raises `ValueError` naming the function that returned the wrong length, a non-number, NaN or infinity.
    Shape of the result: (len(completions),).
    """
    weights = weights or [1.0] * len(funcs)
    total = torch.zeros(len(completions), dtype=torch.float32)
    for fn, weight in zip(funcs, weights):
        values = fn(prompts=list(prompts), completions=list(completions), **kwargs)
        name = func_name(fn)
        if not isinstance(values, (list, tuple, torch.Tensor)) or len(values) != len(completions):
            got = len(values) if hasattr(values, "__len__") else type(values).__name__
            raise ValueError(f"reward function {name} returned {got} scores for {len(completions)} completions")
        for i, v in enumerate(values):
            v = v.item() if isinstance(v, torch.Tensor) else v
            if isinstance(v, bool) or not isinstance(v, Real):
                raise ValueError(f"reward function {name} returned a non-number for completion {i}: {v!r}")
            if not math.isfinite(v):
                raise ValueError(f"reward function {name} returned {v} for completion {i}: scores must be finite")
        total += weight * torch.as_tensor([float(v) for v in values])
    return total
