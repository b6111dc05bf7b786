"""DPO benchmark, side by side in one run on the embedded SmolLM2-135M-Instruct, same pairs, batch size and max length:

- TRL 1.16's `DPOTrainer` with its defaults (bf16 autocast where supported, gradient checkpointing, reference
  log-probs computed at every step), full fine-tuning and LoRA;
- ours: `recipes/dpo.py`'s defaults (`trl_ext.dpo.LeanDPOTrainer`: chunked log-probs of the completion tokens only,
  packed batches, reference log-probs precomputed once), full and LoRA; ablations with a suffix (_nopack, _random,
  _fp32, _nochunk).

Each configuration runs in its own process. Reported: real (non-padding) tokens per second over the training steps
(first step excluded) and end to end (from building the trainer, so tokenisation and our reference pass count),
padded share of the batch slots, peak resident memory, and achieved model FLOP/s as a fraction of this machine's
measured matmul peak (model FLOPs per real token: 6P for full fine-tuning, 4P with LoRA (no weight gradients), plus
2P for the reference forward; P = all parameters; attention and recomputation are not counted).

    python scripts/bench_dpo.py [--pairs 48] [--batch 8] [--max-length 512]
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import time

from bench_common import REPO, append_section, machine_line, matmul_peak_flops, peak_rss_gib, run_worker

HH = REPO.parent / "shared" / "data" / "hh-rlhf" / "harmless-base-test.shared.jsonl.gz"
LORA = dict(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear")  # conf/peft/lora.yaml


def load_pairs(n: int):
    from trl_ext.data import load_preferences

    source = {"path": str(HH), "format": "hh", "on_invalid": "skip"} if HH.exists() else {"path": "demo"}
    data, _ = load_preferences(**source, eval_size=0, max_rows=n + 8)
    return data["train"].select(range(n)), "HH-RLHF harmless-base" if HH.exists() else "demo"


def worker(name: str, pairs: int, batch: int, max_length: int) -> dict:
    import torch
    from transformers import TrainerCallback

    from trl_ext.models import embedded_model_dir, load_policy, load_tokenizer

    model_dir = str(embedded_model_dir())
    tokenizer = load_tokenizer(model_dir)
    data, _ = load_pairs(pairs)
    lora = "_lora" in name
    common = dict(
        per_device_train_batch_size=batch,
        max_length=max_length,
        max_steps=pairs // batch,
        num_train_epochs=1,
        report_to="none",
        save_strategy="no",
        eval_strategy="no",
        logging_steps=1,
        seed=0,
    )
    marks: list[float] = []

    class Clock(TrainerCallback):
        def on_step_end(self, *args, **kwargs):
            marks.append(time.perf_counter())

    start = time.perf_counter()
    if name.startswith("trl"):
        from peft import LoraConfig
        from trl import DPOConfig, DPOTrainer

        args = DPOConfig(output_dir="/tmp/bench_dpo_trl", use_cpu=not torch.cuda.is_available(), **common)
        trainer = DPOTrainer(
            model=load_policy(model_dir, tokenizer),
            args=args,
            train_dataset=data,
            processing_class=tokenizer,
            peft_config=LoraConfig(**LORA) if lora else None,
            callbacks=[Clock()],
        )
    else:
        from hydra import compose, initialize_config_dir

        from trl_ext._compat import DPOConfig
        from trl_ext.config import peft_config, trainer_config
        from trl_ext.dpo import LeanDPOTrainer

        overrides = [f"peft={'lora' if lora else 'none'}"]  # ablations: ours_lora_fp32, ours_full_nochunk, ...
        overrides += ["trainer.bf16=false"] if "_fp32" in name else []
        overrides += ["lean.chunked_logps=false"] if "_nochunk" in name else []
        overrides += ["lean.packing=false"] if "_nopack" in name else []
        overrides += ["trainer.train_sampling_strategy=random"] if "_random" in name else []
        with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
            cfg = compose("dpo", overrides=overrides)
        trainer = LeanDPOTrainer(
            model=load_policy(model_dir, tokenizer),
            args=trainer_config(DPOConfig, cfg.trainer, "/tmp/bench_dpo_ours", **common),
            train_dataset=data,
            processing_class=tokenizer,
            peft_config=peft_config(cfg.peft),
            callbacks=[Clock()],
            **cfg.lean,
        )
    collate, slots = trainer.data_collator, []

    def counting_collator(examples):  # the padded share of every training batch, for both trainers alike
        batch = collate(examples)
        slots.append((batch["attention_mask"].sum().item(), batch["attention_mask"].numel()))
        return batch

    trainer.data_collator = counting_collator
    marks.append(time.perf_counter())
    trainer.train()
    end = time.perf_counter()
    logs = [log for log in trainer.state.log_history if "num_tokens" in log]
    computed = [log["padding_fraction"] for log in logs if "padding_fraction" in log]  # ours: after packing
    tokens = [logs[0]["num_tokens"]] + [b["num_tokens"] - a["num_tokens"] for a, b in zip(logs, logs[1:])]
    steps = [b - a for a, b in zip(marks, marks[1:])]
    return {
        "step_tokens_per_s": sum(tokens[1:]) / sum(steps[1:]),
        "e2e_tokens_per_s": sum(tokens) / (end - start),
        "tokens": sum(tokens),
        "setup_s": marks[0] - start,
        "median_step_s": statistics.median(steps[1:]),
        "padding_fraction": 1 - sum(real for real, _ in slots) / sum(total for _, total in slots),
        "computed_padding": statistics.fmean(computed) if computed else None,
        "bf16": bool(trainer.args.bf16),
        "gradient_checkpointing": bool(trainer.args.gradient_checkpointing),
        "params": sum(p.numel() for p in trainer.model.parameters()),
        "peak_rss_gib": peak_rss_gib(),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--worker")
    parser.add_argument("--pairs", type=int, default=48)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--runs", default="trl_full,ours_full,trl_lora,ours_lora")
    args = parser.parse_args()
    sizes = ("--pairs", str(args.pairs), "--batch", str(args.batch), "--max-length", str(args.max_length))
    if args.worker:
        import json

        print(json.dumps(worker(args.worker, args.pairs, args.batch, args.max_length)))
        return

    peaks = {"float32": matmul_peak_flops("float32"), "bfloat16": matmul_peak_flops("bfloat16")}
    runs = {name: run_worker(__file__, name, *sizes) for name in args.runs.split(",")}
    _, source = load_pairs(args.pairs)
    label = {"trl_full": "TRL DPOTrainer, full", "trl_lora": "TRL DPOTrainer, LoRA"}
    label |= {"ours_full": "trl_ext LeanDPOTrainer, full", "ours_lora": "trl_ext LeanDPOTrainer, LoRA"}
    ablation = {"_fp32": "float32", "_nochunk": "TRL's log-prob head", "_random": "random batches"}
    ablation |= {"_nopack": "padded batches (no packing)"}
    for name in runs:
        if name not in label:
            base_name = "ours_lora" if "_lora" in name else "ours_full"
            changes = ", ".join(text for key, text in ablation.items() if key in name)
            label[name] = f"{label[base_name]} with {changes}"
    lines = [
        "| run | tokens/s (steps) | tokens/s (end to end) | padded slots: batches / computed | peak RSS GiB "
        "| model FLOP/s (end to end) | of matmul peak | vs TRL: tokens/s (e2e) | vs TRL: memory |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in runs.items():
        flops_per_token = (4 if "_lora" in name else 6) * r["params"] + 2 * r["params"]
        achieved = flops_per_token * r["e2e_tokens_per_s"]
        peak = peaks["bfloat16" if r["bf16"] else "float32"]
        base = runs.get("trl_lora" if "_lora" in name else "trl_full", r)
        lines.append(
            f"| {label[name]} | {r['step_tokens_per_s']:.0f} | {r['e2e_tokens_per_s']:.0f} | "
            f"{r['padding_fraction']:.0%} / {r['computed_padding'] or r['padding_fraction']:.0%} | "
            f"{r['peak_rss_gib']:.2f} | {achieved / 1e9:.1f} G | {achieved / peak:.1%} | "
            f"{r['e2e_tokens_per_s'] / base['e2e_tokens_per_s']:.2f}x | "
            f"{r['peak_rss_gib'] / base['peak_rss_gib']:.2f}x |"
        )
    any_run = next(iter(runs.values()))
    text = (
        f"## DPO: trl_ext's LeanDPOTrainer against TRL's DPOTrainer ({datetime.date.today()})\n\n"
        f"Command: `python scripts/bench_dpo.py --pairs {args.pairs} --batch {args.batch} --max-length "
        f"{args.max_length}`. SmolLM2-135M-Instruct (embedded), the first {args.pairs} usable pairs of {source}, "
        f"{args.batch} pairs per step, one epoch ({args.pairs // args.batch} steps), {any_run['tokens']} real "
        "tokens. Each run is its own process.\n"
        f"{machine_line(peaks)}\n"
        f"Settings: bf16 autocast {any_run['bf16']}; gradient checkpointing TRL "
        f"{runs.get('trl_full', any_run)['gradient_checkpointing']}, ours "
        f"{runs.get('ours_full', any_run)['gradient_checkpointing']}.\n\n" + "\n".join(lines)
    )
    append_section(text)


if __name__ == "__main__":
    main()
