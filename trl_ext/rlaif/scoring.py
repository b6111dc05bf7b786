"""The judge's forward passes: the log-odds of option label A over B at the last position of each row, computing the
parts rows share only once where the model allows (the instructions once per `label` call, each comparison's
conversation once for all its rows), their KV cache repeated for the rows that continue them."""

from __future__ import annotations

import copy
import inspect
import logging
from collections import Counter

import torch
from transformers import PreTrainedModel

from trl_ext._compat import pad
from trl_ext._compat.hooks import repeat_cache
from trl_ext.rlaif.comparisons import Comparison

logger = logging.getLogger(__name__)


class OptionScorer:
    """Label log-odds of rows of token ids under `model`. `label_ids`: for each label (A, B), the token ids that
    spell it; `stats` counts forward passes and tokens forwarded (pads included)."""

    def __init__(
        self, model: PreTrainedModel, label_ids: list[list[int]], pad_id: int, share_prefix: bool, stats: Counter
    ):
        self.model, self.label_ids, self.pad_id, self.share_prefix, self.stats = (
            model,
            label_ids,
            pad_id,
            share_prefix,
            stats,
        )
        self.keep_one = "logits_to_keep" in inspect.signature(model.forward).parameters
        self.instructions = None  # (rows, KV cache, mask, seen) of the instructions, within one `label` call

    def new_call(self) -> None:
        """Forget the instructions' cache: it is shared by one `label` call's batches only (the judge may change)."""
        self.instructions = None

    def batch(self, rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Left-padded ids, attention mask and position ids (counted from each row's first real token)."""
        ids = pad([torch.tensor(r) for r in rows], self.pad_id, "left")
        mask = pad([torch.ones(len(r), dtype=torch.long) for r in rows], 0, "left")
        device = self.model.device
        return ids.to(device), mask.to(device), (mask.cumsum(-1) - 1).clamp(min=0).to(device)

    def label_log_odds(self, logits: torch.Tensor) -> torch.Tensor:
        """log P(label A) - log P(label B) from last-position logits (rows, vocab), each label's probability summed
        over its token variants. Shape: (rows,), float64."""
        self.stats["forward_passes"] += 1
        logps = logits.double().log_softmax(-1)
        label_a, label_b = (logps[:, variants].logsumexp(-1) for variants in self.label_ids)
        return (label_a - label_b).cpu()

    @torch.no_grad()
    def rows(self, rows: list[list[int]]) -> torch.Tensor:
        """Label log-odds at the last position of whole rows. Shape: (rows,)."""
        self.model.eval()
        ids, mask, positions = self.batch(rows)
        self.stats["tokens"] += ids.numel()
        kwargs = {"logits_to_keep": 1} if self.keep_one else {}
        logits = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, **kwargs).logits[:, -1]
        return self.label_log_odds(logits)

    @torch.no_grad()
    def chunk(self, chunk: list[Comparison]) -> torch.Tensor:
        """Label log-odds of every row of a chunk of comparisons. Shared parts are computed once where the model
        allows: the instructions (once per `label` call), then each conversation, then each row's suffix.
        Shape: (rows,)."""
        if self.share_prefix:
            headers = [job.header for job in chunk]
            levels = [[headers[0]]] if headers.count(headers[0]) == len(headers) else [headers]
            levels += [[job.prefix for job in chunk], [suffix for job in chunk for suffix in job.suffixes]]
            try:
                return self.levels(levels)
            except (AttributeError, TypeError, NotImplementedError) as err:
                logger.info("The judge's KV cache cannot be shared (%s): judging whole rows", err)
                self.share_prefix = False
        return self.rows([row for job in chunk for row in job.rows()])

    def levels(self, levels: list[list[list[int]]]) -> torch.Tensor:
        """Rows built level by level: each row of a level continues row i // r of the previous level (r = the ratio of
        their sizes), whose KV cache is repeated r times. Each level is left padded, so pads sit between levels,
        masked, and positions count real tokens only. The label log-odds at the last level's last position."""
        self.model.eval()
        kwargs = {"logits_to_keep": 1} if self.keep_one else {}
        cache, mask, seen = None, None, None
        for depth, rows in enumerate(levels):
            if depth == 0 and self.instructions is not None and self.instructions[0] == rows:
                cache, mask, seen = copy.deepcopy(self.instructions[1]), *self.instructions[2:]
                continue
            ids, level_mask, positions = self.batch(rows)
            self.stats["tokens"] += ids.numel()
            if cache is not None:
                repeats = len(rows) // mask.shape[0]
                repeat_cache(cache, repeats)
                mask, seen = mask.repeat_interleave(repeats, 0), seen.repeat_interleave(repeats, 0)
                positions = (seen[:, None] + level_mask.cumsum(-1) - 1).clamp(min=0)
            mask = level_mask if mask is None else torch.cat([mask, level_mask], -1)
            last = depth == len(levels) - 1
            out = self.model(
                input_ids=ids,
                attention_mask=mask,
                position_ids=positions,
                past_key_values=cache,
                use_cache=not last,
                **kwargs,
            )
            cache, seen = out.past_key_values, level_mask.sum(-1) + (0 if seen is None else seen)
            if depth == 0 and len(rows) == 1 and not last:  # the instructions: kept for this call's other batches
                self.instructions = (rows, copy.deepcopy(cache), mask, seen)
        return self.label_log_odds(out.logits[:, -1])
