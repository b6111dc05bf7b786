"""Per-token log-probabilities of the label tokens without materialising the [tokens, vocab] logits.

At small model sizes the LM head dominates memory: SmolLM2-135M's head maps 576 features to 49,152 words, so 4,096
tokens of float32 logits are 0.8 GB, and their log-softmax as much again. TRL's fused head (`add_fused_lm_head`)
avoids that on Triton devices, but elsewhere (CPU) it scores every position, prompt and padding included, in one
chunk of up to 32,768 tokens. Here only the positions that have a label are projected, through torch's chunked
`linear_cross_entropy` (`reduction="none"`), whose backward recomputes each chunk instead of keeping the logits.

`add_chunked_lm_head(model)` swaps that computation in behind TRL's interface: `model(..., labels=labels,
fused_lm_head=True)` returns the same `FusedCausalLMOutput(log_probs=..., loss=...)` that TRL's trainers read, so
DPOTrainer's loss code runs untouched; any other call (generation, plain forward) goes to the model's own forward.

With `packing`, that forward also removes most padding: TRL pads every chosen and rejected sequence of a batch to the
longest one, and on preference data a third to a half of the slots are padding. The sequences are repacked, first-fit
decreasing, into as few rows of `pack_width` tokens (or the padded width, if longer) as they fit in, with position
ids that restart at each sequence; transformers then builds a block-diagonal causal mask from the position ids, so no
sequence attends to another. The hidden states are put back in the padded layout before the log-probs, so the result
is the padded computation's. Whether a model honours packed position ids is checked once, on a two-sequence probe.
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
# Tokens per packed row. Longer rows pack tighter; with a dense block mask (sdpa, eager) attention costs grow with
# the row, so this stays near TRL's usual max_length. Flash attention's varlen kernels do not mind longer rows.
DEFAULT_PACK_WIDTH = 512
# Forward arguments a packed call can take over (any other one set, e.g. inputs_embeds: the batch runs unpacked).
PACKABLE_KWARGS = {
    "input_ids",
    "attention_mask",
    "use_cache",
    "return_dict",
    "output_attentions",
    "output_hidden_states",
}


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


class PackPlan:
    """Where each right-padded row's tokens go when the rows are packed first-fit decreasing into rows of
    `pack_width` tokens (at least the padded width). `input_ids`, `position_ids`: [packed rows, packed width];
    `source`, `target`: flat indices of every real token in the packed and in the padded [rows, width] layout."""

    def __init__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, pack_width: int = 0):
        rows, width = attention_mask.shape
        capacity = max(width, pack_width)
        lengths = attention_mask.sum(1).tolist()
        fills: list[int] = []
        place = [0] * rows
        for i in sorted(range(rows), key=lambda i: -lengths[i]):
            row = next((r for r, fill in enumerate(fills) if fill + lengths[i] <= capacity), len(fills))
            if row == len(fills):
                fills.append(0)
            place[i] = (row, fills[row])
            fills[row] += lengths[i]
        self.rows, self.width, self.real = len(fills), max(fills), sum(lengths)
        positions = torch.zeros(self.rows, self.width, dtype=torch.long)
        ids = torch.zeros(self.rows, self.width, dtype=input_ids.dtype)
        source, target = [], []
        for i, (row, start) in enumerate(place):
            span = torch.arange(lengths[i])
            positions[row, start : start + lengths[i]] = span
            ids[row, start : start + lengths[i]] = input_ids[i, : lengths[i]].cpu()
            source.append(row * self.width + start + span)
            target.append(i * width + span)
        for row, fill in enumerate(fills):  # the tail of a row: its own segment, attended by nothing real
            positions[row, fill:] = torch.arange(self.width - fill)
        device = input_ids.device
        self.input_ids, self.position_ids = ids.to(device), positions.to(device)
        self.source, self.target = torch.cat(source).to(device), torch.cat(target).to(device)
        self.shape = (rows, width)

    @staticmethod
    def for_batch(input_ids: torch.Tensor, attention_mask: torch.Tensor | None, pack_width: int = 0) -> PackPlan | None:
        """A plan when packing saves slots (right-padded rows that fit in fewer slots); else None."""
        if attention_mask is None or attention_mask.dim() != 2 or attention_mask.size(0) < 2:
            return None
        right_padded = bool((attention_mask.cumprod(1).sum(1) == attention_mask.sum(1)).all())
        if not right_padded:
            return None
        plan = PackPlan(input_ids, attention_mask, pack_width)
        return plan if plan.rows * plan.width < attention_mask.numel() else None

    def unpack(self, hidden: torch.Tensor) -> torch.Tensor:
        """[packed rows, packed width, features] -> [rows, width, features], zeros at the padding."""
        flat = hidden.reshape(-1, hidden.size(-1)).index_select(0, self.source)
        out = hidden.new_zeros(self.shape[0] * self.shape[1], hidden.size(-1)).index_copy(0, self.target, flat)
        return out.view(*self.shape, hidden.size(-1))


@torch.no_grad()
def honours_packing(model: nn.Module) -> bool:
    """Whether `model`'s backbone keeps packed sequences apart. A 9- and a 4-token sequence run three ways (in eval
    mode, so that dropout does not blur the comparison): padded in two rows, packed in one row with restarting
    position ids, and concatenated as one sequence. Packing works when the packed hidden states are far closer to the
    padded ones than the concatenation's are (bf16 rounding differs between layouts; a leak moves them wholesale)."""
    backbone, training, device = model.base_model, model.training, model.device
    first = torch.arange(1, 10, device=device).remainder(model.get_input_embeddings().num_embeddings)
    second = first.flip(0)[:4]
    padded_ids = torch.stack([first, torch.cat([second, first[:5]])])
    mask = torch.tensor([[1] * 9, [1] * 4 + [0] * 5], device=device)
    row = torch.cat([first, second])[None]
    positions = torch.cat([torch.arange(9), torch.arange(4)]).to(device)[None]
    model.eval()
    try:
        padded = backbone(input_ids=padded_ids, attention_mask=mask, use_cache=False).last_hidden_state
        packed = backbone(input_ids=row, position_ids=positions, use_cache=False).last_hidden_state[0]
        joined = backbone(input_ids=row, use_cache=False).last_hidden_state[0]
    except Exception as error:  # noqa: BLE001 - whatever the failure, the answer is: do not pack this model
        logger.warning("Packing not used: %s cannot run packed sequences (%s)", type(model).__name__, error)
        return False
    finally:
        model.train(training)
    expected = torch.cat([padded[0], padded[1, :4]]).float()
    packed_error = (packed.float() - expected).abs().max()
    joined_error = (joined.float() - expected).abs().max()
    if not packed_error < 0.1 * joined_error:
        logger.warning("Packing not used: %s lets packed sequences attend to each other", type(model).__name__)
        return False
    return True


