"""Convert one preference row, in any format we accept, to TRL's conversational preference format.

Accepted: TRL standard (`prompt`/`chosen`/`rejected` strings), TRL conversational (lists of `{role, content}`
messages, with an explicit or implicit prompt), and Anthropic's HH-RLHF transcripts (`chosen`/`rejected` strings
"\\n\\nHuman: ...\\n\\nAssistant: ..."). Output: `{"prompt": [messages], "chosen": [messages], "rejected": [messages]}`.
Problems are raised as `RowProblem` with a short kind (for counting) and a message a user can act on.
"""

from __future__ import annotations

import re
from typing import Any

from trl_ext._compat import extract_prompt

FORMATS = ("auto", "standard", "conversational", "hh")
ROLES = ("system", "user", "assistant")
_HH_SPEAKER = re.compile(r"\n\n(Human|Assistant):")
_HH_ROLE = {"Human": "user", "Assistant": "assistant"}


class RowProblem(ValueError):
    """A row that cannot be used; `kind` groups problems for counting (e.g. 'empty_response')."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


def _hh_normalise(text: str) -> str:
    """Accept a transcript whose first turn lacks the leading blank line ("Human: hi\n\nAssistant: ...")."""
    stripped = text.lstrip()
    return "\n\n" + stripped if stripped.startswith(("Human:", "Assistant:")) else text


def parse_hh_transcript(text: str) -> list[dict[str, str]]:
    """Split an HH-RLHF transcript into messages.

    Turns start at "\\n\\nHuman:" or "\\n\\nAssistant:"; the same words inside a turn (not after a blank line) stay
    text. Consecutive segments by the same speaker are one turn (joined by a blank line, as displayed).
    """
    if not isinstance(text, str):
        raise RowProblem("not_string", f"transcript is {type(text).__name__}, not a string")
    parts = _HH_SPEAKER.split(_hh_normalise(text))
    if len(parts) < 3:
        raise RowProblem("bad_transcript", 'transcript has no "\\n\\nHuman:" / "\\n\\nAssistant:" turns')
    if parts[0].strip():
        raise RowProblem("bad_transcript", f'text before the first "Human:" turn: {parts[0][:40]!r}')
    messages: list[dict[str, str]] = []
    for speaker, content in zip(parts[1::2], parts[2::2]):
        role, content = _HH_ROLE[speaker], content.strip()
        if messages and messages[-1]["role"] == role:
            messages[-1]["content"] = f"{messages[-1]['content']}\n\n{content}".strip()
        else:
            messages.append({"role": role, "content": content})
    if messages[0]["role"] != "user":
        raise RowProblem("bad_transcript", 'transcript does not start with a "Human:" turn')
    if messages[-1]["role"] != "assistant":
        raise RowProblem("bad_transcript", 'transcript does not end with an "Assistant:" turn')
    return messages


def detect_format(row: dict[str, Any]) -> str:
    """Guess a row's format from its keys and value types."""
    chosen = row.get("chosen")
    if isinstance(chosen, list):
        return "conversational"
    if isinstance(chosen, str) and "prompt" not in row and _HH_SPEAKER.search(_hh_normalise(chosen)):
        return "hh"
    return "standard"


def _require(row: dict[str, Any], keys: tuple[str, ...]) -> None:
    missing = [k for k in keys if k not in row or row[k] is None]
    if missing:
        raise RowProblem("missing_field", f"missing field(s) {missing}; row has {sorted(row)}")


def _check_messages(name: str, messages: Any, roles: tuple[str, ...]) -> None:
    if not isinstance(messages, list) or not messages:
        raise RowProblem("bad_messages", f"{name} must be a non-empty list of messages, got {messages!r:.60}")
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or "role" not in message or "content" not in message:
            raise RowProblem("bad_messages", f"{name}[{i}] is not a {{'role', 'content'}} message: {message!r:.60}")
        if message["role"] not in roles:
            raise RowProblem("bad_messages", f"{name}[{i}] has role {message['role']!r}, expected one of {roles}")
        if not isinstance(message["content"], str):
            raise RowProblem("not_string", f"{name}[{i}].content is {type(message['content']).__name__}, not text")


def to_conversational(row: dict[str, Any], fmt: str = "auto") -> dict[str, list[dict[str, str]]]:
    """Convert and validate one row; raise `RowProblem` naming what is wrong."""
    return validate_pair(_to_pair(row, fmt))


