"""Evaluate saved models (policies and reward models) on held-out preference pairs against a reference policy."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset

from trl_ext.chat import completion_messages
from trl_ext.eval.generation import generate_batched
from trl_ext.eval.metrics import completion_logps, preference_metrics
from trl_ext.models import load_policy, load_reward_model, load_tokenizer
from trl_ext.rewards.scoring import reward_scores

logger = logging.getLogger(__name__)


def is_reward_model(path: str | Path) -> bool:
    """A saved model is a reward model when its architecture is a sequence classifier."""
    config = Path(path) / "config.json"
    architectures = json.loads(config.read_text()).get("architectures", []) if config.exists() else []
    return any(a.endswith("ForSequenceClassification") for a in architectures)


def evaluate_models(
    models: dict[str, str],
    reference: str,
    pairs: Dataset,
    beta: float = 0.1,
    batch_size: int = 8,
    max_length: int = 256,
    n_generate: int = 6,
    max_new_tokens: int = 64,
    n_examples: int = 3,
) -> dict[str, Any]:
    """Metrics per model name, plus example generations; the reference itself is reported as "base".

    Policies: `implicit_accuracy`/`implicit_margin` (beta * log pi/pi_ref), `logp_accuracy` (reference-free: is
    the chosen response more likely?), mean log-ratios to the reference on chosen and rejected, the mean log-ratio
    of the model's own greedy answers (a KL proxy), and their mean length in tokens. Reward models: accuracy and
    margin of their scores. Length diagnostics for every model: Pearson and Spearman correlation between its reward
    (implicit or score) and the length in tokens of the chosen and rejected responses; `lengths` holds the token
    lengths of chosen, rejected and each model's generations, for histograms.
    """
    prompts, chosen, rejected = pairs["prompt"], pairs["chosen"], pairs["rejected"]
    gen_prompts = prompts[:n_generate]
    tokenizer = load_tokenizer(reference)
    ref = load_policy(reference, tokenizer)
    kw = dict(batch_size=batch_size, max_length=max_length)
    ref_c = completion_logps(ref, tokenizer, prompts, chosen, **kw)
    ref_r = completion_logps(ref, tokenizer, prompts, rejected, **kw)

    def n_tokens(responses) -> list[int]:
        return [len(tokenizer(r[0]["content"], add_special_tokens=False)["input_ids"]) for r in responses]

    pair_lengths = torch.tensor(n_tokens(chosen) + n_tokens(rejected), dtype=torch.float64)
    lengths: dict[str, list[int]] = {"chosen": n_tokens(chosen), "rejected": n_tokens(rejected)}

    def answer(name, model, tok) -> tuple[list[str], dict[str, float]]:
        texts = generate_batched(model, tok, gen_prompts, max_new_tokens=max_new_tokens, batch_size=batch_size).texts
        lengths[f"generated: {name}"] = [len(tok(t, add_special_tokens=False)["input_ids"]) for t in texts]
        return texts, {"gen_length": sum(lengths[f"generated: {name}"]) / max(len(texts), 1)}

    def length_bias(reward_chosen: torch.Tensor, reward_rejected: torch.Tensor) -> dict[str, float]:
        rewards = torch.cat([reward_chosen, reward_rejected]).double()
        return {
            "length_pearson": correlation(rewards, pair_lengths),
            "length_spearman": correlation(rank(rewards), rank(pair_lengths)),
        }

    base_texts, base_gen = answer("base", ref, tokenizer)
    results: dict[str, Any] = {"base": {"kind": "policy", **preference_metrics(ref_c, ref_r, "logp_"), **base_gen}}
    examples = {"prompt": [p[-1]["content"] for p in gen_prompts[:n_examples]], "base": base_texts[:n_examples]}
    for name, path in models.items():
        logger.info("Evaluating %s (%s)", name, path)
        tok = load_tokenizer(path)
        if is_reward_model(path):
            model = load_reward_model(path, tok)
            score_c, score_r = (
                reward_scores(model, tok, prompts, chosen, **kw),
                reward_scores(model, tok, prompts, rejected, **kw),
            )
            results[name] = {"kind": "reward", **preference_metrics(score_c, score_r), **length_bias(score_c, score_r)}
            continue
        model = load_policy(path, tok)
        pol_c = completion_logps(model, tok, prompts, chosen, **kw)
        pol_r = completion_logps(model, tok, prompts, rejected, **kw)
        texts, gen = answer(name, model, tok)
        answers = [completion_messages(t) for t in texts]
        kl_proxy = (
            completion_logps(model, tok, gen_prompts, answers, **kw)
            - completion_logps(ref, tokenizer, gen_prompts, answers, **kw)
        ).mean()
        results[name] = {
            "kind": "policy",
            **preference_metrics(beta * (pol_c - ref_c), beta * (pol_r - ref_r), "implicit_"),
            **preference_metrics(pol_c, pol_r, "logp_"),
            "logratio_chosen": (pol_c - ref_c).mean().item(),
            "logratio_rejected": (pol_r - ref_r).mean().item(),
            "kl_proxy": kl_proxy.item(),
            **gen,
            **length_bias(pol_c - ref_c, pol_r - ref_r),
        }
        examples[name] = texts[:n_examples]
        del model
    return {"n_pairs": len(pairs), "beta": beta, "models": results, "examples": examples, "lengths": lengths}


def rank(x: torch.Tensor) -> torch.Tensor:
    """Ranks of `x` (ties broken by position), for Spearman's correlation."""
    return x.argsort().argsort().double()


def correlation(x: torch.Tensor, y: torch.Tensor) -> float:
    """Pearson correlation of two 1-D tensors (0 when either is constant)."""
    r = torch.corrcoef(torch.stack([x.double(), y.double()]))[0, 1]
    return r.item() if torch.isfinite(r) else 0.0
