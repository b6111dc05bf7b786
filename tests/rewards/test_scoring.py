"""A reward model as a reward function: scores come back in the caller's order, however the rows are batched."""

import torch

from trl_ext.models import load_reward_model
from trl_ext.rewards.scoring import reward_scores


def test_batched_scores_match_one_at_a_time(tiny_path, tiny_tokenizer):
    """Rows are batched by length (little padding) and the scores put back in order: the same as one row per batch,
    for prompts and completions of very different lengths."""
    torch.manual_seed(0)
    model = load_reward_model(tiny_path, tiny_tokenizer)
    prompts = ["hi", "a much longer prompt " * 8, [{"role": "user", "content": "Say something."}], "mid length prompt"]
    completions = ["ok " * 10, "no", "Something.", "yes " * 3]
    alone = reward_scores(model, tiny_tokenizer, prompts, completions, batch_size=1)
    batched = reward_scores(model, tiny_tokenizer, prompts, completions, batch_size=3)
    assert alone.shape == (4,) and len(set(alone.tolist())) == 4
    torch.testing.assert_close(batched, alone, atol=1e-4, rtol=1e-4)
