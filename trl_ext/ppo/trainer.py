"""PPO for language models on current TRL and transformers: actor, critic, reward, reference.

`PPOTrainer.train` is the loop: each update is a rollout (`trl_ext.ppo.rollout.ExperienceMaker`: generate, score,
per-token rewards, GAE), learning (`trl_ext.ppo.learner.Learner`: PPO epochs with clipped losses) and the KL
controller's update. Logging, evaluation, checkpoints and the progress bar run on transformers' callback machinery
(`TrainerState`, `TrainerControl`, `CallbackHandler`, the integrations `report_to` selects), as in every TRL trainer.
The models are assembled by `trl_ext.models.heads`; accelerate runs mixed precision, gradient accumulation,
DDP/DeepSpeed and the checkpoints (with optimizer, scheduler, RNG and KL-controller state).
"""

from __future__ import annotations

import contextlib
import logging
import math
import shutil
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator, PartialState
from datasets import Dataset
from torch import nn
from torch.utils.data import DataLoader
from transformers import (
    DefaultFlowCallback,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PrinterCallback,
    ProgressCallback,
    Trainer,
    TrainerCallback,
    TrainerControl,
    TrainerState,
    get_scheduler,
)
from transformers.integrations import get_reporting_integration_callbacks
from transformers.trainer_callback import CallbackHandler
from transformers.trainer_pt_utils import get_parameter_names
from transformers.trainer_utils import TrainOutput, get_last_checkpoint
from transformers.utils import logging as hf_logging

from trl_ext._compat import enable_checkpointing, prepare_deepspeed, unwrap_model_for_generation
from trl_ext.chat import text_of
from trl_ext.distributed import gathered_parameters
from trl_ext.exceptions import ConfigError, DataError, NonFiniteError
from trl_ext.guards import forced_nan, non_finite_message
from trl_ext.kl import make_kl_controller
from trl_ext.logprobs import supports_chunked_head
from trl_ext.models.heads import PolicyAndValue, assemble_roles, merged_copy
from trl_ext.ppo import core
from trl_ext.ppo.config import PPOConfig
from trl_ext.ppo.learner import Learner
from trl_ext.ppo.rollout import Experience, ExperienceMaker, PromptBatch, Rollout, Samples, collate_prompts
from trl_ext.rewards import RewardModelScorer

logger = logging.getLogger(__name__)
TRAINER_STATE_NAME = "trainer_state.json"
# transformers' Trainer.get_decay_parameter_names: no weight decay on biases and norms
NO_DECAY_PATTERNS = [r"bias", r"layernorm", r"rmsnorm", r"(?:^|\.)norm(?:$|\.)", r"_norm(?:$|\.)"]
N_SAMPLES = 4  # sample completions shown in the logs


@dataclass
class PromptCounts:
    """Prompts cut to `max_prompt_length` so far; checkpointed with the run (accelerate's custom state)."""

    truncated: int = 0

    def state_dict(self) -> dict:
        return {"truncated": self.truncated}

    def load_state_dict(self, state: dict) -> None:
        self.truncated = state["truncated"]


def prompt_dataset(
    dataset: Dataset, tokenizer: PreTrainedTokenizerBase, keep_columns: bool, name: str = "train_dataset"
) -> Dataset:
    """`dataset` with a `prompt` column (text or messages, TRL's prompt-only format), its other columns kept for the
    reward functions unless `keep_columns` is False. A pre-tokenized dataset (`input_ids`, what TRL <= 1.12's
    PPOTrainer took) is decoded into text prompts, chat markup included, that are used as they are."""
    columns = dataset.column_names
    if "prompt" not in columns:
        if "input_ids" not in columns:
            raise DataError(
                f"{name} needs a `prompt` column (text, or a list of {{role, content}} messages); it has {columns}"
            )
        logger.info("%s: prompts decoded from its `input_ids` (TRL <= 1.12's pre-tokenized format)", name)
        pad = tokenizer.pad_token_id

        def decode(row: dict) -> dict:
            return {"prompt": tokenizer.decode([t for t in row["input_ids"] if t != pad])}

        dataset = dataset.map(decode, remove_columns=[c for c in ("input_ids", "attention_mask") if c in columns])
    return dataset if keep_columns else dataset.select_columns(["prompt"])


