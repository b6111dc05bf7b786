"""Chain of thought for the judge: greedy reasoning written before the verdict, stopped where the judge starts
writing its own answer (the options are then scored after the reasoning, as without it)."""

from __future__ import annotations

import re

import torch
from transformers import PreTrainedTokenizerBase

from trl_ext.rlaif.scoring import OptionScorer

ANSWER_IN_REASONING = re.compile(r"(?:the )?better (?:response|reply) is", re.IGNORECASE)
ANSWER_STARTS = [f"{b}etter {r} is" for b in "bB" for r in ("response", "reply")]


@torch.no_grad()
def reason(
    scorer: OptionScorer, tokenizer: PreTrainedTokenizerBase, rows: list[list[int]], max_new_tokens: int
) -> list[str]:
    """Greedy reasoning for each row, cut before any answer it writes itself."""
    model = scorer.model
    model.eval()
    ids, mask, _ = scorer.batch(rows)
    out = model.generate(
        input_ids=ids,
        attention_mask=mask,
        max_new_tokens=max_new_tokens,
        do_sample=False,
        pad_token_id=scorer.pad_id,
        stop_strings=ANSWER_STARTS,  # the reasoning is cut there anyway: no need to write on
        tokenizer=tokenizer,
    )
    scorer.stats["tokens"] += ids.numel()
    scorer.stats["generated_tokens"] += out[:, ids.shape[1] :].numel()
    texts = tokenizer.batch_decode(out[:, ids.shape[1] :], skip_special_tokens=True)
    return [ANSWER_IN_REASONING.split(t, maxsplit=1)[0].strip() for t in texts]
