"""Best-of-N: argmax under a programmatic scorer, pair margins, the E[max of N] estimator, reproducibility."""

import itertools
import math

import pytest

from trl_ext.sampling import (
    BestOfNSampler,
    BoNResult,
    best_of_n_curve,
    bon_kl_bound,
    expected_best_of_n,
    plot_best_of_n,
    preference_pairs,
)

PROMPTS = [[{"role": "user", "content": "Say something."}], "plain text prompt", [{"role": "user", "content": "Hi"}]]


def length_score(prompts, completions, **kwargs):
    texts = [c[0]["content"] if isinstance(c, list) else c for c in completions]
    return [float(len(t)) for t in texts]


@pytest.fixture
def sampler(tiny_model, tiny_tokenizer):
    return BestOfNSampler(
        tiny_model, tiny_tokenizer, length_score, n=4, batch_size=2, generation_kwargs={"max_new_tokens": 12}
    )


def test_best_is_the_argmax_of_the_scorer(sampler):
    results = sampler(PROMPTS)
    assert [r.prompt for r in results] == PROMPTS and all(len(r.completions) == 4 for r in results)
    for r in results:
        assert r.scores == [float(len(c)) for c in r.completions]
        assert r.best_score == max(r.scores) and r.best == r.completions[r.scores.index(max(r.scores))]


def test_same_seed_same_samples(sampler, tiny_model, tiny_tokenizer):
    first = [r.completions for r in sampler(PROMPTS)]
    assert first == [r.completions for r in sampler(PROMPTS)]
    other = BestOfNSampler(
        tiny_model, tiny_tokenizer, length_score, n=4, batch_size=2, seed=1, generation_kwargs={"max_new_tokens": 12}
    )
    assert first != [r.completions for r in other(PROMPTS)]


def test_batching_does_not_change_the_samples(tiny_model, tiny_tokenizer):
    """Argmax, 6 forced tokens: prompts of different lengths batched together (left padding) continue exactly as
    they do alone."""
    greedy = {"top_k": 1, "min_new_tokens": 6, "max_new_tokens": 6}  # sampling from the argmax only
    one, three = (
        BestOfNSampler(tiny_model, tiny_tokenizer, length_score, n=2, batch_size=b, generation_kwargs=greedy)
        for b in (1, 3)
    )
    prompts = ["plain text prompt", "Say", "How do I boil an egg? Tell me"]  # the tiny model continues these
    alone, batched = [r.completions for r in one(prompts)], [r.completions for r in three(prompts)]
    assert alone == batched and all(c[0] == c[1] for c in alone)
    assert len({c[0] for c in alone}) == 3 and all(c[0] for c in alone)  # three different, non-empty continuations


def test_deduplication(tiny_model, tiny_tokenizer):
    greedy = BestOfNSampler(
        tiny_model,
        tiny_tokenizer,
        length_score,
        n=5,
        deduplicate=True,
        generation_kwargs={"top_k": 1, "max_new_tokens": 6},
    )  # sampling from the argmax only
    results = greedy(PROMPTS[:1])
    assert len(results[0].completions) == 1 and results[0].n_duplicates == 4


def test_pairs_respect_the_margin():
    results = [BoNResult("p1", ["a", "bb", "ccc"], [0.0, 1.0, 3.0]), BoNResult("p2", ["x", "y"], [1.0, 1.2])]
    pairs, skipped = preference_pairs(results, margin=0.5)
    assert skipped == 1 and len(pairs) == 1
    assert pairs[0]["chosen"][0]["content"] == "ccc" and pairs[0]["rejected"][0]["content"] == "a"
    assert pairs[0]["prompt"] == [{"role": "user", "content": "p1"}]
    random_pairs, _ = preference_pairs(results * 10, margin=0.0, rejected="random", seed=3)
    assert all(p["chosen_score"] >= p["rejected_score"] for p in random_pairs)


def test_expected_best_of_n_equals_brute_force():
    pool = [0.3, -1.0, 2.5, 0.9, 0.9, 4.0, -0.2]
    for n in range(1, len(pool) + 1):
        subsets = list(itertools.combinations(pool, n))
        brute = sum(max(s) for s in subsets) / len(subsets)
        assert expected_best_of_n(pool, n) == pytest.approx(brute)
    with pytest.raises(ValueError):
        expected_best_of_n(pool, 8)


def test_kl_bound_and_curve(tmp_path):
    assert bon_kl_bound(1) == 0 and bon_kl_bound(16) == pytest.approx(math.log(16) - 15 / 16)
    results = [BoNResult("p", [str(i) for i in range(16)], [float(i) for i in range(16)])] * 2
    curve = best_of_n_curve(results)
    assert [c["n"] for c in curve] == [1, 2, 4, 8, 16]
    assert curve[0]["expected_best"] == pytest.approx(7.5) and curve[-1]["expected_best"] == 15
    assert all(a["expected_best"] <= b["expected_best"] for a, b in zip(curve, curve[1:]))
    plot_best_of_n(curve, tmp_path / "curve.png")
    assert (tmp_path / "curve.png").stat().st_size > 1000


def test_long_prompts_keep_their_end(tiny_model, tiny_tokenizer, monkeypatch):
    """`max_prompt_length` cuts long prompts from the left before generation (HH conversations run to hundreds of
    tokens; the turn being answered is at the end)."""
    lengths, generate = [], tiny_model.generate

    def recording(**kwargs):
        lengths.append(kwargs["input_ids"].shape[1])
        return generate(**kwargs)

    monkeypatch.setattr(tiny_model, "generate", recording)
    long = "plain text prompt " * 40
    for limit in (None, 16):
        BestOfNSampler(
            tiny_model,
            tiny_tokenizer,
            length_score,
            n=2,
            max_prompt_length=limit,
            generation_kwargs={"max_new_tokens": 4},
        )([long, "hi"])
    assert lengths[0] > 100 and lengths[1] == 16
