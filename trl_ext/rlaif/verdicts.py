"""The judge's verdict on one comparison (`PairLabel`), how a comparison's rows combine into it, and round-robin win
rates over several responses to one prompt."""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any


@dataclass
class PairLabel:
    """The verdict on (prompt, a, b).

    p: P(a better than b) = sigmoid(log_odds).
    log_odds: the judge's log-odds that a is better, averaged over principles and over the two orders.
    p_orders: P(a better) with a shown as (A), and with a shown as (B) (None without swap), each averaged over
        principles in log-odds. Their disagreement on the winner is a position flip.
    principles: ids of the principles used. uncertain: |p - 0.5| < the labeler's tie threshold.
    skipped: "identical" when decided without the judge. reasoning: chain-of-thought texts, if any.
    """

    p: float
    log_odds: float
    p_orders: tuple[float, float | None]
    principles: list[str]
    uncertain: bool
    skipped: str | None = None
    truncated: bool = False
    suspect_injection: bool = False
    reasoning: list[str] | None = None

    @property
    def chosen(self) -> str:
        """ "a" or "b" (a on an exact tie)."""
        return "a" if self.p >= 0.5 else "b"

    @property
    def rejected(self) -> str:
        return "b" if self.chosen == "a" else "a"

    @property
    def margin(self) -> float:
        """P(chosen better) - P(rejected better) = |2p - 1|, in [0, 1]."""
        return abs(2 * self.p - 1)

    @property
    def position_flip(self) -> bool:
        """True when the winner changes with the order of presentation."""
        first, second = self.p_orders
        return second is not None and (first > 0.5) != (second > 0.5)

    def swapped(self) -> PairLabel:
        """The same verdict for (prompt, b, a)."""
        first, second = self.p_orders
        orders = (1 - second, 1 - first) if second is not None else (1 - first, None)
        return replace(self, p=1 - self.p, log_odds=-self.log_odds, p_orders=orders)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "chosen": self.chosen, "margin": self.margin, "position_flip": self.position_flip}


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x)) if x >= 0 else math.exp(x) / (1 + math.exp(x))


def combine(log_odds: list[float], swap: bool) -> tuple[float, float | None]:
    """A comparison's rows (principle-major, order-minor) as the log-odds that x is better when shown as (A) and when
    shown as (B) (where label B is x, so its log-odds count negatively); None for the second without `swap`."""
    if not swap:
        return statistics.fmean(log_odds), None
    return statistics.fmean(log_odds[0::2]), -statistics.fmean(log_odds[1::2])


def verdict(log_odds: list[float], swap: bool, tie_threshold: float, principles: list[str], **flags: Any) -> PairLabel:
    """The verdict on (x, y) from its rows' label log-odds: both orders averaged in log-odds, so a judge whose
    log-odds are content + position bias gets the bias cancelled exactly. `flags`: truncated, suspect_injection,
    reasoning."""
    first, second = combine(log_odds, swap)
    s = (first + second) / 2 if second is not None else first
    p = sigmoid(s)
    orders = (sigmoid(first), sigmoid(second) if second is not None else None)
    return PairLabel(p, s, orders, principles, abs(p - 0.5) < tie_threshold, **flags)


def round_robin_wins(n: int, labels: Mapping[tuple[int, int], PairLabel]) -> list[float]:
    """Summed win probabilities of n responses, from verdicts on pairs (i, j), i < j: i gains p, j gains 1 - p."""
    wins = [0.0] * n
    for (i, j), label in labels.items():
        wins[i] += label.p
        wins[j] += 1 - label.p
    return wins
