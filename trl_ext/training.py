"""Glue between a config node and TRL: build a TRL config or peft config from YAML, train, save an HF folder.

What the recipes share lives here, so each recipe reads top to bottom in one screen.
"""

from __future__ import annotations

import json
import logging
import os
import resource
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from omegaconf import DictConfig, OmegaConf
from transformers import Trainer, set_seed

from trl_ext.distributed import gathered_parameters, share_across_processes
from trl_ext.errors import ConfigError
from trl_ext.guards import guard_non_finite
from trl_ext.stages import Stage
from trl_ext.utils.device import fill_precision

logger = logging.getLogger(__name__)
ConfigT = TypeVar("ConfigT")


def to_dict(node: DictConfig | dict | None) -> dict[str, Any]:
    if node is None:
        return {}
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node)


def trainer_config(config_cls: type[ConfigT], node: DictConfig | dict, output_dir: str | Path, **fixed) -> ConfigT:
    """A TRL config (DPOConfig, RewardConfig, SFTConfig, ...) from the YAML `trainer` node, passed through whole.

    Every TRL field is therefore overridable from the command line; unknown keys raise TRL's own error. Device and
    precision left unset (null) are chosen for the machine (see `fill_precision`).
    """
    kwargs = fill_precision({**to_dict(node), **fixed})
    try:
        return config_cls(output_dir=str(output_dir), **kwargs)
    except TypeError as err:  # a misspelled field: name it, and where the valid names are documented
        where = f"{config_cls.__module__.split('.')[0]}.{config_cls.__name__}"
        raise ConfigError(f"trainer: {err}. Valid fields are those of {where}.") from err


def peft_config(node: DictConfig | dict | None, task_type: str = "CAUSAL_LM"):
    """A peft `LoraConfig` from the `peft` node (`peft=none` gives None: full fine-tuning)."""
    kwargs = to_dict(node)
    if not kwargs:
        return None
    from peft import LoraConfig

    if task_type == "SEQ_CLS":  # the fresh score head must train too
        kwargs.setdefault("modules_to_save", ["score"])
    return LoraConfig(task_type=task_type, **kwargs)


def save_model(trainer: Trainer, out_dir: Path) -> None:
    """Save the trained model as a plain HF folder (LoRA merged into the weights) plus its tokenizer.

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


def run_stage(
    cfg: DictConfig, run_dir: str | Path, name: str, build_trainer: Callable[..., Any], prompts_only: bool = False
) -> Path:
    """The life of a training stage: skip if complete, else load model path, tokenizer and data (preference pairs,
    or only their prompts), build the trainer with `build_trainer(cfg, path, tokenizer, data, work_dir)`, train
    (resuming), publish; return the output folder.
    """
    from trl_ext.data import load_preferences, load_prompts
    from trl_ext.models import load_tokenizer, model_path

    stage = Stage(run_dir, name, cfg, force=cfg.get("force", False))
    if stage.is_complete:
        return stage.output
    if to_dict(cfg.get("peft")) and os.environ.get("ACCELERATE_USE_FSDP", "").lower() == "true":
        raise ConfigError(
            "peft: LoRA stages are saved merged, which is verified under DeepSpeed, not FSDP: launch "
            "with conf/accelerate/zero3.yaml (or zero2.yaml), or train in full with peft=none"
        )
    stage.prepare()
    path = model_path(cfg.model)
    tokenizer = load_tokenizer(path, trust_remote_code=cfg.model.trust_remote_code)
    data, report = (load_prompts if prompts_only else load_preferences)(**node_kwargs(cfg.data))
    data = share_across_processes(data, stage.work / "data")
    set_seed(cfg.seed)  # fresh weights (a reward model's score head) from the seed, whatever the process layout
    trainer = build_trainer(cfg, path, tokenizer, data, stage.work)
    train_stage(stage, trainer, {"data_report.json": report.to_dict()})
    return stage.output


def train_stage(stage: Stage, trainer: Trainer, extra_files: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train (resuming from the stage's last complete checkpoint; stopping at a non-finite loss or gradient before
    it reaches the weights), evaluate, and publish the stage's output folder."""
    checkpoint = stage.last_checkpoint()
    if checkpoint:
        logger.info("Resuming stage %s from %s", stage.name, checkpoint)
    if isinstance(trainer, Trainer):  # our PPOTrainer guards its own losses
        guard_non_finite(trainer)
    result = trainer.train(resume_from_checkpoint=checkpoint)
    train_metrics = getattr(result, "metrics", result)
    eval_metrics = trainer.evaluate() if getattr(trainer, "eval_dataset", None) is not None else {}
    # peak resident memory of this process so far (Linux reports KiB): the stage's own when it runs alone
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    metrics = {**train_metrics, **eval_metrics, "peak_rss_gib": round(peak_gib, 3)}
    with stage.publish(metrics) as out:
        save_model(trainer, out)
        if trainer.accelerator.is_main_process:
            files = {"log_history.json": trainer.state.log_history, "metrics.json": metrics, **(extra_files or {})}
            for name, content in files.items():
                (out / name).write_text(json.dumps(content, indent=2, default=str))
    return metrics


def node_kwargs(node: DictConfig | dict, drop: tuple[str, ...] = ("name",)) -> dict[str, Any]:
    """A config node as keyword arguments, without its labels (`name` is for folder names only)."""
    return {k: v for k, v in to_dict(node).items() if k not in drop}
