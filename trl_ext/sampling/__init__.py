"""Best-of-N sampling: inference-time alignment and on-policy preference pairs."""

from trl_ext.sampling.best_of_n import (
    BestOfNSampler,
    BoNResult,
    best_of_n_curve,
    bon_kl_bound,
    expected_best_of_n,
    plot_best_of_n,
    preference_pairs,
)

__all__ = [
    "BestOfNSampler",
    "BoNResult",
    "best_of_n_curve",
    "bon_kl_bound",
    "expected_best_of_n",
    "plot_best_of_n",
    "preference_pairs",
]
