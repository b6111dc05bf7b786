"""PPO benchmark, side by side in one run on the embedded SmolLM2-135M-Instruct:

- ours (`trl_ext.ppo.PPOTrainer`) against the last upstream PPO (`trl.experimental.ppo.PPOTrainer` of trl==1.12.0,
  installed by this script into its own virtual environment `.bench/trl112`), at equal settings: 4 prompts per
  update, 32 response tokens, one PPO epoch, float32, a reward model and a value model from the same base;
- ours in memory-lean mode (LoRA policy; the reference is the base with adapters disabled);
- DPO at 2 pairs per step (4 sequences, as PPO's 4 rollouts), full and LoRA: TRL 1.16's DPOTrainer with its
  defaults, and `recipes/dpo.py`'s defaults (`trl_ext.dpo.LeanDPOTrainer`, conf/dpo.yaml).

Each configuration runs in its own process; we report seconds per update (median, first update excluded) and the
process's peak resident memory, then the ratios. Results are appended to docs/benchmarks.md.

    python scripts/bench_ppo.py [--updates 5]
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench_common import REPO, append_section, machine_line, peak_rss_gib, run_worker

UPSTREAM_VENV = REPO / ".bench" / "trl112"
SETTINGS = dict(batch=4, response_length=32, ppo_epochs=1, lr=1e-6, seed=0)


def ensure_upstream_venv() -> Path:
    python = UPSTREAM_VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(UPSTREAM_VENV)], check=True)
        pip = [str(python), "-m", "pip", "install", "-q"]
        subprocess.run([*pip, "torch==2.13.0"], check=True)  # the CPU build first, as for the project
        subprocess.run([*pip, "trl==1.12.0", "peft", "transformers>=5,<6"], check=True)
    return python


def demo_prompts(n: int) -> list[list[dict]]:
    rows = [json.loads(line) for line in (REPO / "trl_ext/data/demo/preferences.jsonl").read_text().splitlines()]
    return [row["prompt"] for row in rows[:n]]


# ----- workers (each in its own process) ---------------------------------------------------------------------------
def worker_upstream(model_dir: str, updates: int) -> dict:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer, TrainerCallback
    from trl.experimental.ppo import PPOConfig, PPOTrainer

    tok = AutoTokenizer.from_pretrained(model_dir, padding_side="left")
    tok.pad_token = "<|endoftext|>"
    prompts = demo_prompts(SETTINGS["batch"] * updates)
    ids = [tok.apply_chat_template(p, add_generation_prompt=True, tokenize=True, return_dict=False) for p in prompts]
    data = Dataset.from_dict({"input_ids": ids})
    load = dict(dtype=torch.float32)
    policy, ref = (AutoModelForCausalLM.from_pretrained(model_dir, **load) for _ in range(2))
    reward, value = (
        AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=1, **load) for _ in range(2)
    )
    for m in (reward, value):
        m.config.pad_token_id = tok.pad_token_id
    args = PPOConfig(
        output_dir="/tmp/bench_upstream_ppo",
        use_cpu=True,
        bf16=False,
        per_device_train_batch_size=4,
        gradient_accumulation_steps=1,
        num_mini_batches=1,
        num_ppo_epochs=1,
        total_episodes=len(ids),
        response_length=SETTINGS["response_length"],
        local_rollout_forward_batch_size=4,
        learning_rate=SETTINGS["lr"],
        stop_token="eos",
        report_to="none",
        save_strategy="no",
        num_sample_generations=0,
        seed=SETTINGS["seed"],
        gradient_checkpointing=False,
    )
    marks = []

    class Clock(TrainerCallback):
        def on_step_end(self, *a, **k):
            marks.append(time.perf_counter())

    trainer = PPOTrainer(
        args=args,
        processing_class=tok,
        model=policy,
        ref_model=ref,
        reward_model=reward,
        value_model=value,
        train_dataset=data,
        callbacks=[Clock()],
    )
    marks.append(time.perf_counter())
    trainer.train()
    return {"update_s": [b - a for a, b in zip(marks, marks[1:])]}


def worker_ours(model_dir: str, updates: int, lora: bool) -> dict:
    import torch
    from datasets import Dataset

    from trl_ext.models import load_policy, load_reward_model, load_tokenizer
    from trl_ext.ppo import PPOConfig, PPOTrainer

    peft_config = None
    if lora:  # imported only when used, so the full run's memory has nothing the upstream run lacks
        from peft import LoraConfig

        peft_config = LoraConfig(r=16, lora_alpha=32, target_modules="all-linear")

    tok = load_tokenizer(model_dir)
    data = Dataset.from_dict({"prompt": demo_prompts(SETTINGS["batch"] * updates)})
    args = PPOConfig(
        output_dir="/tmp/bench_ours_ppo",
        use_cpu=True,
        bf16=False,
        per_device_train_batch_size=4,
        num_ppo_epochs=1,
        response_length=SETTINGS["response_length"],
        learning_rate=SETTINGS["lr"],
        temperature=0.7,
        save_strategy="no",
        sample_every=0,
        max_steps=updates,
        seed=SETTINGS["seed"],
    )
    trainer = PPOTrainer(
        load_policy(model_dir, tok, dtype=torch.float32),
        args,
        tok,
        data,
        reward_model=load_reward_model(model_dir, tok, dtype=torch.float32),
        peft_config=peft_config,
    )
    trainer.train()
    history = trainer.state.log_history
    return {
        "update_s": [h["time/update_s"] for h in history],
        "response_length": [h["response_length"] for h in history],
    }


def worker_dpo(model_dir: str, updates: int, lora: bool, lean: bool) -> dict:
    from peft import LoraConfig
    from transformers import TrainerCallback

    from trl_ext.data import load_preferences
    from trl_ext.models import load_policy, load_tokenizer

    tok = load_tokenizer(model_dir)
    pairs = load_preferences("demo")[0]["train"].select(range(2 * updates))
    common = dict(
        per_device_train_batch_size=2,
        max_steps=updates,
        max_length=256,
        report_to="none",
        save_strategy="no",
        logging_steps=1,
        seed=SETTINGS["seed"],
    )
    marks = []

    class Clock(TrainerCallback):
        def on_step_end(self, *a, **k):
            marks.append(time.perf_counter())

    peft_config = LoraConfig(r=16, lora_alpha=32, target_modules="all-linear") if lora else None
    kwargs = dict(train_dataset=pairs, processing_class=tok, callbacks=[Clock()], peft_config=peft_config)
    if lean:  # recipes/dpo.py's trainer and settings
        from hydra import compose, initialize_config_dir

        from trl_ext._compat import DPOConfig
        from trl_ext.config import trainer_config
        from trl_ext.dpo import LeanDPOTrainer

        with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
            cfg = compose("dpo")
        args = trainer_config(DPOConfig, cfg.trainer, "/tmp/bench_dpo", use_cpu=True, eval_strategy="no", **common)
        trainer = LeanDPOTrainer(model=load_policy(model_dir, tok), args=args, **kwargs, **cfg.lean)
    else:
        from trl import DPOConfig, DPOTrainer

        args = DPOConfig(output_dir="/tmp/bench_dpo", use_cpu=True, **common)
        trainer = DPOTrainer(model=load_policy(model_dir, tok), args=args, **kwargs)
    marks.append(time.perf_counter())
    trainer.train()
    return {"update_s": [b - a for a, b in zip(marks, marks[1:])]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--worker")
    parser.add_argument("--model-dir")
    parser.add_argument("--updates", type=int, default=5)
    args = parser.parse_args()
    if args.worker:
        fn = {
            "upstream": lambda: worker_upstream(args.model_dir, args.updates),
            "ours": lambda: worker_ours(args.model_dir, args.updates, lora=False),
            "ours_lora": lambda: worker_ours(args.model_dir, args.updates, lora=True),
            "dpo": lambda: worker_dpo(args.model_dir, args.updates, lora=False, lean=False),
            "dpo_lora": lambda: worker_dpo(args.model_dir, args.updates, lora=True, lean=False),
            "lean_dpo": lambda: worker_dpo(args.model_dir, args.updates, lora=False, lean=True),
            "lean_dpo_lora": lambda: worker_dpo(args.model_dir, args.updates, lora=True, lean=True),
        }[args.worker]
        result = fn()
        result["peak_rss_gib"] = peak_rss_gib()
        print(json.dumps(result))
        return

    from trl_ext.models import embedded_model_dir

    model_dir = str(embedded_model_dir())
    upstream_python = str(ensure_upstream_venv())
    sizes = ("--model-dir", model_dir, "--updates", str(args.updates))
    runs = {
        "upstream PPO (trl 1.12.0), full": run_worker(__file__, "upstream", *sizes, python=upstream_python),
        "trl_ext PPO, full": run_worker(__file__, "ours", *sizes),
        "trl_ext PPO, LoRA (memory-lean)": run_worker(__file__, "ours_lora", *sizes),
        "TRL 1.16 DPO defaults, full": run_worker(__file__, "dpo", *sizes),
        "TRL 1.16 DPO defaults, LoRA": run_worker(__file__, "dpo_lora", *sizes),
        "trl_ext DPO (recipes/dpo.py defaults), full": run_worker(__file__, "lean_dpo", *sizes),
        "trl_ext DPO (recipes/dpo.py defaults), LoRA": run_worker(__file__, "lean_dpo_lora", *sizes),
    }
    base = runs["upstream PPO (trl 1.12.0), full"]
    ours = runs["trl_ext PPO, full"]
    lines = [
        "| run | s per update/step (median, first excluded) | peak RSS GiB | time vs upstream PPO | "
        "memory vs upstream PPO | memory vs our full PPO |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in runs.items():
        r["median_s"] = statistics.median(r["update_s"][1:] or r["update_s"])
        lines.append(
            f"| {name} | {r['median_s']:.2f} | {r['peak_rss_gib']:.2f} | "
            f"{r['median_s'] / base['median_s']:.2f}x | {r['peak_rss_gib'] / base['peak_rss_gib']:.2f}x | "
            f"{r['peak_rss_gib'] / ours['peak_rss_gib']:.2f}x |"
        )
    table = "\n".join(lines)
    header = (
        f"## PPO: trl_ext against trl 1.12.0, and PPO against DPO memory ({datetime.date.today()})\n\n"
        f"Command: `python scripts/bench_ppo.py --updates {args.updates}`. SmolLM2-135M-Instruct (embedded), "
        f"{SETTINGS['batch']} prompts per PPO update, {SETTINGS['response_length']} response tokens, 1 PPO epoch, "
        "float32, reward and value models from the same base; DPO: 2 pairs (4 sequences) per step, TRL's defaults "
        "(bf16 autocast where the CPU has native bf16, gradient checkpointing) and ours (conf/dpo.yaml: "
        "LeanDPOTrainer, reference log-probs precomputed, the LoRA base held in bf16 where autocast is on). Each run "
        "is its own process; peak RSS is that process's.\n"
        f"{machine_line()} Upstream PPO: trl 1.12.0 in .bench/trl112.\n"
        f"Mean response length (ours): {statistics.mean(ours.get('response_length', [0])):.1f} tokens.\n"
    )
    append_section(header + "\n" + table)


if __name__ == "__main__":
    main()