def supports_chunked_head(model: nn.Module) -> str | None:
    """None when `add_chunked_lm_head` can serve `model`; otherwise the reason (the model scales its logits)."""
    text_config = model.config.get_text_config()
    for name in ("final_logit_softcapping", "logit_scale", "output_multiplier", "lm_head_multiplier", "logits_scaling"):
        if getattr(text_config, name, None) not in (None, 1, 1.0):
            return f"{type(model).__name__} scales its logits ({name})"
    if getattr(text_config, "output_router_logits", False):
        return f"{type(model).__name__} is a mixture of experts (router losses)"
    return None


def add_chunked_lm_head(
    model: nn.Module,
    chunk_tokens: int = DEFAULT_CHUNK_TOKENS,
    stats: bool = False,
    packing: bool = False,
    pack_width: int = DEFAULT_PACK_WIDTH,
) -> bool:
    """Make `model(..., labels=labels, fused_lm_head=True)` compute log-probs with `token_logps` (and, with
    `stats`, the `entropy`, `mean_logits` and `is_top1` fields TRL's DPOTrainer logs for the policy); with `packing`,
    run the backbone on the batch's sequences packed into fewer rows (see the module docstring).

    Call it on the causal LM itself (a peft model's base model), after TRL's `add_fused_lm_head` if TRL added one.
    Returns False, leaving the model as it was, when the model scales its logits (TRL's head handles those).
    After each call `model.slot_counts` holds (real tokens, slots computed) of that forward.
    """
    reason = supports_chunked_head(model)
    if reason:
        logger.warning("Chunked log-probs not used: %s; TRL's fused head computes them instead.", reason)
        return False
    previous_forward = model.forward
    can_pack: list[bool] = [] if packing else [False]  # decided on the first call, in the training context

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
        plan = None
        if not args and all(value is None for key, value in kwargs.items() if key not in PACKABLE_KWARGS):
            plan = PackPlan.for_batch(kwargs["input_ids"], kwargs["attention_mask"], pack_width)
            if plan is not None and not can_pack:
                can_pack.append(honours_packing(self))
            plan = plan if plan is not None and can_pack[0] else None
        if plan is None:
            hidden = self.base_model(*args, **kwargs).last_hidden_state
            mask, slots = kwargs.get("attention_mask"), hidden.shape[:2].numel()
            self.slot_counts = (int(mask.sum()) if mask is not None else slots, slots)
        else:
            packed = self.base_model(input_ids=plan.input_ids, position_ids=plan.position_ids, use_cache=False)
            hidden = plan.unpack(packed.last_hidden_state)
            self.slot_counts = (plan.real, plan.rows * plan.width)
        hidden = hidden[:, :-1]
        labels = labels[:, 1:].to(hidden.device)
        fields = token_logps(hidden, self.get_output_embeddings(), labels, chunk_tokens, stats)
        count = (labels != -100).sum().clamp(min=1) if num_items_in_batch is None else num_items_in_batch
        return FusedCausalLMOutput(loss=-fields["log_probs"].sum() / count, **fields)

    model.forward = forward.__get__(model)
    return True
