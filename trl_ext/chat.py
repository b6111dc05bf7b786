"""Conversations as TRL passes them around: a prompt or completion is either text or a list of
`{"role", "content"}` messages. One place converts between the two, renders prompts through a chat template (with an
optional system prompt) and encodes them as the left-padded batch that `generate` continues on the right.

A leaf module: it imports transformers and torch only, so data, rewards, sampling, evaluation, RLAIF and PPO can all
use it without depending on each other.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import BatchEncoding, PreTrainedTokenizerBase

Message = dict[str, str]
Messages = list[Message]
Prompt = str | Messages


def prompt_messages(prompt: Prompt) -> Messages:
    """A prompt as messages: text becomes one user turn."""
    return [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)


def completion_messages(completion: str | Messages) -> Messages:
    """A completion as messages: text becomes one assistant turn."""
    return [{"role": "assistant", "content": completion}] if isinstance(completion, str) else list(completion)


def text_of(item: str | Messages) -> str:
    """The text of a prompt or completion given as text or messages (turns joined by a blank line)."""
    return item if isinstance(item, str) else "\n\n".join(m["content"] for m in item)


def completion_like(prompt: Prompt, text: str) -> str | Messages:
    """A generated text in the form TRL's reward functions receive it: messages after a conversational prompt,
    plain text after a plain one."""
    return completion_messages(text) if isinstance(prompt, list) else text


def with_system_prompt(
    tokenizer: PreTrainedTokenizerBase, messages: Messages, system_prompt: str
) -> tuple[Messages, bool]:
    """`messages` led by a system turn, or, when the chat template has no system role (it raises, or drops the
    text), with the instruction prepended to the first user turn. Returns (messages, merged into the user turn)."""
    with_system = [{"role": "system", "content": system_prompt}, *[m for m in messages if m["role"] != "system"]]
    try:
        rendered = tokenizer.apply_chat_template(with_system, tokenize=False, add_generation_prompt=True)
        if system_prompt in rendered:
            return with_system, False
    except Exception:  # templates without a system role raise (jinja's TemplateError, or ValueError)
        pass
    merged, done = [], False
    for m in with_system[1:]:
        if m["role"] == "user" and not done:
            m, done = {**m, "content": f"{system_prompt}\n\n{m['content']}"}, True
        merged.append(m)
    return merged, True


def render_prompt(tokenizer: PreTrainedTokenizerBase, prompt: Prompt, system_prompt: str | None = None) -> str:
    """A conversational prompt through the chat template, ending with the opened assistant turn; a plain-text prompt
    as it is (prefixed by `system_prompt` if one is given)."""
    if isinstance(prompt, str):
        return f"{system_prompt}\n\n{prompt}" if system_prompt else prompt
    messages = with_system_prompt(tokenizer, prompt, system_prompt)[0] if system_prompt else prompt
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def prompt_lengths(
    tokenizer: PreTrainedTokenizerBase, prompts: Sequence[Prompt], system_prompt: str | None = None
) -> list[int]:
    """Token length of each rendered prompt (the sort key of batching prompts of like lengths)."""
    texts = [render_prompt(tokenizer, p, system_prompt) for p in prompts]
    return [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]


@dataclass
class EncodedPrompts:
    """A left-padded batch of prompts, and how many were cut to `max_length`."""

    inputs: BatchEncoding  # input_ids and attention_mask, each (b, q)
    truncated: int


def encode_prompts(
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[Prompt],
    max_length: int | None = None,
    system_prompt: str | None = None,
    device: torch.device | str | None = None,
) -> EncodedPrompts:
    """Render (`render_prompt`), tokenize and left-pad prompts for generation; a prompt longer than `max_length`
    tokens keeps its end (the turn being answered), whatever the tokenizer's own `truncation_side`."""
    texts = [render_prompt(tokenizer, p, system_prompt) for p in prompts]
    ids: list[Any] = tokenizer(texts, add_special_tokens=False)["input_ids"]
    truncated = 0
    if max_length is not None:
        truncated = sum(len(row) > max_length for row in ids)
        ids = [row[-max_length:] for row in ids]
    inputs = tokenizer.pad({"input_ids": ids}, padding=True, padding_side="left", return_tensors="pt")
    return EncodedPrompts(inputs.to(device) if device is not None else inputs, truncated)


def encode_completion(
    tokenizer: PreTrainedTokenizerBase, prompt: Prompt, completion: str | Messages, max_length: int
) -> tuple[list[int], int]:
    """Token ids of prompt + completion through the chat template, and the completion's length in tokens.

    The prompt is cut from the left when the whole exceeds `max_length` (the completion is what gets scored).
    """
    from trl_ext._compat import maybe_apply_chat_template

    example = {"prompt": prompt_messages(prompt), "completion": completion_messages(completion)}
    text = maybe_apply_chat_template(example, tokenizer)
    prompt_ids = tokenizer(text["prompt"], add_special_tokens=False)["input_ids"]
    completion_ids = tokenizer(text["completion"], add_special_tokens=False)["input_ids"][:max_length]
    keep = max(max_length - len(completion_ids), 0)
    return prompt_ids[len(prompt_ids) - keep :] + completion_ids, len(completion_ids)


def pad_batch(
    tokenizer: PreTrainedTokenizerBase, rows: Sequence[Sequence[int]], side: str = "right", device=None
) -> BatchEncoding:
    """Token-id rows as one padded batch (input_ids, attention_mask), padded on `side`."""
    batch = tokenizer.pad({"input_ids": [list(r) for r in rows]}, padding=True, padding_side=side, return_tensors="pt")
    return batch.to(device) if device is not None else batch
