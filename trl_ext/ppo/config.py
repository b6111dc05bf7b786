"""`PPOConfig`: transformers' `TrainingArguments` plus the PPO knobs. Model paths are not training arguments: the
trainer takes models (or paths) directly, as TRL's trainers do. A `TrainingArguments` field the PPO trainer does not
honour is refused when set, rather than silently ignored."""

from __future__ import annotations

import dataclasses
import functools
import tempfile
from dataclasses import dataclass, field
from typing import Any

from transformers import TrainingArguments
from transformers.trainer_pt_utils import AcceleratorConfig

from trl_ext.exceptions import ConfigError
from trl_ext.kl import ESTIMATORS

# The TrainingArguments fields PPOTrainer honours (any value is accepted); every other one must keep its default.
HONOURED = frozenset(
    {
        # what and how long
        "output_dir", "num_train_epochs", "max_steps", "per_device_train_batch_size", "gradient_accumulation_steps",
        "seed", "data_seed", "remove_unused_columns", "dataloader_drop_last",  # rollout batches are always whole
        # optimizer and schedule (built as transformers' Trainer builds them)
        "learning_rate", "weight_decay", "adam_beta1", "adam_beta2", "adam_epsilon", "optim", "optim_args",
        "max_grad_norm", "lr_scheduler_type", "lr_scheduler_kwargs", "warmup_steps",
        # device, precision, memory
        "use_cpu", "bf16", "fp16", "tf32", "dataloader_pin_memory",  # prompts are token ids: pinning changes nothing
        "gradient_checkpointing", "gradient_checkpointing_kwargs",
        "activation_checkpointing", "activation_checkpointing_kwargs",
        # logging, reporting, progress
        "logging_strategy", "logging_steps", "logging_first_step", "log_level", "log_level_replica", "disable_tqdm",
        "report_to", "run_name", "project", "trackio_space_id", "trackio_bucket_id", "trackio_static_space_id",
        # evaluation on eval_dataset
        "eval_strategy", "eval_steps", "eval_delay", "eval_on_start", "per_device_eval_batch_size",
        # checkpoints
        "save_strategy", "save_steps", "save_total_limit",
        # read by launch scripts, not by trainers
        "do_train", "do_eval", "do_predict", "resume_from_checkpoint", "local_rank",
    }
)  # fmt: skip
TRAINING_ARGUMENTS = {f.name: f for f in dataclasses.fields(TrainingArguments) if f.init}


def _default(f: dataclasses.Field) -> Any:
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


@functools.cache
def _settled_defaults() -> TrainingArguments:
    """Default TrainingArguments after their own `__post_init__`: the forms defaults take in this transformers
    version (e.g. a filled-in `fsdp_config` dict), which a config rebuilt from `to_dict()` carries."""
    with tempfile.TemporaryDirectory() as folder:
        return TrainingArguments(output_dir=folder, use_cpu=True)


def _unchanged(name: str, value: Any, default: Any) -> bool:
    """Whether `value` is the field's default, also in the forms TrainingArguments itself turns defaults into (so a
    config rebuilt from `to_dict()` passes): '' / [] / None, the default AcceleratorConfig, a masked token, the value
    a default instance settles on."""
    if value == default or (not value and not default) or value == f"<{name.upper()}>":
        return True
    if name not in ("output_dir", "use_cpu") and value == getattr(_settled_defaults(), name, object()):
        return True
    if name == "accelerator_config" and isinstance(value, (dict, AcceleratorConfig)):
        return (AcceleratorConfig(**value) if isinstance(value, dict) else value) == AcceleratorConfig()
    return False


def unhonoured_fields(args: TrainingArguments) -> dict[str, Any]:
    """The `TrainingArguments` fields set away from their default that PPOTrainer would ignore: {name: value}."""
    return {
        name: getattr(args, name)
        for name, f in TRAINING_ARGUMENTS.items()
        if name not in HONOURED and not _unchanged(name, getattr(args, name), _default(f))
    }


