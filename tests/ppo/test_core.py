"""PPO math against hand-computed examples."""

import pytest
import torch

from trl_ext.ppo import core
from trl_ext.rewards import score


def test_gae_by_hand():
    rewards, values, mask = torch.tensor([[0.0, 0.0, 1.0]]), torch.tensor([[0.5, 0.6, 0.7]]), torch.ones(1, 3)
    advantages, returns = core.gae(rewards, values, mask, gamma=1.0, lam=0.95)
    # A2 = 1 - 0.7; A1 = (0.7 - 0.6) + 0.95 * A2; A0 = (0.6 - 0.5) + 0.95 * A1
    assert torch.allclose(advantages, torch.tensor([[0.46575, 0.385, 0.3]]))
    assert torch.allclose(returns, torch.tensor([[0.96575, 0.985, 1.0]]))


def test_gae_with_discount_ignores_padding():
    rewards, values = torch.tensor([[0.0, 2.0, 9.0]]), torch.tensor([[1.0, 1.0, 9.0]])
    advantages, _ = core.gae(rewards, values, torch.tensor([[1, 1, 0]]), gamma=0.5, lam=1.0)
    # padding (value 9, reward 9) is ignored: A1 = 2 - 1; A0 = 0 + 0.5 * 1 - 1 + 0.5 * A1
    assert torch.allclose(advantages, torch.tensor([[0.0, 1.0, 0.0]]))


def test_response_mask_and_rewards():
    mask = core.response_mask(torch.tensor([[5, 2, 7, 2], [5, 6, 7, 8]]), eos_token_id=2)
    assert mask.tolist() == [[1, 1, 0, 0], [1, 1, 1, 1]]
    rewards = core.per_token_rewards(torch.tensor([3.0, -1.0]), torch.ones(2, 4), kl_coef=0.1, mask=mask)
    assert torch.allclose(rewards, torch.tensor([[-0.1, 2.9, 0, 0], [-0.1, -0.1, -0.1, -1.1]]))


def test_whitening():
    x, mask = torch.tensor([[1.0, 2.0, 3.0, 100.0]]), torch.tensor([[1, 1, 1, 0]])
    w = core.masked_whiten(x, mask)
    assert core.masked_mean(w, mask).abs() < 1e-6 and core.masked_mean(w**2, mask) == pytest.approx(1, abs=1e-4)
    assert w[0, 3] == 0


def test_whitening_uses_the_biased_variance_on_purpose():
    """Divided by n, not n - 1: the masked mean of squares is exactly 1, and a lone token whitens to 0 (no NaN)."""
    x, mask = torch.tensor([[1.0, 2.0, 4.0]]), torch.ones(1, 3)
    w = core.masked_whiten(x, mask)
    assert (w**2).mean().item() == pytest.approx(1.0, abs=1e-6)  # Bessel's correction would give 2/3
    lone = core.masked_whiten(torch.tensor([[5.0, 7.0]]), torch.tensor([[1, 0]]))
    assert lone.tolist() == [[0.0, 0.0]]


def test_kl_placement_is_one_switch():
    assert core.kl_coefs(0.1, "reward") == (0.1, 0.0) and core.kl_coefs(0.1, "loss") == (0.0, 0.1)
    with pytest.raises(ValueError, match="kl_placement"):
        core.kl_coefs(0.1, "both")


def test_clipped_policy_loss_by_formula():
    old = torch.zeros(1, 2)
    new = torch.log(torch.tensor([[1.5, 0.5]]))  # ratios 1.5 and 0.5
    adv = torch.tensor([[1.0, -1.0]])
    loss, stats = core.policy_loss(new, old, adv, torch.ones(1, 2), cliprange=0.2)
    # token 1: max(-1 * 1.5, -1 * 1.2) = -1.2 (clipped); token 2: max(1 * 0.5, 1 * 0.8) = 0.8 (clipped)
    assert loss.item() == pytest.approx((-1.2 + 0.8) / 2)
    assert stats["policy/clipfrac"].item() == 1.0


def test_clipped_value_loss_by_formula():
    loss, stats = core.value_loss(
        torch.tensor([[2.0, 0.1]]),
        torch.tensor([[1.0, 0.0]]),
        torch.tensor([[3.0, 0.0]]),
        torch.ones(1, 2),
        cliprange_value=0.2,
    )
    # token 1: max((2-3)^2, (1.2-3)^2) = 3.24; token 2: max(0.01, 0.01) = 0.01
    assert loss.item() == pytest.approx(0.5 * (3.24 + 0.01) / 2)
    assert stats["val/clipfrac"].item() == 0.5


def good(prompts, completions, **kw):
    return [1.0] * len(completions)


@pytest.mark.parametrize(
    "bad, message",
    [
        (lambda prompts, completions, **kw: [1.0], "returned 1 scores for 2 completions"),
        (lambda prompts, completions, **kw: [1.0, float("nan")], "returned nan for completion 1"),
        (lambda prompts, completions, **kw: [1.0, "high"], "returned a non-number for completion 1"),
        (lambda prompts, completions, **kw: None, "returned NoneType scores"),
    ],
)
def test_bad_reward_functions_are_named(bad, message):
    bad.__name__ = "my_reward"
    with pytest.raises(ValueError, match=f"reward function my_reward {message}"):
        score([good, bad], ["p", "q"], ["a", "b"])
    assert score([good, good], ["p", "q"], ["a", "b"], weights=[1.0, 0.5]).tolist() == [1.5, 1.5]
