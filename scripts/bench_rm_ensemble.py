"""Would an ensemble of reward models rank preference pairs better than its best member?

Each reward model scores the same pairs; the table gives every member's accuracy, the ensemble's (the mean of the
members' margins, each divided by its own standard deviation so that no member outvotes the rest by its scale; TRL's
Bradley-Terry rewards have no common scale), and how far the members' margins agree (Pearson correlation). An
ensemble gains where its members err on different pairs; members that err on the same pairs leave it where they are.

    python scripts/bench_rm_ensemble.py --pairs outputs/quality/data/study_val.jsonl \\
        outputs/quality/study/rm_top8_lr1e3/reward outputs/quality/study/rm_top8_lr1e3_all/reward \\
        outputs/quality/study/rm_top8_lr3e4/reward outputs/quality/study/rm_top8/reward

Appends a section to docs/benchmarks.md. Run it alone: it is one forward pass per answer and member.
"""

from __future__ import annotations

import argparse
import datetime
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import append_section, machine_line  # noqa: E402

from trl_ext.data import load_preferences  # noqa: E402
from trl_ext.eval import reward_scores  # noqa: E402
from trl_ext.models import load_reward_model, load_tokenizer  # noqa: E402


def margins(path: str, pairs, max_length: int) -> torch.Tensor:
    """One reward model's score of each chosen answer minus its score of the rejected one. Shape: (n,)."""
    tokenizer = load_tokenizer(path)
    model = load_reward_model(path, tokenizer)
    chosen, rejected = (
        reward_scores(model, tokenizer, pairs["prompt"], pairs[side], max_length=max_length)
        for side in ("chosen", "rejected")
    )
    return chosen - rejected


def ensemble(members: torch.Tensor) -> torch.Tensor:
    """The mean of the members' margins (rows), each divided by its standard deviation. Shape: (n,)."""
    return (members / members.std(dim=1, keepdim=True)).mean(0)


def accuracy(margin: torch.Tensor) -> float:
    return (margin > 0).float().mean().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", help="reward model folders (two or more)")
    parser.add_argument("--pairs", required=True, help="preference pairs, any format trl_ext reads")
    parser.add_argument("--max-length", type=int, default=256, help="tokens per answer with its prompt (cut left)")
    args = parser.parse_args()
    if len(args.models) < 2:
        parser.error("an ensemble needs two or more reward models")
    pairs = load_preferences(args.pairs, eval_size="all")[0]["eval"]  # every row, in file order
    start = time.perf_counter()
    members = torch.stack([margins(path, pairs, args.max_length) for path in args.models])
    seconds = time.perf_counter() - start
    corr = torch.corrcoef(members)
    off = corr[~torch.eye(len(args.models), dtype=torch.bool)]
    n = len(pairs)
    half = 1.96 * (0.25 / n) ** 0.5
    lines = [
        f"## Reward-model ensemble ({datetime.date.today().isoformat()})",
        "",
        f"Command: `python scripts/bench_rm_ensemble.py {' '.join(sys.argv[1:])}`. {machine_line()} "
        f"{n} pairs (an accuracy carries about "
        f"+-{half:.3f}, 95%), each answer cut to {args.max_length} tokens with its prompt from the left; scoring took "
        f"{seconds / 60:.1f} min.",
        "",
        "| reward model | accuracy |",
        "|---|---|",
        *(f"| {path} | {accuracy(m):.3f} |" for path, m in zip(args.models, members)),
        f"| ensemble of all {len(args.models)} (mean of standardized margins) | {accuracy(ensemble(members)):.3f} |",
        "",
        f"The members' margins correlate {off.min():.2f} to {off.max():.2f}. Best member "
        f"{max(accuracy(m) for m in members):.3f}, ensemble {accuracy(ensemble(members)):.3f}.",
    ]
    append_section("\n".join(lines))


if __name__ == "__main__":
    main()
