"""Held-out metrics for policies and reward models on conversational preference pairs.

Policies are judged by the DPO implicit reward r(x, y) = beta * log(pi(y|x) / pi_ref(y|x)) (Rafailov et al. 2023,
https://arxiv.org/abs/2305.18290): a pair counts as correct when r(chosen) > r(rejected). Reward models by their
score. Every model also answers a few eval prompts greedily (`trl_ext.eval.generation`: length, examples, KL proxy).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from trl_ext._compat import selective_log_softmax
from trl_ext.chat import Messages, Prompt, encode_completion, pad_batch


def _batches(items: Sequence, batch_size: int, desc: str) -> Any:
    starts = range(0, len(items), batch_size)
    return (items[i : i + batch_size] for i in tqdm(starts, desc=desc, leave=False, disable=len(starts) < 2))


@torch.no_grad()
def completion_logps(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[Prompt],
    completions: Sequence[Messages],
    batch_size: int = 8,
    max_length: int = 256,
) -> torch.Tensor:
    """Sum of log pi(completion tokens | prompt) for each pair; prompts too long are cut from the left. Shape: (n,)."""
    model.eval()
    encoded = [encode_completion(tokenizer, p, c, max_length) for p, c in zip(prompts, completions)]
    out = []
    for batch in _batches(encoded, batch_size, "log-probs"):
        inputs = pad_batch(tokenizer, [ids for ids, _ in batch], "right", model.device)
        ids = inputs["input_ids"]
        logits = model(**inputs).logits[:, :-1]
        token_logps = selective_log_softmax(logits.float(), ids[:, 1:])  # position t predicts token t+1
        for i, (row, n_completion) in enumerate(batch):
            out.append(token_logps[i, len(row) - 1 - n_completion : len(row) - 1].sum().item())
    return torch.tensor(out)


def preference_metrics(chosen: torch.Tensor, rejected: torch.Tensor, prefix: str = "") -> dict[str, float]:
    """Accuracy (strictly greater), mean margin, and the means of both scores. Inputs shape: (n,)."""
    margin = chosen - rejected
    return {
        f"{prefix}accuracy": (margin > 0).float().mean().item(),
        f"{prefix}margin": margin.mean().item(),
        f"{prefix}chosen": chosen.mean().item(),
        f"{prefix}rejected": rejected.mean().item(),
    }
