"""From responses sampled per prompt to a labeled preference dataset (TRL's conversational format plus the
labeler's metadata), ready for DPO; and the file it is saved as (jsonl or parquet, both read by `load_preferences`).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from trl_ext.chat import completion_messages, prompt_messages, text_of
from trl_ext.rlaif.labeler import ConstitutionalLabeler
from trl_ext.rlaif.verdicts import PairLabel, round_robin_wins

PAIR_MODES = ("best_worst", "all")
TIE_MODES = ("drop", "keep")


def label_responses(
    labeler: ConstitutionalLabeler,
    prompts: Sequence[Any],
    responses: Sequence[Sequence[str]],
    pairs: str = "best_worst",
    ties: str = "drop",
    distributed: bool = False,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], Counter]:
    """Compare every two distinct non-empty responses of each prompt, then make preference rows.

    `pairs="best_worst"`: one row per prompt, the response with the highest round-robin win rate against the
    lowest (with two responses, simply their comparison); `"all"`: a row per comparison. A verdict flagged
    uncertain is dropped (`ties="drop"`) or kept with `tie: true` (`ties="keep"`).
    Returns (rows, every comparison with its verdict, counts).
    """
    if pairs not in PAIR_MODES or ties not in TIE_MODES:
        raise ValueError(f"pairs must be one of {PAIR_MODES} and ties one of {TIE_MODES}, got {pairs!r}, {ties!r}")
    counts: Counter = Counter(prompts=len(prompts))
    candidates = []
    for texts in responses:
        stripped = [t.strip() for t in texts]
        counts["empty_responses"] += sum(not t for t in stripped)
        unique = list(dict.fromkeys(t for t in stripped if t))  # an empty response is not a DPO example
        counts["duplicate_responses"] += sum(bool(t) for t in stripped) - len(unique)
        candidates.append(unique)
    jobs = [
        (p, i, j) for p, texts in enumerate(candidates) for i in range(len(texts)) for j in range(i + 1, len(texts))
    ]
    labels = labeler.label(
        [prompts[p] for p, _, _ in jobs],
        [candidates[p][i] for p, i, _ in jobs],
        [candidates[p][j] for p, _, j in jobs],
        distributed=distributed,
    )
    verdicts: dict[int, dict[tuple[int, int], PairLabel]] = {}
    for (p, i, j), label in zip(jobs, labels):
        verdicts.setdefault(p, {})[(i, j)] = label
    comparisons = [
        {"prompt_index": p, "a": candidates[p][i], "b": candidates[p][j], **label.to_dict()}
        for (p, i, j), label in zip(jobs, labels)
    ]
    rows, meta = [], {"judge": labeler.name, "constitution": labeler.constitution.name}
    for p, texts in enumerate(candidates):
        if len(texts) < 2:
            counts["prompts_without_pair"] += 1
            continue
        for i, j in _selected(verdicts[p], len(texts), pairs):
            label = verdicts[p][(i, j)]
            if label.uncertain and (ties == "drop" or label.skipped):
                counts["ties_dropped"] += 1
                continue
            if label.chosen == "b":
                i, j, label = j, i, label.swapped()
            rows.append(_row(prompts[p], texts[i], texts[j], label, meta))
    counts.update(comparisons=len(jobs), pairs=len(rows), ties_kept=sum(row["tie"] for row in rows))
    return rows, comparisons, counts


def _selected(verdicts: dict[tuple[int, int], PairLabel], n: int, pairs: str) -> list[tuple[int, int]]:
    if pairs == "all" or n == 2:
        return list(verdicts)
    wins = round_robin_wins(n, verdicts)
    best = max(range(n), key=wins.__getitem__)
    worst = min((k for k in range(n) if k != best), key=wins.__getitem__)
    return [(min(best, worst), max(best, worst))]


def _row(prompt: Any, chosen: str, rejected: str, label: PairLabel, meta: dict[str, str]) -> dict[str, Any]:
    """A TRL conversational preference row; p_orders = P(chosen better) when shown first and when shown second."""
    return {
        "prompt": prompt_messages(prompt),
        "chosen": completion_messages(text_of(chosen)),
        "rejected": completion_messages(text_of(rejected)),
        "p_chosen": label.p,
        "margin": label.margin,
        "p_orders": list(label.p_orders),
        "principles": label.principles,
        "tie": label.uncertain,
        "position_flip": label.position_flip,
        "truncated": label.truncated,
        "suspect_injection": label.suspect_injection,
        **meta,
    }


def save_rows(rows: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Write rows as `.jsonl` or `.parquet` (by the suffix)."""
    path = Path(path)
    if path.suffix == ".parquet":
        from datasets import Dataset

        Dataset.from_list(list(rows)).to_parquet(str(path))
    elif path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    else:
        raise ValueError(f"{path}: save as .jsonl or .parquet")
    return path
