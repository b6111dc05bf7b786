"""KL estimators against the exact KL of small categorical distributions; the controllers."""

import pytest
import torch

from trl_ext.kl import AdaptiveKLController, FixedKLController, kl_per_token, make_kl_controller

P_LOGITS = torch.tensor([2.0, 0.5, -1.0, 0.0, 1.0])
Q_LOGITS = torch.tensor([0.0, 1.0, 0.5, -0.5, 0.3])


def exact_kl(p_logits, q_logits):
    p, logp, logq = p_logits.softmax(-1), p_logits.log_softmax(-1), q_logits.log_softmax(-1)
    return (p * (logp - logq)).sum().item()


def expected(estimator, p_logits, q_logits):
    """The estimator's exact expectation under pi = softmax(p_logits): a sum over the five categories."""
    logp, logq = p_logits.log_softmax(-1), q_logits.log_softmax(-1)
    return (logp.exp() * kl_per_token(logp[None], logq[None], estimator)[0]).sum().item()


@pytest.fixture
def samples():
    torch.manual_seed(0)
    tokens = torch.distributions.Categorical(logits=P_LOGITS).sample((200_000,))
    return P_LOGITS.log_softmax(-1)[tokens][None], Q_LOGITS.log_softmax(-1)[tokens][None]


@pytest.mark.parametrize("estimator", ["k1", "k3"])
def test_unbiased_estimators_match_exact_kl(samples, estimator):
    logprobs, ref_logprobs = samples
    estimate = kl_per_token(logprobs, ref_logprobs, estimator).mean().item()
    assert estimate == pytest.approx(exact_kl(P_LOGITS, Q_LOGITS), rel=0.02)


def test_k2_is_biased_but_close_and_nonnegative(samples):
    k2 = kl_per_token(*samples, "k2")
    assert (k2 >= 0).all() and torch.equal(k2, kl_per_token(*samples, "mse"))
    assert k2.mean().item() == pytest.approx(expected("k2", P_LOGITS, Q_LOGITS), rel=0.01)  # it estimates E[k2] ...
    kl, bias = exact_kl(P_LOGITS, Q_LOGITS), expected("k2", P_LOGITS, Q_LOGITS) - exact_kl(P_LOGITS, Q_LOGITS)
    assert 0.05 < bias / kl < 0.2  # ... which is not the KL: 13% above it for these far-apart distributions,
    near = P_LOGITS + 0.05 * (Q_LOGITS - P_LOGITS)  # but close when the policies are close (the bias is third order)
    assert expected("k2", P_LOGITS, near) == pytest.approx(exact_kl(P_LOGITS, near), rel=0.02)
    assert expected("k2", P_LOGITS, near) != pytest.approx(exact_kl(P_LOGITS, near), rel=1e-3)


def test_k3_and_abs_are_nonnegative_per_token(samples):
    assert (kl_per_token(*samples, "k3") >= 0).all() and (kl_per_token(*samples, "abs") >= 0).all()
    assert (kl_per_token(*samples, "k1") < 0).any()  # k1 can be negative token by token


def test_full_is_exact():
    logits, ref_logits = P_LOGITS.expand(2, 3, 5), Q_LOGITS.expand(2, 3, 5)
    dummy = torch.zeros(2, 3)
    full = kl_per_token(dummy, dummy, "full", logits, ref_logits)
    assert full.shape == (2, 3)
    assert torch.allclose(full, torch.full((2, 3), exact_kl(P_LOGITS, Q_LOGITS)), atol=1e-6)
    with pytest.raises(ValueError, match="needs the logits"):
        kl_per_token(dummy, dummy, "full")
    with pytest.raises(ValueError, match="Unknown KL estimator"):
        kl_per_token(dummy, dummy, "k9")


def test_adaptive_controller_moves_toward_target():
    ctl = AdaptiveKLController(0.1, target=6.0, horizon=100)
    assert ctl.update(12.0, n_steps=10) == pytest.approx(0.1 * (1 + 0.2 * 10 / 100))  # error clipped to +0.2
    ctl = AdaptiveKLController(0.1, target=6.0, horizon=100)
    assert ctl.update(3.0, n_steps=10) == pytest.approx(0.1 * (1 - 0.2 * 10 / 100))  # clipped to -0.2
    ctl = AdaptiveKLController(0.1, target=6.0, horizon=100)
    assert ctl.update(6.6, n_steps=10) == pytest.approx(0.1 * (1 + 0.1 * 10 / 100))
    restored = AdaptiveKLController(1.0, 1.0, 1.0)
    restored.load_state_dict(ctl.state_dict())
    assert restored == ctl


def test_fixed_controller_and_factory():
    assert FixedKLController(0.05).update(100.0, 8) == 0.05
    assert isinstance(make_kl_controller(0.05), FixedKLController)
    assert isinstance(make_kl_controller(0.05, target=6.0), AdaptiveKLController)


def test_a_target_of_zero_is_adaptive():
    """`target=0.0` is a target (keep the KL at zero), not "no target": the limit of the formula as target -> 0."""
    ctl = make_kl_controller(0.1, target=0.0, horizon=100)
    assert isinstance(ctl, AdaptiveKLController)
    assert ctl.update(0.5, n_steps=10) == pytest.approx(0.1 * (1 + 0.2 * 10 / 100))  # above the target: rises
    assert ctl.update(0.0, n_steps=10) == pytest.approx(0.1 * (1 + 0.2 * 10 / 100))  # at it: unchanged
    assert ctl.update(-0.1, n_steps=10) == pytest.approx(0.1 * (1 + 0.02) * (1 - 0.02))  # a negative k1 estimate
    with pytest.raises(ValueError, match="target KL must be >= 0"):
        make_kl_controller(0.1, target=-1.0)
