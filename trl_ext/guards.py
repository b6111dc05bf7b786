"""Numerical guards: stop a run at the first non-finite gradient (a non-finite loss makes them non-finite too), before
the optimizer step can write it into the weights, so the last checkpoint on disk is the last good state and a rerun
resumes from it.

`NonFiniteGuard` is a transformers `TrainerCallback` for any Trainer (TRL's included): it checks the gradient norm
in `on_pre_optimizer_step`, once per optimizer step. Under DeepSpeed the engine steps inside the backward pass, so
there the guard reads the engine's gradient norm right after its step, still before any checkpoint is written. Our
PPOTrainer checks its losses the same way, by itself.

Test hook: with the environment variable `TRL_EXT_NAN_AT_STEP=N` the gradients of optimizer step N (1-based) are
replaced by NaN, so a test can force the failure in a real subprocess.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch
from transformers import TrainerCallback
from transformers.trainer_utils import get_last_checkpoint

from trl_ext.exceptions import NonFiniteError

NAN_HOOK = "TRL_EXT_NAN_AT_STEP"


def non_finite_message(
    what: str, value: float, step: int, output_dir: str | Path | None, after_step: bool = False
) -> str:
    last = get_last_checkpoint(str(output_dir)) if output_dir and Path(output_dir).is_dir() else None
    keep = f"the last good checkpoint is {last}" if last else "no checkpoint was written yet"
    when = (
        "training stopped right after DeepSpeed's optimizer step (it steps inside the backward pass) and before any "
        "checkpoint was written"
        if after_step
        else "training stopped before the optimizer step, so no weights were changed by it"
    )
    return (
        f"non-finite {what} ({value}) at step {step}: {when}; {keep}. Rerunning the same command resumes from there; "
        "a lower learning rate, gradient clipping (trainer.max_grad_norm) or cleaner data usually cure it."
    )


def forced_nan(step: int) -> bool:
    """The test hook: is this (1-based) optimizer step the one TRL_EXT_NAN_AT_STEP names?"""
    return os.environ.get(NAN_HOOK, "") == str(step)


def grad_norm(model: torch.nn.Module) -> float:
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    return torch.nn.utils.get_total_norm(grads).item() if grads else 0.0


class NonFiniteGuard(TrainerCallback):
    """Raise `NonFiniteError` at the first optimizer step whose gradient norm is NaN or infinite, naming the step and
    the checkpoint a rerun resumes from. `trainer.add_callback(NonFiniteGuard(trainer))`."""

    def __init__(self, trainer):
        self.trainer = trainer

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        if self.trainer.is_deepspeed_enabled:  # the engine has stepped already: see on_step_end
            return
        step = state.global_step + 1
        if forced_nan(step):
            for p in model.parameters():
                if p.grad is not None:
                    p.grad.fill_(float("nan"))
        value = grad_norm(model)
        if not math.isfinite(value):
            raise NonFiniteError(non_finite_message("gradient norm", value, step, args.output_dir))

    def on_step_end(self, args, state, control, **kwargs):
        if not self.trainer.is_deepspeed_enabled:
            return
        value = self.trainer.accelerator.deepspeed_engine_wrapped.get_global_grad_norm()
        value = float("nan") if forced_nan(state.global_step) else float(value if value is not None else 0.0)
        if not math.isfinite(value):
            raise NonFiniteError(non_finite_message("gradient norm", value, state.global_step, args.output_dir, True))


def guard_non_finite(trainer) -> None:
    """Add a `NonFiniteGuard` to `trainer`."""
    trainer.add_callback(NonFiniteGuard(trainer))
