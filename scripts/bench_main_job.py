"""Benchmark the main job: wall time of the SFT -> DPO -> eval pipeline (and of its behaviour scorecard), then the DPO
stage alone (peak resident memory, tokens per second) on the pipeline's SFT model. Prints a table and appends it to
docs/benchmarks.md.

    python scripts/bench_main_job.py [extra Hydra overrides for both runs, e.g. model=tiny]
"""

from __future__ import annotations

import datetime
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_common import append_section, machine_line

from trl_ext.stages.evaluation import log_history

REPO = Path(__file__).resolve().parents[1]


def timed(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, *args], cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main(overrides: list[str]) -> None:
    work = Path(tempfile.mkdtemp(prefix="bench_main_job_"))
    pipeline_cmd = ["recipes/pipeline.py", *overrides, f"hydra.run.dir={work / 'pipeline'}"]
    pipeline_s = timed(pipeline_cmd)
    evaluation = json.loads((work / "pipeline" / "metrics.json").read_text())["models"]

    # The DPO stage alone, in a fresh child process, so its peak RSS is the stage's own.
    dpo_cmd = [
        "recipes/dpo.py",
        *overrides,
        "model=pretrained",
        f"model.path={work / 'pipeline' / 'sft'}",
        "trainer.eval_strategy=no",
        f"hydra.run.dir={work / 'dpo'}",
    ]
    dpo_s = timed(dpo_cmd)
    peak_gib = json.loads((work / "dpo" / "dpo" / "metrics.json").read_text())["peak_rss_gib"]  # the process's own
    history = log_history(work / "dpo" / "dpo")
    tokens = max(h.get("num_tokens", 0) for h in history)
    runtime = next(h["train_runtime"] for h in history if "train_runtime" in h)

    card = json.loads((work / "pipeline" / "scorecard.json").read_text())
    scorecard_s = sum(arm["seconds"] for arm in card["arms"].values()) + sum(card["seconds"].values())
    rows = [
        ("main job pipeline wall time (SFT + DPO + eval + scorecard)", f"{pipeline_s / 60:.1f} min"),
        (
            f"of which the behaviour scorecard ({len(card['arms'])} arms, {card['counts']['per_arm']} answers each)",
            f"{scorecard_s:.0f} s",
        ),
        ("DPO stage alone: wall time", f"{dpo_s:.0f} s"),
        ("DPO stage: training time", f"{runtime:.0f} s"),
        ("DPO stage: tokens per second (policy, chosen+rejected)", f"{tokens / runtime:.0f}"),
        ("DPO stage alone: peak resident memory of its process", f"{peak_gib:.2f} GiB"),
        (
            "held-out preference accuracy: SFT / DPO",
            f"{evaluation['sft']['implicit_accuracy']:.3f} / {evaluation['dpo']['implicit_accuracy']:.3f}",
        ),
    ]
    table = "\n".join(["| measure | value |", "|---|---|", *(f"| {a} | {b} |" for a, b in rows)])
    header = (
        f"## Main job ({datetime.date.today()})\n\n"
        f"Command: `python scripts/bench_main_job.py {' '.join(overrides)}`: it runs "
        f"`python {' '.join(pipeline_cmd[: 1 + len(overrides)])}`, then "
        f"`python {' '.join(dpo_cmd[: 1 + len(overrides)])} model=pretrained model.path=<its sft>`.\n"
        f"{machine_line()}\n"
    )
    append_section(header + "\n" + table)


if __name__ == "__main__":
    main(sys.argv[1:])
