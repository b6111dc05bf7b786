"""Length-controlled reward on synthetic data where the base reward is quality + c * length."""

import random

import pytest
import torch

from tests.conftest import cpu_args
from trl_ext.rewards import LengthControlledReward


def pearson(x, y):
    x, y = torch.tensor(x, dtype=torch.float64), torch.tensor(y, dtype=torch.float64)
    x, y = x - x.mean(), y - y.mean()
    return (x @ y / (x.norm() * y.norm())).item()


def spearman(x, y):
    rank = lambda v: torch.tensor(v).argsort().argsort().tolist()  # noqa: E731
    return pearson(rank(x), rank(y))


@pytest.fixture
def synthetic():
    rng = random.Random(0)
    quality = [rng.random() for _ in range(2000)]
    completions = [f"{i:04d}" + "x" * rng.randint(10, 300) for i in range(len(quality))]  # unique texts
    by_text = dict(zip(completions, quality))

    def base(prompts, completions, **kwargs):  # quality + 0.01 per character: a verbosity-biased reward
        return [by_text[c] + 0.01 * len(c) for c in completions]

    return quality, completions, base


@pytest.mark.parametrize("mode", ["regression", "linear"])
def test_controlled_reward_forgets_length_but_keeps_quality(synthetic, mode):
    quality, completions, base = synthetic
    lengths = [len(c) for c in completions]
    raw = base(None, completions)
    assert pearson(raw, lengths) > 0.9  # the bias is real
    lc = LengthControlledReward(base, mode=mode, alpha=0.01)
    controlled = lc(["p"] * len(completions), completions)
    assert abs(pearson(controlled, lengths)) < 0.05
    assert spearman(controlled, quality) >= 0.9


def test_regression_fitted_on_reference_then_frozen(synthetic):
    quality, completions, base = synthetic
    lc = LengthControlledReward(base, mode="regression").fit(["p"] * 1000, completions[:1000])
    slope, _ = lc.slope_and_mean_length
    assert slope == pytest.approx(0.01, abs=1e-3)
    held_out = lc(["p"] * 1000, completions[1000:])
    assert abs(pearson(held_out, [len(c) for c in completions[1000:]])) < 0.1
    assert lc.slope_and_mean_length == (slope, lc.slope_and_mean_length[1])  # not updated by scoring


def test_target_and_normalized_modes(tiny_tokenizer):
    def constant(prompts, completions, **kwargs):
        return [1.0] * len(completions)

    target = LengthControlledReward(constant, mode="target", alpha=0.1, target_length=5)
    assert target(["p", "p"], ["abc", "abcdefgh"]) == pytest.approx([1.0, 0.7])
    normalized = LengthControlledReward(constant, mode="normalized", tokenizer=tiny_tokenizer)
    messages = [[{"role": "assistant", "content": "hello there"}]]
    n_tokens = len(tiny_tokenizer("hello there", add_special_tokens=False)["input_ids"])
    assert normalized(["p"], messages) == pytest.approx([1.0 / n_tokens])
    with pytest.raises(ValueError, match="target_length"):
        LengthControlledReward(constant, mode="target")
    assert normalized.__name__ == "length_controlled_normalized(constant)"


def test_grpo_trainer_runs_with_a_length_controlled_reward(tmp_path, tiny_path, tiny_tokenizer):
    """TRL's own GRPOTrainer takes LengthControlledReward as a reward function."""
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from trl_ext.models import load_policy

    def letter_e(prompts, completions, **kwargs):
        return [c[0]["content"].count("e") / 10 for c in completions]

    reward = LengthControlledReward(letter_e, mode="linear", alpha=0.001, tokenizer=tiny_tokenizer)
    data = Dataset.from_list([{"prompt": [{"role": "user", "content": f"Say something {i}"}]} for i in range(8)])
    args = GRPOConfig(
        **cpu_args(tmp_path, max_steps=2, per_device_train_batch_size=4, save_strategy="no", logging_steps=1),
        num_generations=2,
        max_completion_length=8,
    )
    trainer = GRPOTrainer(
        model=load_policy(tiny_path, tiny_tokenizer),
        reward_funcs=[reward],
        args=args,
        train_dataset=data,
        processing_class=tiny_tokenizer,
    )
    trainer.train()
    logged = [h for h in trainer.state.log_history if any(k.startswith("rewards/length_controlled") for k in h)]
    assert len(logged) == 2


def test_plugs_into_our_ppo_and_best_of_n(tmp_path, tiny_path, tiny_model, tiny_tokenizer):
    from datasets import Dataset

    from trl_ext.chat import text_of
    from trl_ext.models import load_policy
    from trl_ext.ppo import PPOConfig, PPOTrainer
    from trl_ext.sampling import BestOfNSampler

    seen = []

    def chars(prompts, completions, **kwargs):
        seen.extend(text_of(c) for c in completions)
        return [float(len(text_of(c))) for c in completions]

    def expected(texts):  # the target mode: the length, minus half of what exceeds 3 characters
        return [len(t) - 0.5 * max(0, len(t) - 3) for t in texts]

    reward = LengthControlledReward(chars, mode="target", alpha=0.5, target_length=3)
    generation = {"min_new_tokens": 4, "max_new_tokens": 6}  # never empty
    results = BestOfNSampler(tiny_model, tiny_tokenizer, reward, n=3, generation_kwargs=generation)(["hi"])
    texts = results[0].completions
    assert len(texts) == 3 and all(len(t) > 3 for t in texts)
    assert results[0].scores == pytest.approx(expected(texts))
    seen.clear()
    args = PPOConfig(
        **cpu_args(tmp_path, max_steps=1, per_device_train_batch_size=4, save_strategy="no"),
        response_length=6,
        temperature=1.0,
        sample_every=0,
    )
    prompts = Dataset.from_list([{"prompt": "Say something."}] * 4)
    trainer = PPOTrainer(load_policy(tiny_path, tiny_tokenizer), args, tiny_tokenizer, prompts, reward_funcs=[reward])
    trainer.train()
    assert len(seen) == 4 and any(len(t) > 3 for t in seen)  # the penalty applied to some of PPO's samples
    mean = sum(expected(seen)) / 4
    assert trainer.state.log_history[0]["objective/scores"] == pytest.approx(mean, abs=1e-5)
