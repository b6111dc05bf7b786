"""Best-of-N sampling: N completions per prompt in one batched generation, scored by any reward of the shared
protocol; the best completion per prompt, and best-against-worst preference pairs for (iterative) DPO.

The reward-versus-KL picture: best-of-N moves the policy by at most KL(pi_BoN || pi) <= log N - (N - 1) / N
(Beirami et al. 2024, https://arxiv.org/abs/2401.01879), and E[max of N scores] for every N <= pool size is
estimated without bias from one pool of samples per prompt (order statistics).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from trl_ext.chat import (
    Prompt,
    completion_like,
    completion_messages,
    encode_prompts,
    prompt_lengths,
    prompt_messages,
)
from trl_ext.rewards import score


@dataclass
class BoNResult:
    """One prompt's samples: every completion with its score, and the best one."""

    prompt: Prompt
    completions: list[str]
    scores: list[float]
    n_duplicates: int = 0

    @property
    def best_index(self) -> int:
        return max(range(len(self.scores)), key=self.scores.__getitem__)

    @property
    def best(self) -> str:
        return self.completions[self.best_index]

    @property
    def best_score(self) -> float:
        return self.scores[self.best_index]

    def to_dict(self) -> dict[str, Any]:
        return {
            "prompt": self.prompt,
            "best": self.best,
            "best_score": self.best_score,
            "completions": self.completions,
            "scores": self.scores,
        }


