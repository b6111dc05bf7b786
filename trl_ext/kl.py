"""KL divergence between the policy and the reference: per-token estimators and coefficient controllers.

Estimators follow Schulman's notes (http://joschu.net/blog/kl-approx.html) with r = pi_ref(y_t) / pi(y_t) on the
token y_t sampled from pi, so log r = ref_logprobs - logprobs. For tokens sampled from pi:
    k1 = -log r                 unbiased for KL(pi || pi_ref), high variance, can be negative
    k2 = (log r)^2 / 2          biased, low variance, >= 0
    k3 = (r - 1) - log r        unbiased, low variance, >= 0
plus `abs` = |log r|, `mse` = (log r)^2 / 2 under its other name (as in TRL/OpenRLHF), and `full`, the exact
KL summed over the vocabulary from both models' logits.

Placement: in PPO the per-token KL is a penalty subtracted from the reward (Ziegler et al. 2019); in GRPO style it is
a separate loss term, `kl_coef * mean(kl)`, added to the policy loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

ESTIMATORS = ("k1", "k2", "k3", "abs", "mse", "full")


def kl_per_token(
    logprobs: torch.Tensor,
    ref_logprobs: torch.Tensor,
    estimator: str = "k1",
    logits: torch.Tensor | None = None,
    ref_logits: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-token estimate of KL(pi || pi_ref) at the sampled tokens.

    Args:
        logprobs, ref_logprobs: log pi(y_t) and log pi_ref(y_t). Shape: (b, t).
        estimator: one of `ESTIMATORS`.
        logits, ref_logits: only for `full`. Shape: (b, t, vocab).
    Returns:
        Shape: (b, t).
    """
    log_ratio = ref_logprobs - logprobs  # log r
    if estimator == "k1":
        return -log_ratio
    if estimator in ("k2", "mse"):
        return log_ratio.pow(2) / 2
    if estimator == "k3":
        return log_ratio.exp() - 1 - log_ratio
    if estimator == "abs":
        return log_ratio.abs()
    if estimator == "full":
        if logits is None or ref_logits is None:
            raise ValueError("kl estimator 'full' needs the logits of both models")
        logp, ref_logp = torch.log_softmax(logits.float(), -1), torch.log_softmax(ref_logits.float(), -1)
        return (logp.exp() * (logp - ref_logp)).sum(-1)
    raise ValueError(f"Unknown KL estimator {estimator!r}: choose one of {ESTIMATORS}")


@dataclass
class FixedKLController:
    """A constant KL coefficient."""

    value: float

    def update(self, current_kl: float, n_steps: int) -> float:
        return self.value

    def state_dict(self) -> dict:
        return {"value": self.value}

    def load_state_dict(self, state: dict) -> None:
        self.value = state["value"]


@dataclass
class AdaptiveKLController:
    """Adaptive KL coefficient (Ziegler et al. 2019, https://arxiv.org/abs/1909.08593, section 2.2).

    After each batch: e = clip(KL / target - 1, -0.2, 0.2); value *= 1 + e * n_steps / horizon. The coefficient rises
    while the policy drifts beyond the target and decays while it stays under. A target of 0 takes the formula's limit:
    e = +0.2 for any KL above 0, -0.2 below (k1 estimates can be negative), 0 at exactly 0.
    """

    value: float
    target: float
    horizon: float

    def __post_init__(self):
        if self.target < 0:
            raise ValueError(f"the target KL must be >= 0, got {self.target}")

    def update(self, current_kl: float, n_steps: int) -> float:
        if self.target > 0:
            error = min(max(current_kl / self.target - 1, -0.2), 0.2)
        else:
            error = 0.2 * ((current_kl > 0) - (current_kl < 0))
        self.value *= 1 + error * n_steps / self.horizon
        return self.value

    def state_dict(self) -> dict:
        return {"value": self.value, "target": self.target, "horizon": self.horizon}

    def load_state_dict(self, state: dict) -> None:
        self.value, self.target, self.horizon = state["value"], state["target"], state["horizon"]


def make_kl_controller(
    kl_coef: float, target: float | None = None, horizon: float = 10000
) -> FixedKLController | AdaptiveKLController:
    """Adaptive when a target KL is given (0 included), fixed when it is None."""
    return FixedKLController(kl_coef) if target is None else AdaptiveKLController(kl_coef, target, horizon)
