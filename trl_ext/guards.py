"""Numerical guards: stop a run at the first non-finite loss or gradient, before the optimizer step can write it
into the weights, so the last checkpoint on disk is the last good state and a rerun resumes from it.

`guard_non_finite(trainer)` wraps a transformers/TRL `Trainer`'s `training_step` (every micro-batch; under DeepSpeed
the loss alone, as the gradients live in the engine). Our PPOTrainer checks its losses the same way, by itself.

Test hook: with the environment variable `TRL_EXT_NAN_AT_STEP=N` the loss of optimizer step N (1-based) is replaced
by NaN, so a test can force the failure in a real subprocess.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch
from transformers.trainer_utils import get_last_checkpoint

NAN_HOOK = "TRL_EXT_NAN_AT_STEP"


class NonFiniteError(RuntimeError):
    """A loss, gradient or reward that is NaN or infinite; names the step and the checkpoint to resume from."""


def non_finite_message(what: str, value: float, step: int, output_dir: str | Path | None) -> str:
    last = get_last_checkpoint(str(output_dir)) if output_dir and Path(output_dir).is_dir() else None
    keep = f"the last good checkpoint is {last}" if last else "no checkpoint was written yet"
    return (
        f"non-finite {what} ({value}) at step {step}: training stopped before the optimizer step, so no weights "
        f"were changed by it; {keep}. Rerunning the same command resumes from there; a lower learning rate, "
        "gradient clipping (trainer.max_grad_norm) or cleaner data usually cure it."
    )


def forced_nan(step: int) -> bool:
    """The test hook: is this (1-based) optimizer step the one TRL_EXT_NAN_AT_STEP names?"""
    return os.environ.get(NAN_HOOK, "") == str(step)


def grad_norm(model: torch.nn.Module) -> float:
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    return torch.nn.utils.get_total_norm(grads).item() if grads else 0.0


def guard_non_finite(trainer) -> None:
    """Make `trainer` raise `NonFiniteError` at the first non-finite loss (checked after every backward) or gradient
    norm (checked on the micro-batch that ends an accumulation), before the optimizer step."""
    step_fn = trainer.training_step

    def training_step(model, inputs, *args, **kwargs):
        loss = step_fn(model, inputs, *args, **kwargs)
        step = trainer.state.global_step + 1
        if forced_nan(step):
            loss = loss * float("nan")
        value = loss.detach().float().mean().item()
        what = "loss"
        # gradients: once per optimizer step (a NaN in an earlier micro-batch stays in the accumulated sum)
        if math.isfinite(value) and trainer.accelerator.sync_gradients and not trainer.is_deepspeed_enabled:
            value, what = grad_norm(model), "gradient norm"
        if not math.isfinite(value):
            raise NonFiniteError(non_finite_message(what, value, step, trainer.args.output_dir))
        return loss

    trainer.training_step = training_step