def make_optimizer(model: nn.Module, args: PPOConfig) -> torch.optim.Optimizer:
    """The optimizer transformers' Trainer builds from the same arguments: `args.optim` (by default fused AdamW),
    `learning_rate`, `adam_*`, `optim_args`, and `weight_decay` except on biases and norms."""
    decay = set(get_parameter_names(model, [nn.LayerNorm], NO_DECAY_PATTERNS))
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups = [
        {"params": [p for n, p in trainable if n in decay], "weight_decay": args.weight_decay},
        {"params": [p for n, p in trainable if n not in decay], "weight_decay": 0.0},
    ]
    optimizer_cls, kwargs = Trainer.get_optimizer_cls_and_kwargs(args, model)
    return optimizer_cls([g for g in groups if g["params"]], **kwargs)


def sample_table(prompts: Sequence, completions: Sequence[str], scores: Sequence[float]) -> str:
    """A few prompts (their last 60 characters), completions and scores as a markdown table, for the logs."""
    rows = [
        f"| {text_of(p)[-60:]!r} | {c[:120]!r} | {s:+.3f} |"
        for p, c, s in list(zip(prompts, completions, scores))[:N_SAMPLES]
    ]
    return "\n".join(["| prompt | completion | score |", "|---|---|---|", *rows])


