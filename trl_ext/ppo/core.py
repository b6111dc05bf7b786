"""The math of PPO for language models as small pure functions (Schulman et al. 2017, https://arxiv.org/abs/1707.06347;
Ziegler et al. 2019; Huang et al. 2024, "The N Implementation Details of RLHF with PPO").

Shapes: b = rollouts in the batch, t = response tokens. `mask` is 1 on real response tokens, 0 on padding after EOS.
"""

from __future__ import annotations

import torch


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of `x` over positions where `mask` is 1 (over all of them, or along `dim`)."""
    if dim is None:
        return (x * mask).sum() / mask.sum().clamp(min=1)
    return (x * mask).sum(dim) / mask.sum(dim).clamp(min=1)


def masked_whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True) -> torch.Tensor:
    """Normalise `x` to unit variance over the masked positions (and zero mean unless `shift_mean=False`).

    The variance is the biased one (divided by n), on purpose: whitening rescales exactly these tokens, so their
    masked mean of squares comes out 1. TRL's PPO used Bessel's n / (n - 1), which changes the scale by under 1% at a
    few hundred tokens and is undefined for one token (TRL raised there; here a lone token whitens to 0).
    """
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    whitened = (x - mean) * torch.rsqrt(var + 1e-8)
    return (whitened if shift_mean else whitened + mean) * mask


def response_mask(responses: torch.Tensor, eos_token_id: int) -> torch.Tensor:
    """1 up to and including the first EOS of each response, 0 after it. Shape: (b, t)."""
    is_eos = responses == eos_token_id
    after_eos = (is_eos.cumsum(1) - is_eos.long()) > 0  # strictly after the first EOS
    return (~after_eos).long()


def kl_coefs(kl_coef: float, placement: str) -> tuple[float, float]:
    """(KL coefficient in the reward, KL coefficient in the loss) for `placement` "reward" (PPO-RLHF: a per-token
    penalty, Ziegler et al. 2019) or "loss" (GRPO style: `coef * mean KL` added to the policy loss)."""
    if placement not in ("reward", "loss"):
        raise ValueError(f"kl_placement must be 'reward' or 'loss', got {placement!r}")
    return (kl_coef, 0.0) if placement == "reward" else (0.0, kl_coef)


def per_token_rewards(scores: torch.Tensor, kl: torch.Tensor, kl_coef: float, mask: torch.Tensor) -> torch.Tensor:
    """Reward per token: -kl_coef * KL at every token, plus the sequence score at its last real token.

    Args: scores (b,), kl (b, t), mask (b, t). Returns: (b, t).
    """
    rewards = -kl_coef * kl * mask
    last = (mask.sum(1) - 1).clamp(min=0)
    rewards[torch.arange(len(scores)), last] += scores
    return rewards


def gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0, lam: float = 0.95
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation (Schulman et al. 2016, https://arxiv.org/abs/1506.02438).

    delta_t = r_t + gamma * V_{t+1} - V_t, A_t = delta_t + gamma * lam * A_{t+1}, with V and A zero past the end.
    Args: rewards, values, mask, each (b, t). Returns: advantages and returns (= advantages + values), each (b, t).
    """
    values, rewards = values * mask, rewards * mask  # nothing flows back from padding
    advantages = torch.zeros_like(rewards)
    next_value = torch.zeros_like(rewards[:, 0])
    next_advantage = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(rewards.shape[1])):
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        next_advantage = delta + gamma * lam * next_advantage
        advantages[:, t] = next_advantage
        next_value = values[:, t]
    advantages = advantages * mask
    return advantages, (advantages + values) * mask


def policy_loss(
    logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor, cliprange: float
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """PPO's clipped surrogate: mean of max(-A * ratio, -A * clip(ratio, 1 - eps, 1 + eps)) over real tokens."""
    log_ratio = logprobs - old_logprobs
    ratio = log_ratio.exp()
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1 - cliprange, 1 + cliprange)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    stats = {
        "policy/clipfrac": masked_mean((clipped > unclipped).float(), mask),
        "policy/approxkl": masked_mean(log_ratio.pow(2) / 2, mask),
        "policy/ratio": masked_mean(ratio, mask),
    }
    return loss, stats


def value_loss(
    values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor, cliprange_value: float
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Clipped value loss: 0.5 * mean of max((V - R)^2, (clip(V, V_old +- eps) - R)^2) over real tokens."""
    clipped_values = old_values + (values - old_values).clamp(-cliprange_value, cliprange_value)
    unclipped_error, clipped_error = (values - returns) ** 2, (clipped_values - returns) ** 2
    loss = 0.5 * masked_mean(torch.maximum(unclipped_error, clipped_error), mask)
    return loss, {"val/clipfrac": masked_mean((clipped_error > unclipped_error).float(), mask)}
