"""Training stages (SFT, reward model, DPO, PPO): the stage's model, tokenizer and data, a trainer, training that
resumes from the last complete checkpoint and stops at a non-finite gradient, and a published Hugging Face folder
(model + tokenizer, LoRA merged) with its trainer state, metrics and data report."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from datasets import DatasetDict, concatenate_datasets
from omegaconf import DictConfig
from transformers import Trainer, set_seed

from trl_ext.config import node_kwargs, peft_config, to_dict, trainer_config
from trl_ext.data import load_preferences, load_prompts
from trl_ext.data.fitting import fit_turns
from trl_ext.distributed import gathered_parameters, share_across_processes
from trl_ext.eval import drop_refusing_chosen, make_detector
from trl_ext.exceptions import ConfigError
from trl_ext.guards import guard_non_finite
from trl_ext.models import load_tokenizer, model_path
from trl_ext.stages.folder import TRAINER_STATE_NAME, Stage
from trl_ext.stages.lifecycle import POLICY, StageOutput, peak_rss_gib, run_stage, write_json

logger = logging.getLogger(__name__)
MIX_KEYS = {"path", "format", "split", "data_dir", "revision", "max_rows"}  # mix_with's source (`mix_into_train`)
BuildTrainer = Callable[[DictConfig, str, Any, Any, Path], Any]  # (cfg, model path, tokenizer, data, work dir)


def train_stage(
    cfg: DictConfig,
    run_dir: str | Path,
    name: str,
    build_trainer: BuildTrainer,
    makes: str = POLICY,
    prompts_only: bool = False,
) -> StageOutput:
    """A training stage: load the model path, tokenizer and data (preference pairs, or only their prompts), build the
    trainer with `build_trainer(cfg, path, tokenizer, data, work_dir)`, train, publish."""

    def work(stage: Stage):
        if to_dict(cfg.get("peft")) and os.environ.get("ACCELERATE_USE_FSDP", "").lower() == "true":
            raise ConfigError(
                "peft: LoRA stages are saved merged, which is verified under DeepSpeed, not FSDP: launch "
                "with conf/accelerate/zero3.yaml (or zero2.yaml), or train in full with peft=none"
            )
        path = model_path(cfg.model)
        tokenizer = load_tokenizer(path, trust_remote_code=cfg.model.trust_remote_code)
        data, report = (load_prompts if prompts_only else load_preferences)(**node_kwargs(cfg.data))
        files = {"data_report.json": report.to_dict()}
        if cfg.get("mix_with"):  # extra training rows (helpful pairs beside harmless ones); validation unchanged
            data, files["data_report.json"]["mixed_in"] = mix_into_train(data, cfg.mix_with, cfg.data, prompts_only)
        detector = cfg.get("drop_refusals")
        if detector and not prompts_only:  # the train split only: validation figures stay comparable
            train_rows, dropped = drop_refusing_chosen(data["train"], make_detector(detector))
            data = DatasetDict({**data, "train": train_rows})
            files["data_report.json"]["dropped_refusals"] = {"detector": detector, "train": dropped}
            logger.info("drop_refusals=%s: %d training pairs with a refusing chosen answer dropped", detector, dropped)
            if not len(train_rows):
                raise ConfigError(f"drop_refusals={detector}: every training pair's chosen answer is a refusal")
        max_length = cfg.get("trainer", {}).get("max_length")
        if not prompts_only and max_length:  # whole turns, not tokens, give way when a pair is too long
            fitted = {split: fit_turns(rows, tokenizer, max_length) for split, rows in data.items()}
            data = DatasetDict({split: rows for split, (rows, _) in fitted.items()})
            counts = {split: dict(c) for split, (_, c) in fitted.items()}
            files["data_report.json"]["fitted_to_max_length"] = counts
            logger.info("Prompts fitted to max_length=%d by their latest turns: %s", max_length, counts)
        data = share_across_processes(data, stage.work / "data")
        set_seed(cfg.seed)  # fresh weights (a reward model's score head) from the seed, whatever the process layout
        trainer = build_trainer(cfg, path, tokenizer, data, stage.work)
        metrics = train(stage, trainer)

        def write(out: Path) -> None:
            save_model(trainer, out)
            if trainer.accelerator.is_main_process:
                trainer.state.save_to_json(str(out / TRAINER_STATE_NAME))  # the log history is in it
                write_json(out, {"metrics.json": metrics, **files})

        return metrics, write

    return run_stage(cfg, run_dir, name, makes, work)


def mix_into_train(data: DatasetDict, spec, data_cfg: DictConfig, prompts_only: bool) -> tuple[DatasetDict, dict]:
    """`data` with every row of another source added to its training split, shuffled in by the data seed; the
    validation split stays as it was, so validation figures compare with a run without the mix.

    `spec` is a source (`demo`, a file, a hub id) or a node with `path` and any of `format`, `split`, `data_dir`,
    `revision`, `max_rows`: HH-RLHF's helpful-base beside harmless-base is
    `+reward.mix_with.path=Anthropic/hh-rlhf +reward.mix_with.data_dir=helpful-base`.
    """
    spec = {"path": spec} if isinstance(spec, str) else to_dict(spec)
    unknown = sorted(set(spec) - MIX_KEYS)
    if unknown or not spec.get("path"):
        raise ConfigError(f"mix_with: {spec!r} must name a source (path) and may set only {sorted(MIX_KEYS)}")
    kwargs = {"seed": data_cfg.seed, "on_invalid": data_cfg.on_invalid, **spec, "eval_size": "all"}
    extra, report = (load_prompts if prompts_only else load_preferences)(**kwargs)
    train = concatenate_datasets([data["train"], extra["eval"]]).shuffle(seed=data_cfg.seed)
    logger.info("mix_with=%s: %d training rows added to %d", spec["path"], len(extra["eval"]), len(data["train"]))
    return DatasetDict({**data, "train": train}), {**report.to_dict(), "train": len(extra["eval"])}


def train(stage: Stage, trainer) -> dict[str, Any]:
    """Train (resuming from the stage's last complete checkpoint; stopping at a non-finite gradient before it reaches
    the weights), evaluate when there is an eval set; the metrics, with this process's peak memory."""
    checkpoint = stage.last_checkpoint(getattr(trainer, "checkpoint_marker", TRAINER_STATE_NAME))
    if checkpoint:
        logger.info("Resuming stage %s from %s", stage.name, checkpoint)
    if isinstance(trainer, Trainer):  # our PPOTrainer guards its own losses
        guard_non_finite(trainer)
    result = trainer.train(resume_from_checkpoint=checkpoint)
    train_metrics = getattr(result, "metrics", result)
    eval_metrics = trainer.evaluate() if getattr(trainer, "eval_dataset", None) is not None else {}
    return {**train_metrics, **eval_metrics, "peak_rss_gib": peak_rss_gib()}


