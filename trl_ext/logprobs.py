"""Per-token log-probabilities of the label tokens without materialising the [tokens, vocab] logits.

At small model sizes the LM head dominates memory: SmolLM2-135M's head maps 576 features to 49,152 words, so 4,096
tokens of float32 logits are 0.8 GB, and their log-softmax as much again. TRL's fused head (`add_fused_lm_head`)
avoids that on Triton devices, but elsewhere (CPU) it scores every position, prompt and padding included, in one
chunk of up to 32,768 tokens. Here only the positions that have a label are projected, through torch's chunked
`linear_cross_entropy` (`reduction="none"`), whose backward recomputes each chunk instead of keeping the logits.

`add_chunked_lm_head(model)` swaps that computation in behind TRL's interface: `model(..., labels=labels,
fused_lm_head=True)` returns the same `FusedCausalLMOutput(log_probs=..., loss=...)` that TRL's trainers read, so
DPOTrainer's loss code runs untouched; any other call (generation, plain forward) goes to the model's own forward.
"""

from __future__ import annotations

import functools
import logging

import torch
import torch.nn.functional as F
from torch import nn

from trl_ext._compat import FusedCausalLMOutput

logger = logging.getLogger(__name__)

DEFAULT_CHUNK_TOKENS = 256  # rows of hidden states per chunk: 256 x 49,152 float32 logits = 48 MiB at a time


def chunk_options(chunk_tokens: int = DEFAULT_CHUNK_TOKENS) -> nn.LinearCrossEntropyOptions:
    return nn.LinearCrossEntropyOptions(chunking_method=None, batch_chunk_size=chunk_tokens)


def token_logps(
    hidden: torch.Tensor,
    head: nn.Module,
    labels: torch.Tensor,
    chunk_tokens: int = DEFAULT_CHUNK_TOKENS,
    stats: bool = False,
) -> dict[str, torch.Tensor]:
    """Log-probability of each next-token label, 0 where the label is -100; with `stats`, also the metrics TRL's
    trainers log (entropy, mean logit, whether the label is the top-1 word), computed without gradient.

    hidden: [batch, seq, features], the hidden state *before* each label (already shifted); labels: [batch, seq]
    (-100 = no label). Returns a dict of [batch, seq] tensors: `log_probs` (and `entropy`, `mean_logits`,
    `is_top1`). Only labelled rows are projected, `chunk_tokens` rows at a time. The head's weight follows the hidden
    states' dtype (bf16 under autocast, as autocast does for a linear layer); the log-softmax accumulates in float32.
    """
    mask = labels != -100
    rows, targets = hidden[mask], labels[mask]
    weight, bias = head.weight, head.bias
    if weight.dtype != rows.dtype:  # autocast does not cover linear_cross_entropy
        weight = weight.to(rows.dtype)
        bias = None if bias is None else bias.to(rows.dtype)
    options = chunk_options(chunk_tokens) if rows.size(0) > chunk_tokens else None  # one chunk: the plain path
    nll = F.linear_cross_entropy(rows, weight, targets, linear_bias=bias, reduction="none", options=options)
    per_row = {"log_probs": -nll.float()}
    if stats:
        per_row |= _chunked_stats(rows.detach(), weight.detach(), bias, targets, chunk_tokens)
    # masked_scatter keeps the result connected to the graph even when no label is valid
    return {k: v.new_zeros(mask.shape).masked_scatter(mask, v) for k, v in per_row.items()}


@torch.no_grad()
def _chunked_stats(rows, weight, bias, targets, chunk_tokens: int) -> dict[str, torch.Tensor]:
    empty = rows.new_zeros(0, dtype=torch.float32)
    parts = {"entropy": [empty], "mean_logits": [empty], "is_top1": [empty.bool()]}
    for start in range(0, rows.size(0), chunk_tokens):
        logits = F.linear(rows[start : start + chunk_tokens], weight, bias).float()
        logp = logits.log_softmax(-1)
        parts["entropy"].append(-(logp.exp() * logp).sum(-1))
        parts["mean_logits"].append(logits.mean(-1))
        parts["is_top1"].append(logits.argmax(-1) == targets[start : start + chunk_tokens])
    return {name: torch.cat(values) for name, values in parts.items()}


def supports_chunked_head(model: nn.Module) -> str | None:
    """None when `add_chunked_lm_head` can serve `model`; otherwise the reason (the model scales its logits)."""
    text_config = model.config.get_text_config()
    for name in ("final_logit_softcapping", "logit_scale", "output_multiplier", "lm_head_multiplier", "logits_scaling"):
        if getattr(text_config, name, None) not in (None, 1, 1.0):
            return f"{type(model).__name__} scales its logits ({name})"
    if getattr(text_config, "output_router_logits", False):
        return f"{type(model).__name__} is a mixture of experts (router losses)"
    return None


def add_chunked_lm_head(model: nn.Module, chunk_tokens: int = DEFAULT_CHUNK_TOKENS, stats: bool = False) -> bool:
    """Make `model(..., labels=labels, fused_lm_head=True)` compute log-probs with `token_logps` (and, with
    `stats`, the `entropy`, `mean_logits` and `is_top1` fields TRL's DPOTrainer logs for the policy).

    Call it on the causal LM itself (a peft model's base model), after TRL's `add_fused_lm_head` if TRL added one.
    Returns False, leaving the model as it was, when the model scales its logits (TRL's head handles those).
    """
    reason = supports_chunked_head(model)
    if reason:
        logger.warning("Chunked log-probs not used: %s; TRL's fused head computes them instead.", reason)
        return False
    previous_forward = model.forward

    @functools.wraps(type(model).forward)
    def forward(self, *args, fused_lm_head=False, labels=None, num_items_in_batch=None, **kwargs):
        if not fused_lm_head or kwargs.get("shift_labels") is not None:
            extra = {"fused_lm_head": True} if fused_lm_head else {}
            if labels is not None:
                extra["labels"] = labels
            if num_items_in_batch is not None:
                extra["num_items_in_batch"] = num_items_in_batch
            return previous_forward(*args, **kwargs, **extra)
        kwargs["use_cache"] = False
        hidden = self.base_model(*args, **kwargs).last_hidden_state[:, :-1]
        labels = labels[:, 1:].to(hidden.device)
        fields = token_logps(hidden, self.get_output_embeddings(), labels, chunk_tokens, stats)
        count = (labels != -100).sum().clamp(min=1) if num_items_in_batch is None else num_items_in_batch
        return FusedCausalLMOutput(loss=-fields["log_probs"].sum() / count, **fields)

    model.forward = forward.__get__(model)
    return True
