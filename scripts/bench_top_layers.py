"""LoRA on the top blocks only (`peft.top_layers=k trainer.gradient_checkpointing=false`) against the recipes' default
LoRA on every block with gradient checkpointing: seconds per step and peak memory of the SFT, reward-model and DPO
recipes on the same HH-RLHF pairs with the embedded SmolLM2-135M (30 blocks). The two settings run interleaved, each
in its own process, best of `--repeats`; prints a table and appends it to docs/benchmarks.md. What the setting costs
in accuracy is measured by the study in docs/results.md (scripts/bench_quality.py --study).

    python scripts/bench_top_layers.py [--steps 6] [--top 8] [--repeats 2]
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from bench_common import REPO, append_section, machine_line

HH = REPO.parent / "shared" / "data" / "hh-rlhf" / "harmless-base-test.shared.jsonl.gz"
RECIPES = ("sft", "reward", "dpo")


def measure(recipe: str, setting: list[str], steps: int, batch: int, folder: Path) -> dict:
    """Train `steps` steps of `batch` pairs in a fresh process; its training seconds per step and peak memory."""
    data = [f"data.path={HH}", f"data.max_rows={steps * batch + 8}", "data.eval_size=8"]
    args = [f"recipes/{recipe}.py", "model=smollm2", "data=hh_rlhf", *data, f"trainer.max_steps={steps}"]
    args += [f"trainer.per_device_train_batch_size={batch}", "trainer.eval_strategy=no", *setting]
    subprocess.run([sys.executable, *args, f"hydra.run.dir={folder}"], cwd=REPO, check=True, capture_output=True)
    metrics = json.loads((folder / recipe / "metrics.json").read_text())
    return {"step_s": metrics["train_runtime"] / steps, "peak_gib": metrics["peak_rss_gib"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--top", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    if not HH.exists():
        raise SystemExit(f"{HH} not found: this benchmark needs the shared HH-RLHF file beside the project")
    settings = {
        "all blocks, checkpointing": [],
        f"top {args.top} blocks": [f"peft.top_layers={args.top}", "trainer.gradient_checkpointing=false"],
    }
    best: dict[tuple[str, str], dict] = {}
    with tempfile.TemporaryDirectory(prefix="bench_top_layers_") as tmp:
        for repeat in range(args.repeats):
            for recipe in RECIPES:
                for name, setting in settings.items():  # interleaved: a slow spell hits both settings alike
                    run = measure(recipe, setting, args.steps, args.batch, Path(tmp) / f"{recipe}_{len(best)}_{repeat}")
                    kept = best.get((recipe, name))
                    best[recipe, name] = run if kept is None or run["step_s"] < kept["step_s"] else kept
                    print(recipe, name, run, flush=True)

    top = list(settings)[1]
    lines = [
        f"## LoRA on the top blocks only (peft.top_layers) ({datetime.date.today()})",
        "",
        f"`python scripts/bench_top_layers.py --steps {args.steps} --top {args.top} --repeats {args.repeats}`: "
        f"SmolLM2-135M, HH-RLHF harmless-base pairs, batch {args.batch}, max_length 256, best of {args.repeats} "
        f"interleaved runs. {machine_line()}",
        "",
        "| recipe | setting | seconds per step | peak memory | speed-up |",
        "|---|---|---|---|---|",
    ]
    for recipe in RECIPES:
        base = best[recipe, list(settings)[0]]["step_s"]
        for name in settings:
            r = best[recipe, name]
            lines.append(
                f"| {recipe} | {name} | {r['step_s']:.2f} | {r['peak_gib']:.2f} GiB | {base / r['step_s']:.2f}x |"
            )
    lines += [
        "",
        f"With gradient checkpointing, transformers makes the embeddings' output require grad, so backpropagation "
        f"runs through every block even when only the top ones have adapters; without it, it stops at the lowest "
        f"adapted block, and a step costs about a forward pass plus a backward through {args.top} blocks. "
        f"The SFT recipe gains least: TRL's SFT computes the [tokens, vocabulary] logits of every position, which "
        f"{top} does not change.",
    ]
    append_section("\n".join(lines))


if __name__ == "__main__":
    main()
