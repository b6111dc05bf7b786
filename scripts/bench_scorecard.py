"""Speed of the behaviour scorecard on the embedded SmolLM2-135M-Instruct: batched generation against a per-prompt
`generate` loop on the same XSTest prompts (generated tokens per second), and the wall time of the default scorecard
(conf/scorecard/default.yaml) for four arms, as the main job runs it.

    flock -x /tmp/trl_ext_cpu.lock python scripts/bench_scorecard.py [--prompts 32] [--new-tokens 32] [--no-card]
"""

from __future__ import annotations

import argparse
import datetime
import sys
import time
from pathlib import Path

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import REPO, append_section, machine_line  # noqa: E402

from trl_ext.chat import encode_prompts, prompt_messages  # noqa: E402
from trl_ext.data import load_preferences  # noqa: E402
from trl_ext.eval.generation import generate_batched  # noqa: E402
from trl_ext.eval.scorecard import (  # noqa: E402
    Arm,
    load_attacks,
    load_prompt_list,
    run_scorecard,
    split_by_label,
    subsample,
)
from trl_ext.models import load_policy, load_tokenizer, resolve_model_path  # noqa: E402

XSTEST = REPO.parent / "shared" / "data" / "xstest" / "xstest_prompts.csv"


@torch.no_grad()
def per_prompt_loop(model, tokenizer, prompts, max_new_tokens: int) -> tuple[list[str], int]:
    """The baseline: one greedy `generate` per prompt, no padding, no batching."""
    texts, tokens = [], 0
    for p in prompts:
        inputs = encode_prompts(tokenizer, [p]).inputs
        out = model.generate(
            **inputs, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id,
            temperature=None, top_p=None, top_k=None,
        )  # fmt: skip
        new = out[0, inputs["input_ids"].shape[1] :]
        ends = (new == tokenizer.eos_token_id).nonzero()
        n = int(ends[0]) + 1 if len(ends) else len(new)
        tokens += n
        texts.append(tokenizer.decode(new[:n], skip_special_tokens=True).strip())
    return texts, tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--no-card", action="store_true", help="skip the default scorecard's wall time")
    parser.add_argument("--card-only", action="store_true", help="only the default scorecard's wall time")
    args = parser.parse_args()

    path = resolve_model_path("embedded")
    tokenizer = load_tokenizer(path)
    model = load_policy(path, tokenizer)
    safe, unsafe = split_by_label(load_prompt_list(XSTEST))
    items = subsample(safe, args.prompts // 2, seed=7) + subsample(unsafe, args.prompts - args.prompts // 2, seed=7)
    prompts = [prompt_messages(i.prompt) for i in items]
    generate_batched(model, tokenizer, prompts[:2], max_new_tokens=4)  # warm-up
    lines = [f"## Scorecard cost ({datetime.date.today().isoformat()})"]
    if not args.card_only:
        lines = speed(model, tokenizer, prompts, args)
    del model
    if not args.no_card:
        lines += ["", *card_cost(path, safe, unsafe)]
    append_section("\n".join(lines))


def speed(model, tokenizer, prompts, args) -> list[str]:
    """Batched generation against the per-prompt loop, same prompts, same settings."""
    start = time.perf_counter()
    loop_texts, loop_tokens = per_prompt_loop(model, tokenizer, prompts, args.new_tokens)
    loop_s = time.perf_counter() - start
    start = time.perf_counter()
    out = generate_batched(model, tokenizer, prompts, max_new_tokens=args.new_tokens, batch_size=args.batch_size)
    batched_s = time.perf_counter() - start
    batched_tokens = sum(out.n_tokens)
    same = sum(a == b for a, b in zip(out.texts, loop_texts))
    ratio = (batched_tokens / batched_s) / (loop_tokens / loop_s)

    lines = [
        f"## Scorecard generation speed ({datetime.date.today().isoformat()})",
        "",
        f"Command: `python scripts/bench_scorecard.py {' '.join(sys.argv[1:])}`. SmolLM2-135M-Instruct (embedded), "
        f"float32, {len(prompts)} XSTest prompts, greedy, up to {args.new_tokens} new tokens. {machine_line()}",
        "",
        "| method | seconds | generated tokens | tokens per second | speed-up |",
        "|---|---|---|---|---|",
        f"| per-prompt `generate` loop | {loop_s:.1f} | {loop_tokens} | {loop_tokens / loop_s:.1f} | 1.00x |",
        f"| `generate_batched` (batch {args.batch_size}, sorted by length, {out.calls} calls) | {batched_s:.1f} | "
        f"{batched_tokens} | {batched_tokens / batched_s:.1f} | {ratio:.2f}x |",
        "",
        f"Identical answers (greedy, batched with left padding vs alone): {same} of {len(prompts)}.",
    ]
    return lines


def card_cost(path: str, safe, unsafe) -> list[str]:
    """Wall time of the default scorecard for four arms, as the main job runs it."""
    cfg = yaml.safe_load((REPO / "conf" / "scorecard" / "default.yaml").read_text())
    templates = yaml.safe_load((REPO / "conf" / "jailbreak" / "default.yaml").read_text())
    data, _ = load_preferences("demo")  # the main job's data
    data_prompts = list(data["eval"]["prompt"][: cfg["n_data"]])
    arms = {
        "base": Arm(path),
        "base + system prompt": Arm(path, cfg["system_prompt"]),
        "sft (same weights)": Arm(path),
        "dpo (same weights)": Arm(path),
    }
    start = time.perf_counter()
    card = run_scorecard(
        arms,
        path,
        subsample(safe, cfg["n_safe"], cfg["seed"]),
        subsample(unsafe, cfg["n_unsafe"], cfg["seed"]),
        load_attacks(templates, cfg["templates"]),
        data_prompts,
        scorer=None,
        detector=cfg["detector"],
        max_new_tokens=cfg["max_new_tokens"],
        batch_size=cfg["batch_size"],
        max_prompt_length=cfg["max_prompt_length"],
        attack_prompts=cfg["attack_prompts"],
    )
    total = time.perf_counter() - start
    gen = sum(a["seconds"] for a in card["arms"].values())
    tokens = sum(a["generated_tokens"] for a in card["arms"].values())
    return [
        f"Command: `python scripts/bench_scorecard.py {' '.join(sys.argv[1:])}`. "
        f"Default scorecard (conf/scorecard/default.yaml: {cfg['n_safe']} safe, {cfg['n_unsafe']} unsafe, "
        f"{len(cfg['templates'])} templates x {cfg['attack_prompts']}, {cfg['n_data']} demo-data prompts, "
        f"{cfg['max_new_tokens']} new tokens, detector `{cfg['detector']}`) for 4 arms of SmolLM2-135M "
        f"({card['counts']['per_arm']} answers each): **{total:.0f} s** in all; generation {gen:.0f} s "
        f"({tokens} tokens, {tokens / gen:.0f} tokens/s), KL drift {card['seconds']['drift']:.0f} s, "
        f"detector {card['seconds']['detector']:.0f} s. The two trained arms reuse the base weights here "
        "(the same cost as separate folders, less one model load each).",
    ]


if __name__ == "__main__":
    main()
