"""The experience maker without a trainer: models and a batch in, an Experience whose every field is what the paper
says it is out."""

import pytest
import torch

from tests.ppo.conftest import letter_e_reward, small_config
from trl_ext.models.heads import critic_from_policy, reference_copy, response_logprobs, value_forward
from trl_ext.ppo import ExperienceMaker, core
from trl_ext.ppo.rollout import collate_prompts, model_inputs


@pytest.fixture
def models(tiny_model):
    return tiny_model, critic_from_policy(tiny_model), reference_copy(tiny_model)


def test_an_experience_batch_without_a_trainer(tmp_path, models, tiny_tokenizer, prompts):
    policy, critic, ref = models
    args = small_config(tmp_path, response_length=12)
    batch = collate_prompts([prompts[i] for i in range(4)], tiny_tokenizer, args.max_prompt_length)
    torch.manual_seed(0)
    rollout = ExperienceMaker(args, tiny_tokenizer, [letter_e_reward])(policy, critic, ref, batch, kl_coef=0.1)
    exp, (b, t) = rollout.experience, rollout.experience.responses.shape
    assert b == 4 and t <= 12 and len(rollout.completions) == 4
    eos, pad = tiny_tokenizer.eos_token_id, tiny_tokenizer.pad_token_id
    assert torch.equal(exp.mask, core.response_mask(exp.responses, eos)) and (exp.responses[exp.mask == 0] == pad).all()
    assert exp.kl.abs().max() < 1e-4  # the reference is the initial policy
    assert exp.scores.tolist() == pytest.approx(letter_e_reward(batch.prompts, rollout.completions))
    inputs = model_inputs(exp.queries, exp.query_mask, exp.responses, exp.mask)
    with torch.no_grad():
        torch.testing.assert_close(exp.values, value_forward(critic, *inputs, t) * exp.mask)
        fresh, _ = response_logprobs(policy, *inputs, exp.responses, args.temperature, chunked=False)
    torch.testing.assert_close(exp.logprobs * exp.mask, fresh * exp.mask, atol=1e-4, rtol=1e-4)  # generation logits
    rewards = core.per_token_rewards(exp.scores, exp.kl, 0.1, exp.mask)  # KL placed in the reward
    advantages, returns = core.gae(rewards, exp.values, exp.mask, args.gamma, args.lam)
    torch.testing.assert_close(exp.returns, returns)
    torch.testing.assert_close(exp.advantages, core.masked_whiten(advantages, exp.mask))
    assert exp.sequence_kl.shape == (4,)


def test_kl_in_the_loss_leaves_the_rewards_alone(tmp_path, models, tiny_tokenizer, prompts):
    """kl_placement=loss: the per-token rewards are the score at the last token only."""
    policy, critic, ref = models
    torch.manual_seed(0)
    with torch.no_grad():  # a reference away from the policy, so that the KL is not 0
        for p in ref.parameters():
            p.add_(0.05 * torch.randn_like(p))
    args = small_config(tmp_path, response_length=6, kl_placement="loss")
    batch = collate_prompts([prompts[i] for i in range(4)], tiny_tokenizer, args.max_prompt_length)
    exp = ExperienceMaker(args, tiny_tokenizer, [letter_e_reward])(policy, critic, ref, batch, 0.5).experience
    assert exp.kl.abs().max() > 1e-3
    advantages, returns = core.gae(core.per_token_rewards(exp.scores, exp.kl, 0.0, exp.mask), exp.values, exp.mask)
    torch.testing.assert_close(exp.returns, returns)


def test_reward_functions_get_the_other_columns_row_aligned(tmp_path, models, tiny_tokenizer, prompts):
    policy, _, ref = models
    rows = [{"prompt": prompts[i]["prompt"], "baseline": f"answer {i}"} for i in range(3)]
    batch = collate_prompts(rows, tiny_tokenizer, 512)
    got = {}

    def reward(prompts, completions, baseline, completion_ids, state, **kwargs):
        got.update(prompts=prompts, baseline=baseline, completion_ids=completion_ids, state=state)
        return [0.0] * len(completions)

    samples = ExperienceMaker(small_config(tmp_path, response_length=6), tiny_tokenizer, [reward]).sample(
        policy, ref, batch, {"state": "S"}
    )
    assert got["baseline"] == ["answer 0", "answer 1", "answer 2"] and got["prompts"] == [r["prompt"] for r in rows]
    assert [len(ids) for ids in got["completion_ids"]] == samples.mask.sum(1).tolist() and got["state"] == "S"


def test_prompts_are_cut_from_the_left_and_counted(tiny_tokenizer):
    rows = [{"prompt": "word " * 100}, {"prompt": "hi"}]
    batch = collate_prompts(rows, tiny_tokenizer, max_prompt_length=16)
    assert batch.truncated == 1 and batch.queries.shape == (2, 16)
    n = int(batch.query_mask[1].sum())
    assert batch.query_mask[1].tolist() == [0] * (16 - n) + [1] * n  # left padded