@dataclass
class PPOConfig(TrainingArguments):
    r"""
    Configuration for [`trl_ext.ppo.PPOTrainer`]. Inherits `TrainingArguments`; the fields PPO honours are listed in
    `trl_ext.ppo.config.HONOURED`. A step is one PPO update: `max_steps`, `logging_steps` (the logs average the updates
    since the last one), `eval_steps` and `save_steps` count updates; `warmup_steps` counts optimizer steps
    (`num_ppo_epochs * num_mini_batches` per update). `per_device_train_batch_size` is the rollouts per
    forward/backward micro-batch, `per_device_eval_batch_size` the held-out prompts per generation batch;
    `remove_unused_columns=True` keeps only `prompt` (by default every other column reaches the reward functions).
    Setting any other field away from its default raises a `ConfigError` naming it: `push_to_hub`, `deepspeed` (launch
    with an accelerate config instead), `load_best_model_at_end`, `torch_compile`, ... are not implemented here.

    One update = one rollout batch of `per_device_train_batch_size * gradient_accumulation_steps * num_mini_batches`
    prompts per process, then `num_ppo_epochs` passes over it in `num_mini_batches` optimizer steps.

    > Rollouts

    max_prompt_length (`int`, defaults to `512`): prompts longer than this are cut from the left (counted, warned).
    response_length (`int`, defaults to `53`): maximum new tokens per response.
    temperature (`float`, defaults to `0.7`), top_k (`int`, defaults to `0`: off), top_p (`float`, defaults to `1.0`):
        sampling; log-probs are computed at the same temperature.
    missing_eos_penalty (`float` or `None`, defaults to `None`): subtracted from the score of responses that hit
        `response_length` without an EOS.

    > Rewards and KL

    kl_coef (`float`, defaults to `0.05`): initial KL coefficient.
    kl_estimator (`str`, defaults to `"k1"`): one of `trl_ext.kl.ESTIMATORS` (k1, k2, k3, abs, mse, full).
    kl_placement (`str`, defaults to `"reward"`): `"reward"` (a per-token penalty in the reward, as in PPO-RLHF) or
        `"loss"` (a loss term `kl_coef * mean KL`, as in GRPO).
    kl_target (`float` or `None`, defaults to `None`): a target KL per sequence makes the coefficient adaptive
        (Ziegler et al. 2019), with `kl_horizon` (`float`, defaults to `10000`).
    reward_weights (`list[float]` or `None`): weights of the reward functions (default: 1 each).
    whiten_rewards (`bool`, defaults to `False`): whiten the per-token rewards before GAE.

    > PPO

    num_ppo_epochs (`int`, defaults to `4`), num_mini_batches (`int`, defaults to `1`),
    gamma (`float`, defaults to `1.0`), lam (`float`, defaults to `0.95`): GAE,
    cliprange (`float`, defaults to `0.2`), cliprange_value (`float`, defaults to `0.2`), vf_coef (`float`,
    defaults to `0.1`), entropy_coef (`float`, defaults to `0.0`).
    chunked_logps (`bool`, defaults to `True`): the log-probs of the responses (policy in learning, reference in the
        rollout) from the final hidden states through torch's chunked `linear_cross_entropy` (`trl_ext.logprobs`),
        never the (b, t, vocab) logits. Not used where the full distribution is needed (an entropy bonus, the `full`
        KL estimator for the reference), under ZeRO-3, or for models that scale their logits.

    > Outputs

    sample_every (`int`, defaults to `10`): every this many updates the logs carry `samples`, a markdown table of
        prompts, completions and scores (text in TensorBoard; 0: never).
    save_value_model (`bool`, defaults to `False`): also save the value model (in `value_model/`).
    """

    learning_rate: float = field(default=3e-6, metadata={"help": "AdamW learning rate."})
    logging_steps: float = field(default=1, metadata={"help": "Log every this many updates."})
    report_to: str | list[str] = field(default="none", metadata={"help": "Integrations to report to."})
    remove_unused_columns: bool = field(
        default=False,
        metadata={"help": "Drop the dataset's columns other than `prompt`; kept, they reach the reward functions."},
    )
    max_prompt_length: int = field(default=512, metadata={"help": "Prompt tokens kept (cut from the left)."})
    response_length: int = field(default=53, metadata={"help": "Maximum new tokens per response."})
    temperature: float = field(default=0.7, metadata={"help": "Sampling temperature."})
    top_k: int = field(default=0, metadata={"help": "Top-k sampling (0: off)."})
    top_p: float = field(default=1.0, metadata={"help": "Nucleus sampling."})
    missing_eos_penalty: float | None = field(default=None, metadata={"help": "Penalty for responses without EOS."})
    kl_coef: float = field(default=0.05, metadata={"help": "Initial KL coefficient."})
    kl_estimator: str = field(default="k1", metadata={"help": f"One of {ESTIMATORS}."})
    kl_placement: str = field(default="reward", metadata={"help": "'reward' (PPO) or 'loss' (GRPO style)."})
    kl_target: float | None = field(default=None, metadata={"help": "Target KL; makes the coefficient adaptive."})
    kl_horizon: float = field(default=10000, metadata={"help": "Horizon of the adaptive KL controller."})
    reward_weights: list[float] | None = field(default=None, metadata={"help": "Weights of the reward functions."})
    whiten_rewards: bool = field(default=False, metadata={"help": "Whiten per-token rewards before GAE."})
    num_ppo_epochs: int = field(default=4, metadata={"help": "Passes over each rollout batch."})
    num_mini_batches: int = field(default=1, metadata={"help": "Optimizer steps per PPO epoch."})
    gamma: float = field(default=1.0, metadata={"help": "Discount factor."})
    lam: float = field(default=0.95, metadata={"help": "GAE lambda."})
    cliprange: float = field(default=0.2, metadata={"help": "Policy ratio clip range."})
    cliprange_value: float = field(default=0.2, metadata={"help": "Value clip range."})
    vf_coef: float = field(default=0.1, metadata={"help": "Value loss coefficient."})
    entropy_coef: float = field(default=0.0, metadata={"help": "Entropy bonus coefficient."})
    chunked_logps: bool = field(
        default=True,
        metadata={
            "help": "Log-probs of the responses from the hidden states through chunked linear_cross_entropy, never "
            "the [tokens, vocab] logits (not with entropy_coef != 0, kl_estimator=full for the reference, ZeRO-3)."
        },
    )
    sample_every: int = field(default=10, metadata={"help": "Log sample completions every N updates (0: never)."})
    save_value_model: bool = field(default=False, metadata={"help": "Also save the value model."})

    def __post_init__(self):
        refused = unhonoured_fields(self)
        if refused:
            names = ", ".join(f"{k}={v!r}" for k, v in refused.items())
            hint = " (DeepSpeed: launch with an accelerate config file instead)" if "deepspeed" in refused else ""
            raise ConfigError(
                f"PPOConfig: {names}: not supported by trl_ext's PPOTrainer, which would ignore it{hint}. Leave it at "
                "its default; the supported TrainingArguments fields are listed in trl_ext.ppo.config.HONOURED."
            )
        super().__post_init__()
        if self.kl_estimator not in ESTIMATORS:
            raise ConfigError(f"kl_estimator must be one of {ESTIMATORS}, got {self.kl_estimator!r}")
        if self.kl_placement not in ("reward", "loss"):
            raise ConfigError(f"kl_placement must be 'reward' or 'loss', got {self.kl_placement!r}")
        if self.kl_target is not None and self.kl_target < 0:
            raise ConfigError(f"kl_target must be >= 0 (or None for a fixed coefficient), got {self.kl_target}")

    @property
    def rollout_batch_size(self) -> int:
        """Prompts per update per process."""
        return self.per_device_train_batch_size * self.gradient_accumulation_steps * self.num_mini_batches