@dataclass
class BestOfNSampler:
    """Sample `n` completions per prompt with one `generate(num_return_sequences=n)` per prompt batch.

    Args:
        model, tokenizer: a causal LM and its tokenizer (left padding is applied here).
        scorer: a reward function `fn(prompts, completions, **kw) -> list[float]`, or a list of them (summed).
        n: samples per prompt.
        generation_kwargs: passed to `generate` (defaults: do_sample, temperature 1.0, max_new_tokens 64).
        batch_size: prompts per generation call (so batch_size * n sequences at once).
        deduplicate: drop repeated completions of a prompt before scoring.
        seed: seeds generation, so the same seed gives the same samples.
        max_prompt_length: prompts longer than this many tokens keep their end (the turn being answered); None: whole.
    """

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    scorer: Callable | Sequence[Callable]
    n: int = 4
    generation_kwargs: dict[str, Any] = field(default_factory=dict)
    batch_size: int = 8
    deduplicate: bool = False
    seed: int = 0
    max_prompt_length: int | None = None

    @torch.no_grad()
    def generate(self, prompts: Sequence[Prompt]) -> list[list[str]]:
        """`n` completions for each prompt (no scoring). Returns one list of `n` strings per prompt."""
        kwargs = {"do_sample": True, "temperature": 1.0, "max_new_tokens": 64, **self.generation_kwargs}
        torch.manual_seed(self.seed)
        self.model.eval()
        lengths = prompt_lengths(self.tokenizer, prompts)
        order = sorted(range(len(prompts)), key=lengths.__getitem__)  # batches of like lengths: little left padding
        out: list[list[str]] = [[] for _ in prompts]
        starts = range(0, len(prompts), self.batch_size)
        for start in tqdm(starts, desc=f"best-of-{self.n}", disable=len(starts) < 2):
            batch = order[start : start + self.batch_size]
            inputs = encode_prompts(
                self.tokenizer, [prompts[i] for i in batch], self.max_prompt_length, device=self.model.device
            ).inputs
            ids = self.model.generate(
                **inputs, num_return_sequences=self.n, pad_token_id=self.tokenizer.pad_token_id, **kwargs
            )
            texts = self.tokenizer.batch_decode(ids[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
            for k, i in enumerate(batch):
                out[i] = [t.strip() for t in texts[k * self.n : (k + 1) * self.n]]
        return out

    def __call__(self, prompts: Sequence[Prompt]) -> list[BoNResult]:
        """Sample, optionally deduplicate, score every completion in one call per scorer, and rank."""
        samples = self.generate(prompts)
        results = []
        for prompt, completions in zip(prompts, samples):
            unique = list(dict.fromkeys(completions)) if self.deduplicate else completions
            results.append(BoNResult(prompt, unique, [], len(completions) - len(unique)))
        flat_prompts = [r.prompt for r in results for _ in r.completions]
        flat_completions = [completion_like(r.prompt, c) for r in results for c in r.completions]
        funcs = [self.scorer] if callable(self.scorer) else list(self.scorer)
        scores = score(funcs, flat_prompts, flat_completions).tolist()
        i = 0
        for r in results:
            r.scores, i = scores[i : i + len(r.completions)], i + len(r.completions)
        return results


def preference_pairs(
    results: Sequence[BoNResult], margin: float = 0.0, rejected: str = "worst", seed: int = 0
) -> tuple[list[dict[str, Any]], int]:
    """Best completion against the worst (or a random other) one, kept when the score gap is >= `margin`.

    Returns TRL preference rows (with their scores) and the number of prompts without a qualifying pair.
    """
    if rejected not in ("worst", "random"):
        raise ValueError(f"rejected must be 'worst' or 'random', got {rejected!r}")
    rng, pairs, skipped = random.Random(seed), [], 0
    for r in results:
        best = r.best_index
        others = [i for i in range(len(r.scores)) if i != best]
        if not others:
            skipped += 1
            continue
        worst = min(others, key=r.scores.__getitem__) if rejected == "worst" else rng.choice(others)
        if r.scores[best] - r.scores[worst] < margin or r.completions[best] == r.completions[worst]:
            skipped += 1
            continue
        pairs.append(
            {
                "prompt": prompt_messages(r.prompt),
                "chosen": completion_messages(r.completions[best]),
                "rejected": completion_messages(r.completions[worst]),
                "chosen_score": r.scores[best],
                "rejected_score": r.scores[worst],
            }
        )
    return pairs, skipped


def expected_best_of_n(pool: Sequence[float], n: int) -> float:
    """Unbiased estimate of E[max of n samples] from a pool of m >= n i.i.d. scores of one prompt.

    With the pool sorted ascending, x_(i) is the maximum of a uniformly drawn n-subset with probability
    C(i-1, n-1) / C(m, n), so the estimate is sum_i C(i-1, n-1) / C(m, n) * x_(i).
    """
    xs, m = sorted(pool), len(pool)
    if not 1 <= n <= m:
        raise ValueError(f"need 1 <= n <= pool size, got n={n}, pool of {m}")
    total = math.comb(m, n)
    return sum(math.comb(i - 1, n - 1) / total * x for i, x in enumerate(xs, start=1) if i >= n)


def bon_kl_bound(n: int) -> float:
    """Upper bound on KL(pi_BoN || pi): log n - (n - 1) / n (Beirami et al. 2024)."""
    return math.log(n) - (n - 1) / n


def best_of_n_curve(results: Sequence[BoNResult], ns: Sequence[int] = (1, 2, 4, 8, 16)) -> list[dict[str, float]]:
    """Mean over prompts of the estimated E[max of N] for each N that fits every pool, with the KL bound."""
    pool = min(len(r.scores) for r in results)
    return [
        {
            "n": n,
            "expected_best": sum(expected_best_of_n(r.scores, n) for r in results) / len(results),
            "kl_bound": bon_kl_bound(n),
        }
        for n in ns
        if n <= pool
    ]


def plot_best_of_n(curve: Sequence[dict[str, float]], path) -> None:
    """Expected best score against the KL bound (the reward-versus-KL picture), N marked on each point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    kl = [c["kl_bound"] for c in curve]
    best = [c["expected_best"] for c in curve]
    ax.plot(kl, best, marker="o")
    for c in curve:
        ax.annotate(f"N={c['n']}", (c["kl_bound"], c["expected_best"]), textcoords="offset points", xytext=(4, -12))
    ax.set_xlabel("KL(best-of-N || policy) upper bound: log N - (N-1)/N  [nats]")
    ax.set_ylabel("expected best score, E[max of N]")
    ax.set_title("Best-of-N: reward versus KL")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
