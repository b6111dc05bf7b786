"""Length bias on the real HH-RLHF pairs (../shared/data), with the embedded SmolLM2-135M-Instruct:

1. a reward model trained with recipes/reward.py: Pearson/Spearman correlation between its score and the response
   length (tokens) on held-out chosen and rejected responses, before and after LengthControlledReward (regression,
   fitted on the training responses);
2. DPO with and without R-DPO (recipes/dpo.py rdpo_alpha=...) on the same pairs: mean length of greedy answers to
   held-out prompts, against the starting model.

Appends the tables to docs/benchmarks.md.

    python scripts/bench_length.py [--rows 300] [--dpo-steps 15] [--rdpo-alpha 0.01]
"""

from __future__ import annotations

import argparse
import datetime
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from bench_common import append_section, machine_line

from trl_ext.data import load_preferences
from trl_ext.eval import generate_batched, reward_scores
from trl_ext.eval.evaluate import correlation, rank
from trl_ext.models import load_policy, load_reward_model, load_tokenizer, resolve_model_path
from trl_ext.rewards import LengthControlledReward, RewardModelScorer

REPO = Path(__file__).resolve().parents[1]
HH = REPO.parent / "shared" / "data" / "hh-rlhf" / "harmless-base-test.shared.jsonl.gz"


def recipe(*args: str) -> None:
    subprocess.run([sys.executable, *args], cwd=REPO, check=True, stdout=subprocess.DEVNULL)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=300)
    parser.add_argument("--dpo-steps", type=int, default=15)
    parser.add_argument("--rdpo-alpha", type=float, default=0.01)
    parser.add_argument("--n-generate", type=int, default=16)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench_length_"))
    data_args = ["data=hh_rlhf", f"data.path={HH}", f"data.max_rows={args.rows}", "trainer.eval_strategy=no"]
    data, _ = load_preferences(str(HH), format="hh", on_invalid="skip", max_rows=args.rows, eval_size=0.1, seed=42)
    train, held_out = data["train"], data["eval"]

    # 1. reward model: score-length correlation before and after length control
    recipe("recipes/reward.py", *data_args, "trainer.num_train_epochs=1", f"hydra.run.dir={work / 'rm'}")
    rm_path = str(work / "rm" / "reward")
    tok = load_tokenizer(rm_path)
    rm = load_reward_model(rm_path, tok)
    prompts = list(held_out["prompt"]) * 2
    responses = list(held_out["chosen"]) + list(held_out["rejected"])
    raw = reward_scores(rm, tok, prompts, responses)
    controlled = LengthControlledReward(RewardModelScorer(rm, tok), mode="regression", tokenizer=tok).fit(
        list(train["prompt"]) * 2, list(train["chosen"]) + list(train["rejected"])
    )
    lc = torch.tensor(controlled(prompts, responses), dtype=torch.float64)
    lengths = torch.tensor(controlled.lengths(responses), dtype=torch.float64)
    accuracy = lambda s: (s[: len(held_out)] > s[len(held_out) :]).double().mean().item()  # noqa: E731
    rm_rows = [
        ("reward model score", raw.double(), accuracy(raw)),
        ("LengthControlledReward(regression)", lc, accuracy(lc)),
    ]

    # 2. DPO with and without R-DPO: mean generated length on held-out prompts
    base = resolve_model_path("embedded")
    runs = {"base (SmolLM2-135M-Instruct)": base}
    for name, alpha in (("DPO", 0.0), (f"R-DPO (alpha={args.rdpo_alpha})", args.rdpo_alpha)):
        folder = work / f"dpo_{alpha}"
        recipe(
            "recipes/dpo.py",
            *data_args,
            f"trainer.max_steps={args.dpo_steps}",
            f"rdpo_alpha={alpha}",
            f"hydra.run.dir={folder}",
        )
        runs[name] = str(folder / "dpo")
    gen_prompts = list(held_out["prompt"])[: args.n_generate]
    gen_lengths = {}
    for name, path in runs.items():
        tok = load_tokenizer(path)
        texts = generate_batched(load_policy(path, tok), tok, gen_prompts, max_new_tokens=128).texts
        gen_lengths[name] = sum(len(tok(t, add_special_tokens=False)["input_ids"]) for t in texts) / len(texts)

    header = (
        f"## Length bias on HH-RLHF ({datetime.date.today()})\n\n"
        f"Command: `python scripts/bench_length.py --rows {args.rows} --dpo-steps {args.dpo_steps} "
        f"--rdpo-alpha {args.rdpo_alpha}`. The first {args.rows} rows of {HH.name} (rows with an empty response "
        f"skipped), split 90/10 with seed 42: {len(train)} training pairs, {len(held_out)} held-out pairs. Reward "
        "model: recipes/reward.py on SmolLM2-135M-Instruct (LoRA, one epoch). DPO: recipes/dpo.py from "
        f"SmolLM2-135M-Instruct, {args.dpo_steps} steps of 8 pairs; greedy answers (up to 128 tokens) to "
        f"{len(gen_prompts)} held-out prompts.\n{machine_line()}\n"
    )
    table1 = ["| score | Pearson with length | Spearman with length | held-out accuracy |", "|---|---|---|---|"]
    table1 += [
        f"| {n} | {correlation(s, lengths):+.3f} | {correlation(rank(s), rank(lengths)):+.3f} | {a:.3f} |"
        for n, s, a in rm_rows
    ]
    table2 = ["| policy | mean generated length (tokens) | vs base |", "|---|---|---|"]
    first = next(iter(gen_lengths.values()))
    table2 += [f"| {n} | {v:.1f} | {v - first:+.1f} |" for n, v in gen_lengths.items()]
    append_section(header + "\n" + "\n".join(table1) + "\n\n" + "\n".join(table2))


if __name__ == "__main__":
    main()
