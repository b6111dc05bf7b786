"""Fit multi-turn preference pairs into a trainer's `max_length` by dropping the earliest turns of the prompt.

TRL's trainers cut sequences by tokens, blind to turns: DPOTrainer keeps the start of prompt + response (a long
conversation loses the response being judged; a pair left with no response tokens is dropped), RewardTrainer drops
every pair longer than `max_length` without a word. HH-RLHF prompts are multi-turn and often longer than the 256
tokens a CPU run affords, so either way the pairs that teach the most, the long harmful conversations, are lost.
Here each prompt keeps its latest turns: whole turns are removed from the front (a user turn and the assistant
reply after it together) until prompt and the longer response fit, and the last user turn always stays. Counts of
what was shortened, and of pairs that still do not fit, are returned for the run's data report.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from datasets import Dataset
from transformers import PreTrainedTokenizerBase


def pair_length(tokenizer: PreTrainedTokenizerBase, prompt: list[dict], response: list[dict]) -> int:
    """Tokens of prompt + response through the chat template."""
    return len(tokenizer.apply_chat_template(prompt + response, tokenize=True, return_dict=False))


def fit_prompt(
    tokenizer: PreTrainedTokenizerBase, row: dict[str, Any], max_length: int
) -> tuple[list[dict[str, str]], str]:
    """The row's prompt with its earliest turns dropped until it fits with the longer response; and what happened:
    "fits", "shortened" or "too_long" (the last user turn alone is still too long: the trainer will cut tokens)."""
    prompt, responses = list(row["prompt"]), (row["chosen"], row["rejected"])

    def longest(p):
        return max(pair_length(tokenizer, p, r) for r in responses)

    if longest(prompt) <= max_length:
        return prompt, "fits"
    system = [m for m in prompt[:1] if m["role"] == "system"]
    turns = prompt[len(system) :]
    while len(turns) > 1:
        turns = turns[1:]
        while len(turns) > 1 and turns[0]["role"] != "user":  # start at a user turn
            turns = turns[1:]
        if longest(system + turns) <= max_length:
            return system + turns, "shortened"
    return system + turns, "too_long"


def fit_turns(dataset: Dataset, tokenizer: PreTrainedTokenizerBase, max_length: int) -> tuple[Dataset, Counter]:
    """Every conversational pair of `dataset` fitted by `fit_prompt`; counts of "fits", "shortened", "too_long"."""
    counts: Counter = Counter()

    def fit(row: dict[str, Any]) -> dict[str, Any]:
        prompt, outcome = fit_prompt(tokenizer, row, max_length)
        counts[outcome] += 1
        return {"prompt": prompt}

    fitted = dataset.map(fit, desc=f"Keeping the latest turns within {max_length} tokens", load_from_cache_file=False)
    return fitted, counts