class PPOTrainer:
    """PPO with a KL penalty to a reference (Ziegler et al. 2019; Ouyang et al. 2022).

    Args:
        model: the policy, a causal LM or a path/hub id.
        args: a `PPOConfig`.
        processing_class: the policy's tokenizer (with a pad token distinct from EOS: see `ensure_pad_token`).
        train_dataset: prompts, `{"prompt": str}` or `{"prompt": [messages]}` (TRL's prompt-only formats), or
            pre-tokenized `{"input_ids": [...]}` rows; every other column reaches the reward functions by name.
        reward_model: a one-label sequence classifier scoring prompt + response (optional).
        reward_funcs: functions `fn(prompts, completions, **kwargs) -> list[float]` (optional; summed with the reward
            model's score, weighted by `args.reward_weights`). As in TRL's GRPO they also receive `completion_ids`,
            `trainer_state` and the dataset's other columns.
        ref_model: the reference policy; default a frozen copy of the initial policy, or with a peft policy the same
            weights with adapters disabled (no second copy).
        value_model: the critic; default chosen in `trl_ext.models.heads.assemble_roles` (and logged).
        peft_config: wrap the policy with these adapters (e.g. `LoraConfig`).
        reward_processing_class: the reward model's tokenizer, if it differs from the policy's.
        eval_dataset: held-out prompts, evaluated at `args.eval_strategy` and by `evaluate()`.
        callbacks: `TrainerCallback`s (classes or instances), after the defaults and the `report_to` integrations.
    """

    checkpoint_marker = TRAINER_STATE_NAME  # written last in every checkpoint-N: its presence marks it complete

    def __init__(
        self,
        model: PreTrainedModel | str,
        args: PPOConfig,
        processing_class: PreTrainedTokenizerBase,
        train_dataset: Dataset,
        reward_model: PreTrainedModel | None = None,
        reward_funcs: Sequence[Callable] | None = None,
        ref_model: PreTrainedModel | None = None,
        value_model: PreTrainedModel | None = None,
        peft_config: Any = None,
        reward_processing_class: PreTrainedTokenizerBase | None = None,
        eval_dataset: Dataset | None = None,
        callbacks: Sequence[TrainerCallback | type[TrainerCallback]] | None = None,
    ):
        from trl_ext.models import load_policy

        self.args, self.processing_class = args, processing_class
        tok = processing_class
        if tok.pad_token_id is None or tok.pad_token_id == tok.eos_token_id:
            raise ValueError("PPO needs a pad token distinct from EOS (masks are built from it): see ensure_pad_token")
        if reward_model is None and not reward_funcs:
            raise ValueError("PPOTrainer needs a reward_model or at least one reward function")
        if args.eval_strategy != "no" and eval_dataset is None:
            raise ConfigError(f"eval_strategy={args.eval_strategy.value!r} needs an eval_dataset")
        hf_logging.set_verbosity(args.get_process_log_level())
        torch.manual_seed(args.seed)
        policy = load_policy(model, tok) if isinstance(model, str) else model
        roles = assemble_roles(policy, tok, reward_model, reward_processing_class, ref_model, value_model, peft_config)
        if args.gradient_checkpointing:
            for m in (roles.policy, roles.value_model):
                enable_checkpointing(m, args.gradient_checkpointing_kwargs)
        self.train_dataset = prompt_dataset(train_dataset, tok, not args.remove_unused_columns)
        self.eval_dataset = None
        if eval_dataset is not None:
            self.eval_dataset = prompt_dataset(eval_dataset, tok, not args.remove_unused_columns, "eval_dataset")

        self.accelerator = self._make_accelerator()
        logger.info("PPO: %s, %d process(es)", self.accelerator.distributed_type, self.accelerator.num_processes)
        world = self.accelerator.num_processes
        self.updates_per_epoch = max(len(self.train_dataset) // (args.rollout_batch_size * world), 1)
        total = args.max_steps if args.max_steps > 0 else math.ceil(args.num_train_epochs * self.updates_per_epoch)
        sharded = self.deepspeed is not None and self.deepspeed.zero_stage == 3  # the head is read outside a call
        self.chunked_logps = args.chunked_logps and not sharded and supports_chunked_head(roles.policy) is None
        self.model = PolicyAndValue(roles.policy, roles.value_model)
        optimizer = make_optimizer(self.model, args)
        n_steps = total * args.num_ppo_epochs * args.num_mini_batches  # optimizer steps
        scheduler = get_scheduler(
            args.lr_scheduler_type,
            optimizer,
            args.get_warmup_steps(n_steps),
            n_steps,
            scheduler_specific_kwargs=args.lr_scheduler_kwargs,
        )
        self.model, self.optimizer, self.lr_scheduler = self.accelerator.prepare(self.model, optimizer, scheduler)
        self.ref_model = self._prepare_frozen(roles.ref_model)
        self.reward_funcs = list(reward_funcs or [])
        if roles.reward_in_critic:
            scorer = RewardModelScorer(roles.value_model, reward_processing_class or tok, adapters_disabled=True)
            self.reward_funcs.insert(0, scorer)
        elif roles.reward_model is not None:
            prepared = self._prepare_frozen(roles.reward_model)
            self.reward_funcs.insert(0, RewardModelScorer(prepared, reward_processing_class or tok))
        self.kl_ctl = make_kl_controller(args.kl_coef, args.kl_target, args.kl_horizon)
        self.counts = PromptCounts()
        for stateful in (self.kl_ctl, self.counts):
            self.accelerator.register_for_checkpointing(stateful)
        self.rollout = ExperienceMaker(args, tok, self.reward_funcs, self.chunked_logps)
        self.learner = Learner(
            self.accelerator, self.model, self.optimizer, self.lr_scheduler, args, self.chunked_logps, self._check
        )
        self._init_callbacks(total, callbacks)

    # ----- set-up -----------------------------------------------------------------------------------------------
    def _make_accelerator(self) -> Accelerator:
        """The device comes from the process state, as in transformers' Trainer (no `cpu=` here: it would turn a
        DeepSpeed launch on CPU into plain DDP)."""
        args = self.args
        PartialState(cpu=args.use_cpu)
        accelerator = Accelerator(
            gradient_accumulation_steps=args.gradient_accumulation_steps,
            mixed_precision="bf16" if args.bf16 else ("fp16" if args.fp16 else "no"),
        )
        self.deepspeed = accelerator.state.deepspeed_plugin
        if self.deepspeed is not None:  # no dataloader is prepared with the model: tell DeepSpeed the micro-batch
            ds_config = self.deepspeed.deepspeed_config
            fill = {
                "train_micro_batch_size_per_gpu": args.per_device_train_batch_size,
                "gradient_clipping": args.max_grad_norm or 0.0,  # DeepSpeed clips inside its step
            }
            ds_config.update({k: v for k, v in fill.items() if ds_config.get(k, "auto") == "auto"})
        return accelerator

    def _prepare_frozen(self, model: PreTrainedModel | None) -> PreTrainedModel | None:
        """A model that is only evaluated (reference, reward): sharded like the policy under DeepSpeed ZeRO-3 (TRL's
        `prepare_deepspeed`; a replica under ZeRO-1/2), else moved to the device."""
        if model is None:
            return None
        if self.deepspeed is not None:
            return prepare_deepspeed(model, self.accelerator)
        return model.to(self.accelerator.device).eval()

    def _init_callbacks(self, total: int, callbacks) -> None:
        """TrainerState (global_step = PPO updates), TrainerControl and the CallbackHandler, as transformers'
        Trainer sets them up: the flow callback, the `report_to` integrations, the user's, the progress bar."""
        args, acc = self.args, self.accelerator
        self.state = TrainerState(
            is_local_process_zero=acc.is_local_main_process, is_world_process_zero=acc.is_main_process
        )
        self.state.max_steps, self.state.train_batch_size = total, args.rollout_batch_size
        self.state.num_train_epochs = math.ceil(total / self.updates_per_epoch)
        for name in ("logging_steps", "eval_steps", "save_steps"):  # a fraction < 1 is a share of the run
            value = getattr(args, name) or 0
            setattr(self.state, name, math.ceil(total * value) if value < 1 else int(value))
        self.control = TrainerControl()
        handlers = [DefaultFlowCallback, *get_reporting_integration_callbacks(args.report_to), *(callbacks or [])]
        handlers.append(PrinterCallback if args.disable_tqdm else ProgressCallback)
        self.callback_handler = CallbackHandler(
            handlers, self.policy, self.processing_class, self.optimizer, self.lr_scheduler
        )

    def add_callback(self, callback: TrainerCallback | type[TrainerCallback]) -> None:
        self.callback_handler.add_callback(callback)

    def pop_callback(self, callback: TrainerCallback | type[TrainerCallback]) -> TrainerCallback | None:
        return self.callback_handler.pop_callback(callback)

    def remove_callback(self, callback: TrainerCallback | type[TrainerCallback]) -> None:
        self.callback_handler.remove_callback(callback)

    @property
    def policy(self) -> PreTrainedModel:
        return self.accelerator.unwrap_model(self.model).policy

    @property
    def value_model(self) -> PreTrainedModel:
        return self.accelerator.unwrap_model(self.model).value_model

    @property
    def truncated_prompts(self) -> int:
        return self.counts.truncated

    # ----- data -----------------------------------------------------------------------------------------------
    def _collate(self, rows: list[dict]) -> PromptBatch:
        return collate_prompts(rows, self.processing_class, self.args.max_prompt_length)

    def _train_batches(self, epoch: int, skip: int) -> DataLoader:
        """This epoch's rollout batches, the same order on resume (seeded by epoch), the first `skip` skipped."""
        seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
        loader = DataLoader(
            self.train_dataset,
            batch_size=self.args.rollout_batch_size,
            shuffle=True,
            drop_last=True,
            collate_fn=self._collate,
            generator=torch.Generator().manual_seed(seed + epoch),
        )
        loader = self.accelerator.prepare_data_loader(loader)
        return self.accelerator.skip_first_batches(loader, skip) if skip else loader

    # ----- the loop ---------------------------------------------------------------------------------------------
    def train(self, resume_from_checkpoint: str | bool | None = None) -> TrainOutput:
        """Run PPO updates until `max_steps` (or the epochs), resuming from a checkpoint folder (the latest in
        `output_dir` with True)."""
        args, state = self.args, self.state
        if resume_from_checkpoint is True:
            resume_from_checkpoint = get_last_checkpoint(args.output_dir)
            if resume_from_checkpoint is None:
                raise ValueError(f"No checkpoint found in {args.output_dir} to resume from")
        if resume_from_checkpoint:
            self._load_checkpoint(resume_from_checkpoint)
        start, losses, window = time.time(), [], defaultdict(list)
        self.control = self.callback_handler.on_train_begin(args, state, self.control)
        if args.eval_on_start and state.global_step == 0:
            self.evaluate()
        while state.global_step < state.max_steps and not self.control.should_training_stop:
            epoch, skip = divmod(state.global_step, self.updates_per_epoch)
            if skip == 0:
                self.control = self.callback_handler.on_epoch_begin(args, state, self.control)
            for batch in self._train_batches(epoch, skip):
                self.control = self.callback_handler.on_step_begin(args, state, self.control)
                update_start = time.perf_counter()
                rollout = self.make_experience(batch)
                stats = self._rollout_stats(rollout.experience)
                stats |= self.learner.learn(rollout.experience, self.kl_ctl.value)
                stats["time/update_s"] = time.perf_counter() - update_start
                sequence_kl = self.accelerator.gather(rollout.experience.sequence_kl).mean().item()
                self.kl_ctl.update(sequence_kl, args.rollout_batch_size * self.accelerator.num_processes)
                state.global_step += 1
                state.epoch = state.global_step / self.updates_per_epoch
                losses.append(stats["loss/total"])
                for key, value in stats.items():
                    window[key].append(value)
                self.control = self.callback_handler.on_step_end(args, state, self.control)
                self._maybe_log_save_evaluate(window, rollout)
                if self.control.should_training_stop or state.global_step >= state.max_steps:
                    break
            if state.global_step % self.updates_per_epoch == 0:
                self.control = self.callback_handler.on_epoch_end(args, state, self.control)
                self._maybe_log_save_evaluate(window, None)
        self.control = self.callback_handler.on_train_end(args, state, self.control)
        if self.counts.truncated:
            logger.warning(
                "%d prompts were longer than max_prompt_length=%d and were cut from the left",
                self.counts.truncated,
                args.max_prompt_length,
            )
        runtime = time.time() - start
        metrics = {"train_runtime": runtime, "train_steps_per_second": len(losses) / max(runtime, 1e-9)}
        metrics["train_loss"] = sum(losses) / max(len(losses), 1)
        return TrainOutput(state.global_step, metrics["train_loss"], metrics)

    def make_experience(self, batch: PromptBatch) -> Rollout:
        """One rollout batch from the current policy (sampling with the policy gathered under ZeRO-3)."""
        self.counts.truncated += batch.truncated
        self.model.eval()
        with self._generation_models() as unwrapped:
            return self.rollout(
                unwrapped.policy, unwrapped.value_model, self.ref_model, batch, self.kl_ctl.value, self._reward_kwargs()
            )

    @contextlib.contextmanager
    def _generation_models(self) -> Iterator[PolicyAndValue]:
        """TRL's unwrapping for generation (parameters gathered under ZeRO-3, checkpointing off), under autocast."""
        kwargs = self.args.gradient_checkpointing_kwargs
        with (
            unwrap_model_for_generation(
                self.model, self.accelerator, gradient_checkpointing_kwargs=kwargs
            ) as unwrapped,
            self.accelerator.autocast(),
        ):
            yield unwrapped

    def _reward_kwargs(self) -> dict[str, Any]:
        return {"trainer_state": self.state}

    def _check(self, loss: torch.Tensor) -> None:
        """Stop before a NaN/inf loss reaches the weights (see trl_ext.guards); the last checkpoint stays good."""
        step = self.state.global_step + 1
        value = float("nan") if forced_nan(step) else loss.item()
        if not math.isfinite(value):
            raise NonFiniteError(non_finite_message("PPO loss", value, step, self.args.output_dir))

    def _rollout_stats(self, exp: Experience) -> dict[str, float]:
        g = self.accelerator.gather
        kl_sum = exp.sequence_kl
        return {
            "objective/entropy": g(core.masked_mean(exp.entropy, exp.mask, dim=1)).mean().item(),
            "objective/kl": g(kl_sum).mean().item(),
            "objective/scores": g(exp.scores).mean().item(),
            "objective/rlhf_reward": g(exp.scores - self.kl_ctl.value * kl_sum).mean().item(),
            "objective/kl_coef": self.kl_ctl.value,
            "val/mean": g(core.masked_mean(exp.values, exp.mask)).mean().item(),
            "response_length": g(exp.mask.sum(1).float()).mean().item(),
            "eos_fraction": g((exp.responses == self.processing_class.eos_token_id).any(1).float()).mean().item(),
        }

    def _maybe_log_save_evaluate(self, window: dict[str, list[float]], rollout: Rollout | None) -> None:
        """What the callbacks asked for after an update: log (the mean over the updates since the last log),
        evaluate, save, in transformers' order."""
        args, state = self.args, self.state
        if rollout is not None and args.sample_every and state.global_step % args.sample_every == 0:
            table = sample_table(rollout.prompts, rollout.completions, rollout.experience.scores.tolist())
            logger.info("Samples at update %d:\n%s", state.global_step, table)
            window["samples"] = [table]
        if self.control.should_log and window:
            logs = {k: v[-1] if k == "samples" else sum(v) / len(v) for k, v in window.items()}
            self.log({**logs, "lr": self.lr_scheduler.get_last_lr()[0]})
            window.clear()
        if self.control.should_evaluate:
            self.evaluate()
        if self.control.should_save:
            self._save_checkpoint()
            self.control = self.callback_handler.on_save(args, state, self.control)

    def log(self, logs: dict[str, Any]) -> None:
        """Append `logs` (with epoch and step) to the log history and hand them to the callbacks' `on_log`."""
        if self.state.epoch is not None:
            logs = {**logs, "epoch": self.state.epoch}
        self.state.log_history.append({**logs, "step": self.state.global_step})
        self.control = self.callback_handler.on_log(self.args, self.state, self.control, logs)

    # ----- evaluation -------------------------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(
        self, eval_dataset: Dataset | None = None, ignore_keys: list[str] | None = None, metric_key_prefix: str = "eval"
    ) -> dict[str, Any]:
        """Answer the held-out prompts as in a rollout (same sampling, a fixed seed, the training RNG untouched):
        mean score, KL to the reference, answer length, EOS fraction and a few sample answers; logged and handed to
        the callbacks' `on_evaluate`."""
        args, acc = self.args, self.accelerator
        dataset = (
            self.eval_dataset if eval_dataset is None else prompt_dataset(eval_dataset, self.processing_class, True)
        )
        if dataset is None:
            raise ValueError("evaluate() needs an eval_dataset (given here or to the trainer)")
        loader = acc.prepare_data_loader(
            DataLoader(dataset, batch_size=args.per_device_eval_batch_size, collate_fn=self._collate)
        )
        self.callback_handler.eval_dataloader = loader
        self.model.eval()
        parts, shown = defaultdict(list), ([], [], [])
        with torch.random.fork_rng(devices=[acc.device] if acc.device.type == "cuda" else []):
            torch.manual_seed(args.seed)
            for batch in loader:
                with self._generation_models() as unwrapped:
                    s: Samples = self.rollout.sample(unwrapped.policy, self.ref_model, batch, self._reward_kwargs())
                for key, value in (
                    ("objective/scores", s.scores),
                    ("objective/kl", s.kl.sum(1)),
                    ("response_length", s.mask.sum(1).float()),
                    ("eos_fraction", (s.responses == self.processing_class.eos_token_id).any(1).float()),
                ):
                    parts[key].append(acc.gather_for_metrics(value))
                for column, values in zip(shown, (batch.prompts, s.completions, s.scores.tolist())):
                    column.extend(values)
                self.control = self.callback_handler.on_prediction_step(args, self.state, self.control)
        metrics: dict[str, Any] = {
            f"{metric_key_prefix}_{key}": torch.cat(values).mean().item() for key, values in parts.items()
        }
        metrics[f"{metric_key_prefix}_samples"] = sample_table(*shown)
        metrics = {k: v for k, v in metrics.items() if k not in (ignore_keys or [])}
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(args, self.state, self.control, metrics)
        return metrics

    # ----- checkpoints and outputs ------------------------------------------------------------------------------
    def _save_checkpoint(self) -> None:
        """`checkpoint-N` (N = updates done) in `output_dir`: model, optimizer, scheduler, RNG, KL-controller and
        prompt-count state (accelerate), then the TrainerState, last, as the checkpoint's completion marker; then the
        oldest checkpoints beyond `save_total_limit` are removed. (accelerate's own rotation does not fit: it names
        folders by save count, not step, under `checkpoints/`, and deletes the oldest before the new one is complete.)
        """
        folder = Path(self.args.output_dir) / f"checkpoint-{self.state.global_step}"
        self.accelerator.save_state(str(folder))
        if self.accelerator.is_main_process:
            self.state.save_to_json(str(folder / TRAINER_STATE_NAME))
            limit = self.args.save_total_limit
            if limit:
                older = sorted(folder.parent.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
                for old in older[:-limit]:
                    shutil.rmtree(old, ignore_errors=True)
        self.accelerator.wait_for_everyone()

    def _load_checkpoint(self, folder: str | Path) -> None:
        logger.info("Resuming PPO from %s", folder)
        self.accelerator.load_state(str(folder))
        saved = TrainerState.load_from_json(str(Path(folder) / TRAINER_STATE_NAME))
        self.state.global_step, self.state.epoch, self.state.log_history = (
            saved.global_step,
            saved.epoch,
            saved.log_history,
        )

    def save_model(self, output_dir: str | Path | None = None) -> None:
        """The policy as a plain HF folder (adapters merged into a copy: the trainer's models stay as they are) with
        the tokenizer; the value model too with `save_value_model`, in `value_model/`."""
        output_dir = Path(output_dir or self.args.output_dir)
        self.accelerator.wait_for_everyone()
        unwrapped = self.accelerator.unwrap_model(self.model)
        with gathered_parameters(unwrapped, self.accelerator):  # ZeRO-3: the main process saves whole weights
            if self.accelerator.is_main_process:
                merged_copy(unwrapped.policy).save_pretrained(output_dir)
                self.processing_class.save_pretrained(output_dir)
                if self.args.save_value_model:
                    merged_copy(unwrapped.value_model).save_pretrained(output_dir / "value_model")
                    self.processing_class.save_pretrained(output_dir / "value_model")
        self.accelerator.wait_for_everyone()