def _to_pair(row: dict[str, Any], fmt: str) -> dict[str, Any]:
    """A row in any accepted format as {prompt, chosen, rejected} messages, not yet validated."""
    if not isinstance(row, dict):
        raise RowProblem("not_object", f"row is {type(row).__name__}, not an object")
    if fmt not in FORMATS:
        raise ValueError(f"Unknown data format {fmt!r}: choose one of {FORMATS}")
    fmt = detect_format(row) if fmt == "auto" else fmt
    if fmt == "hh":
        _require(row, ("chosen", "rejected"))
        pair = extract_prompt(
            {"chosen": parse_hh_transcript(row["chosen"]), "rejected": parse_hh_transcript(row["rejected"])}
        )
    elif fmt == "standard":
        _require(row, ("prompt", "chosen", "rejected"))
        for key in ("prompt", "chosen", "rejected"):
            if not isinstance(row[key], str):
                raise RowProblem("not_string", f"{key} is {type(row[key]).__name__}; the standard format wants text")
        pair = {
            "prompt": [{"role": "user", "content": row["prompt"]}],
            "chosen": [{"role": "assistant", "content": row["chosen"]}],
            "rejected": [{"role": "assistant", "content": row["rejected"]}],
        }
    else:
        _require(row, ("chosen", "rejected"))
        _check_messages("chosen", row["chosen"], ROLES)
        _check_messages("rejected", row["rejected"], ROLES)
        pair = row if "prompt" in row else extract_prompt(row)
    return {k: pair[k] for k in ("prompt", "chosen", "rejected")}


def validate_pair(pair: dict[str, Any]) -> dict[str, list[dict[str, str]]]:
    """Check a conversational pair: a prompt ending in a user turn, non-empty assistant responses that differ."""
    _check_messages("prompt", pair["prompt"], ROLES)
    if pair["prompt"][-1]["role"] != "user":
        raise RowProblem(
            "diverging_turns" if pair["prompt"][-1]["role"] == "assistant" else "bad_messages",
            "prompt does not end with a user turn (chosen and rejected differ before their final assistant turn?)",
        )
    for key in ("chosen", "rejected"):
        _check_messages(key, pair[key], ROLES)
        if len(pair[key]) != 1:
            raise RowProblem("diverging_turns", f"{key} has {len(pair[key])} messages after the shared prompt, not 1")
        _check_messages(key, pair[key], ("assistant",))
        if not pair[key][0]["content"].strip():
            raise RowProblem("empty_response", f"{key} response is empty")
    if not any(m["content"].strip() for m in pair["prompt"]):
        raise RowProblem("empty_prompt", "prompt is empty")
    if pair["chosen"][0]["content"].strip() == pair["rejected"][0]["content"].strip():
        raise RowProblem("identical", "chosen and rejected responses are identical")
    return {
        "prompt": [{"role": m["role"], "content": m["content"]} for m in pair["prompt"]],
        "chosen": [{"role": "assistant", "content": pair["chosen"][0]["content"]}],
        "rejected": [{"role": "assistant", "content": pair["rejected"][0]["content"]}],
    }


def to_prompt(row: dict[str, Any], fmt: str = "auto") -> dict[str, list[dict[str, str]]]:
    """A prompt-only row (`{"prompt": str | messages}`) or a preference row's prompt, as `{"prompt": messages}`."""
    if isinstance(row, dict) and "chosen" in row:  # the prompt side of a preference row; responses may be anything
        prompt = _to_pair(row, fmt)["prompt"]
    else:
        if not isinstance(row, dict):
            raise RowProblem("not_object", f"row is {type(row).__name__}, not an object")
        _require(row, ("prompt",))
        prompt = row["prompt"]
    if isinstance(prompt, str):
        prompt = [{"role": "user", "content": prompt}]
    _check_messages("prompt", prompt, ROLES)
    if prompt[-1]["role"] != "user":
        raise RowProblem("bad_messages", "prompt does not end with a user turn")
    if not any(m["content"].strip() for m in prompt):
        raise RowProblem("empty_prompt", "prompt is empty")
    return {"prompt": [{"role": m["role"], "content": m["content"]} for m in prompt]}
