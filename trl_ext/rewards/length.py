"""Length-controlled reward: remove a reward's preference for longer (or shorter) responses.

Reward models and judges tend to prefer longer answers and policies learn to pad. `LengthControlledReward` wraps
any reward of the shared protocol and returns a score whose dependence on length is removed or capped:

    linear       r - alpha * L
    target       r - alpha * max(0, L - target_length)        (a penalty only beyond a target length)
    regression   r - b * (L - mean L), with r = a + b * L fitted by least squares on reference completions
                 (`fit`) or on every score seen so far (running statistics); the idea of length-controlled
                 AlpacaEval (Dubois et al. 2024, https://arxiv.org/abs/2404.04475): the score at the mean length
    normalized   r / L                                          (per token or character)

L is the length in tokens of a given tokenizer, or in characters.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from trl_ext.chat import text_of
from trl_ext.rewards.scoring import func_name, score

MODES = ("linear", "target", "regression", "normalized")


class LengthControlledReward:
    """Wrap `base(prompts, completions, **kw) -> list[float]`; the result meets the same protocol, so it plugs into
    our PPO and best-of-N and into TRL's GRPOTrainer/RLOOTrainer as a `reward_funcs` entry.

    >>> lc = LengthControlledReward(lambda prompts, completions, **kw: [float(len(c)) for c in completions],
    ...                             mode="linear", alpha=1.0)
    >>> lc(["q", "q"], ["short", "much longer"])
    [0.0, 0.0]
    """

    def __init__(
        self,
        base: Callable[..., list[float]],
        mode: str = "regression",
        alpha: float = 0.01,
        target_length: int | None = None,
        tokenizer: Any = None,
    ):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if mode == "target" and target_length is None:
            raise ValueError("mode='target' needs target_length")
        self.base, self.mode, self.alpha, self.target_length, self.tokenizer = (
            base,
            mode,
            alpha,
            target_length,
            tokenizer,
        )
        self.__name__ = f"length_controlled_{mode}({func_name(base)})"  # TRL logs rewards under this name
        self._sums = [0.0] * 5  # n, sum L, sum r, sum L^2, sum L*r: the running least-squares statistics
        self._frozen = False

    def lengths(self, completions: Sequence[Any]) -> list[int]:
        """Lengths in tokens of `tokenizer` (when given) or in characters."""
        texts = [text_of(c) for c in completions]
        if self.tokenizer is None:
            return [len(t) for t in texts]
        return [len(ids) for ids in self.tokenizer(texts, add_special_tokens=False)["input_ids"]]

    def _accumulate(self, lengths: Sequence[int], rewards: Sequence[float]) -> None:
        for length, r in zip(lengths, rewards):
            for i, v in enumerate((1.0, length, r, length * length, length * r)):
                self._sums[i] += v

    @property
    def slope_and_mean_length(self) -> tuple[float, float]:
        """Least-squares slope b of r on L, and mean L, from the statistics gathered so far."""
        n, sl, sr, sll, slr = self._sums
        if n < 2:
            return 0.0, sl / max(n, 1)
        var = sll / n - (sl / n) ** 2
        return ((slr / n - sl * sr / n**2) / var if var > 0 else 0.0), sl / n

    def fit(self, prompts: Sequence[Any], completions: Sequence[Any], **kwargs) -> LengthControlledReward:
        """Fit the regression on reference completions and keep it fixed (no running updates afterwards)."""
        self._sums = [0.0] * 5
        self._accumulate(self.lengths(completions), score([self.base], prompts, completions, **kwargs).tolist())
        self._frozen = True
        return self

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any], **kwargs) -> list[float]:
        rewards = score([self.base], prompts, completions, **kwargs).tolist()  # checked: finite, one per completion
        lengths = self.lengths(completions)
        if self.mode == "linear":
            return [r - self.alpha * n for r, n in zip(rewards, lengths)]
        if self.mode == "target":
            return [r - self.alpha * max(0, n - self.target_length) for r, n in zip(rewards, lengths)]
        if self.mode == "normalized":
            return [r / max(n, 1) for r, n in zip(rewards, lengths)]
        if not self._frozen:
            self._accumulate(lengths, rewards)
        slope, mean_length = self.slope_and_mean_length
        return [r - slope * (n - mean_length) for r, n in zip(rewards, lengths)]