def save_model(trainer, out_dir: Path) -> None:
    """Save the trained model as a plain HF folder (LoRA merged into the weights, in place: nothing uses the trainer
    after its stage is saved, and a merged copy would double the memory) plus its tokenizer.

    Every rank must call this (collective under DeepSpeed); only the main process writes. Trainers that are not
    transformers `Trainer`s (our PPOTrainer) save themselves the same way.
    """
    if not isinstance(trainer, Trainer):
        trainer.save_model(out_dir)
        return
    model = trainer.accelerator.unwrap_model(trainer.model)
    if hasattr(model, "merge_and_unload"):  # a peft model: hand the next stage a full model it can load directly
        with gathered_parameters(model, trainer.accelerator):  # ZeRO-3: whole weights for the main process
            if trainer.accelerator.is_main_process:
                model.merge_and_unload().save_pretrained(out_dir)
    else:
        trainer.save_model(str(out_dir))
    if trainer.accelerator.is_main_process:
        trainer.processing_class.save_pretrained(out_dir)


def trl_trainer(
    trainer_cls,
    config_cls,
    cfg: DictConfig,
    model,
    tokenizer,
    data,
    work_dir: Path,
    task_type: str = "CAUSAL_LM",
    **extra,
):
    """A TRL trainer (SFT, reward, DPO) from a stage's node: `cfg.trainer` as its config, `cfg.peft` as adapters, the
    data's train and eval splits."""
    args = trainer_config(config_cls, cfg.trainer, work_dir)
    adapters = peft_config(cfg.peft, task_type=task_type, model=model)
    if adapters is not None and adapters.layers_to_transform and args.gradient_checkpointing:
        logger.warning(
            "peft.top_layers with trainer.gradient_checkpointing=true: checkpointing makes the inputs require grad, "
            "so backpropagation still runs through every block; set trainer.gradient_checkpointing=false for speed"
        )
    return trainer_cls(
        model=model,
        args=args,
        train_dataset=data["train"],
        eval_dataset=data["eval"],
        processing_class=tokenizer,
        peft_config=adapters,
        **extra,
    )
