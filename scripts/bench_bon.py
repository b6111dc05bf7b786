"""Best-of-N generation throughput on the embedded SmolLM2-135M-Instruct, scoring excluded: our sampler against a
plain batched `generate` producing the same N x prompts samples, and against a naive loop (one `generate` per
prompt and per sample). Every sample has exactly `--new-tokens` tokens (EOS suppressed), so the work is equal.
Appends the table to docs/benchmarks.md.

    python scripts/bench_bon.py [--prompts 8] [--n 4] [--new-tokens 32]
"""

from __future__ import annotations

import argparse
import datetime
import json
import time
from pathlib import Path

import torch
from bench_common import append_section, machine_line

from trl_ext.models import load_policy, load_tokenizer, resolve_model_path
from trl_ext.sampling import BestOfNSampler

REPO = Path(__file__).resolve().parents[1]


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--n", type=int, default=4)
    parser.add_argument("--new-tokens", type=int, default=32)
    args = parser.parse_args()
    path = resolve_model_path("embedded")
    tok = load_tokenizer(path)
    model = load_policy(path, tok)
    rows = [json.loads(line) for line in (REPO / "trl_ext/data/demo/preferences.jsonl").read_text().splitlines()]
    prompts = [row["prompt"] for row in rows[: args.prompts]]
    gen = {"do_sample": True, "temperature": 1.0, "max_new_tokens": args.new_tokens, "min_new_tokens": args.new_tokens}
    sampler = BestOfNSampler(
        model, tok, scorer=lambda **kw: [], n=args.n, batch_size=args.prompts, generation_kwargs=gen
    )
    texts = [tok.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in prompts]
    batch = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)

    @torch.no_grad()
    def plain():
        model.generate(**batch, num_return_sequences=args.n, pad_token_id=tok.pad_token_id, **gen)

    @torch.no_grad()
    def naive():
        for text in texts:
            single = tok(text, return_tensors="pt", add_special_tokens=False)
            for _ in range(args.n):
                model.generate(**single, pad_token_id=tok.pad_token_id, **gen)

    tokens = args.prompts * args.n * args.new_tokens
    sampler.generate(prompts[:1])  # warm-up
    times = {
        "plain batched generate": timed(plain),
        "BestOfNSampler.generate": timed(lambda: sampler.generate(prompts)),
        "naive loop (per prompt, per sample)": timed(naive),
    }
    base = times["plain batched generate"]
    lines = ["| method | seconds | tokens per second | time vs plain generate |", "|---|---|---|---|"]
    lines += [f"| {k} | {v:.1f} | {tokens / v:.0f} | {v / base:.2f}x |" for k, v in times.items()]
    header = (
        f"## Best-of-N generation throughput ({datetime.date.today()})\n\n"
        f"Command: `python scripts/bench_bon.py --prompts {args.prompts} --n {args.n} --new-tokens {args.new_tokens}`"
        f". SmolLM2-135M-Instruct (embedded), float32, {args.prompts} prompts x N={args.n} samples x "
        f"{args.new_tokens} new tokens = {tokens} tokens per method, scoring excluded.\n{machine_line()}\n"
    )
    overhead = times["BestOfNSampler.generate"] / base - 1
    speedup = times["naive loop (per prompt, per sample)"] / times["BestOfNSampler.generate"]
    summary = (
        f"\nSampler overhead over plain generate: {overhead:+.1%}; sampler vs naive loop: {speedup:.1f}x faster.\n"
    )
    append_section(header + "\n" + "\n".join(lines) + "\n" + summary)


if __name__ == "__main__":
    main()
