"""Each loss against a value computed by hand, and batch-mean behaviour."""

import math

import numpy as np
import pytest
import torch as th

from policykd.distributions import ActionDist, mix
from policykd.errors import PolicykdError
from policykd.losses import (
    action_agreement,
    distillation_loss,
    entropy,
    hard_nll,
    kl,
    kl_categorical,
    kl_gaussian,
    mse_action,
    mse_logits,
    mse_q,
    reverse_kl,
)
from policykd.registry import LOSSES


def cat(*rows, q=False):
    return ActionDist("categorical", logits=th.tensor(rows, dtype=th.float32), q_values=q)


def gauss(mean, log_std, squashed=False):
    return ActionDist("gaussian", mean=th.tensor(mean), log_std=th.tensor(log_std), squashed=squashed)


P = [math.log(0.7), math.log(0.3)]
Q = [0.0, 0.0]


def test_kl_categorical_by_hand():
    expected = 0.7 * math.log(0.7 / 0.5) + 0.3 * math.log(0.3 / 0.5)  # 0.08228
    assert kl(cat(Q), cat(P)).item() == pytest.approx(expected, rel=1e-5)
    assert reverse_kl(cat(Q), cat(P)).item() == pytest.approx(
        0.5 * math.log(0.5 / 0.7) + 0.5 * math.log(0.5 / 0.3), rel=1e-5
    )


def test_kl_temperature_softens_and_scales_by_t_squared():
    t = 2.0
    p = np.array([0.7, 0.3]) ** (1 / t)
    p /= p.sum()
    expected = t * t * float(np.sum(p * np.log(p / 0.5)))
    assert kl_categorical(th.tensor([P]), th.tensor([Q]), t).item() == pytest.approx(expected, rel=1e-5)


def test_losses_are_batch_means():
    one = kl(cat(Q), cat(P)).item()
    many = kl(cat(Q, Q, Q, Q), cat(P, P, P, P)).item()
    assert many == pytest.approx(one, rel=1e-6)
    mixed = kl(cat(Q, P), cat(P, P)).item()  # second row matches exactly -> half the loss
    assert mixed == pytest.approx(one / 2, rel=1e-5)


def test_gaussian_kl_by_hand():
    # KL(N(0, 1) || N(1, 2^2)) = ln 2 + (1 + 1) / 8 - 1/2
    student, teacher = gauss([[1.0]], [[math.log(2.0)]]), gauss([[0.0]], [[0.0]])
    assert kl(student, teacher).item() == pytest.approx(math.log(2) + 0.25 - 0.5, rel=1e-5)
    # summed over action dimensions
    student2, teacher2 = gauss([[1.0, 1.0]], [[math.log(2.0)] * 2]), gauss([[0.0, 0.0]], [[0.0, 0.0]])
    assert kl(student2, teacher2).item() == pytest.approx(2 * (math.log(2) + 0.25 - 0.5), rel=1e-5)
    # temperature multiplies both variances: the mean term shrinks by 1/T
    t = 4.0
    expected = math.log(2) + (t * 1 + 1) / (2 * t * 4) - 0.5
    assert kl_gaussian(
        th.tensor([[0.0]]), th.tensor([[0.0]]), th.tensor([[1.0]]), th.tensor([[math.log(2.0)]]), t
    ).item() == pytest.approx(expected, rel=1e-5)


def test_hard_nll_by_hand():
    # teacher prefers action 0; student probabilities softmax([0, 0]) = 0.5
    assert hard_nll(cat(Q), cat(P)).item() == pytest.approx(math.log(2), rel=1e-6)
    # Gaussian: -log N(0; 1, 1) = 0.5 ln(2 pi) + 0.5
    assert hard_nll(gauss([[1.0]], [[0.0]]), gauss([[0.0]], [[-1.0]])).item() == pytest.approx(
        0.5 * math.log(2 * math.pi) + 0.5, rel=1e-5
    )


def test_mse_losses_by_hand():
    assert mse_logits(cat([1.0, 2.0]), cat([0.0, 0.0])).item() == pytest.approx((1 + 4) / 2)
    assert mse_q(cat([1.0, 3.0], q=True), cat([1.0, 1.0], q=True)).item() == pytest.approx(2.0)
    with pytest.raises(PolicykdError, match="Q-value teacher"):
        mse_q(cat([1.0, 3.0]), cat([1.0, 1.0]))
    # squashed Gaussians compare tanh(mean); deterministic squashed actions directly
    student = gauss([[0.5]], [[0.0]], squashed=True)
    teacher = ActionDist("deterministic", mean=th.tensor([[0.1]]), squashed=True)
    assert mse_action(student, teacher).item() == pytest.approx((math.tanh(0.5) - 0.1) ** 2, rel=1e-5)


def test_incompatible_losses_fail_clearly():
    with pytest.raises(PolicykdError, match="needs"):
        kl(gauss([[0.0]], [[0.0]]), ActionDist("deterministic", mean=th.tensor([[0.0]]), squashed=True))
    with pytest.raises(PolicykdError, match="different action spaces"):
        kl(gauss([[0.0]], [[0.0]]), gauss([[0.0]], [[0.0]], squashed=True))


def test_entropy_and_mixed_loss():
    assert entropy(cat(Q)).item() == pytest.approx(math.log(2), rel=1e-6)
    assert entropy(gauss([[0.0]], [[0.0]])).item() == pytest.approx(0.5 * math.log(2 * math.pi * math.e), rel=1e-6)
    terms = distillation_loss(cat(Q), cat(P), loss="kl", temperature=1.0, alpha=0.25, ent_coef=0.1)
    soft, hard = kl(cat(Q), cat(P)).item(), math.log(2)
    assert terms.policy.item() == pytest.approx(0.75 * soft + 0.25 * hard, rel=1e-5)
    assert terms.total.item() == pytest.approx(0.75 * soft + 0.25 * hard - 0.1 * math.log(2), rel=1e-5)


def test_value_term_ignores_unknown_values():
    student_value = th.tensor([1.0, 5.0])
    teacher_value = th.tensor([3.0, float("nan")])
    terms = distillation_loss(
        cat(Q, Q),
        cat(P, P),
        loss="kl",
        temperature=1.0,
        alpha=0.0,
        ent_coef=0.0,
        student_value=student_value,
        teacher_value=teacher_value,
        vf_coef=1.0,
    )
    assert terms.value.item() == pytest.approx(4.0)  # (1-3)^2 / (var([3]) + 1)


def test_agreement_and_registry():
    assert action_agreement(cat(P, Q[::-1]), cat(P, [0.0, 1.0])) == pytest.approx(0.5)
    assert set(LOSSES) >= {"kl", "reverse_kl", "gaussian_kl", "ce", "nll", "mse_logits", "mse_q", "mse_action"}
    assert LOSSES.load("kl") is kl and LOSSES.load("ce") is hard_nll


def test_a_registered_loss_is_used_by_distillation_loss():
    """One registry line makes a user's loss a `loss=` choice: the total is the registered function's value."""

    def doubled_kl(student, teacher, temperature=1.0, weights=None):
        return 2 * kl(student, teacher, temperature, weights)

    LOSSES.register("doubled_kl", doubled_kl, "twice the KL", needs_distribution=True)
    try:
        plain = distillation_loss(cat(Q), cat(P), loss="kl", temperature=1.0, alpha=0.0, ent_coef=0.0)
        doubled = distillation_loss(cat(Q), cat(P), loss="doubled_kl", temperature=1.0, alpha=0.0, ent_coef=0.0)
        assert doubled.policy.item() == pytest.approx(2 * plain.policy.item())
        with pytest.raises(PolicykdError, match="already registered"):
            LOSSES.register("doubled_kl", doubled_kl, "again")
    finally:
        LOSSES.unregister("doubled_kl")
    with pytest.raises(PolicykdError, match="unknown loss 'doubled_kl'"):
        LOSSES["doubled_kl"]


def test_ensemble_mix():
    a, b = cat([math.log(0.9), math.log(0.1)]), cat([math.log(0.5), math.log(0.5)])
    mixed = mix([a, b], [1.0, 1.0])
    assert th.softmax(mixed.logits, -1)[0].tolist() == pytest.approx([0.7, 0.3], rel=1e-5)
    g = mix([gauss([[0.0]], [[0.0]]), gauss([[2.0]], [[0.0]])], [1.0, 1.0])
    assert g.mean.item() == pytest.approx(1.0)
    assert math.exp(2 * g.log_std.item()) == pytest.approx(2.0, rel=1e-5)  # 1 + (0 + 4)/2 - 1


@pytest.mark.parametrize(
    "algo, env_id, kwargs",
    [
        ("ppo", "Pendulum-v1", {}),
        ("ppo", "CartPole-v1", {"share_features_extractor": False}),
        ("a2c", "CartPole-v1", {}),
        ("sac", "Pendulum-v1", {}),
        ("dqn", "CartPole-v1", {}),
    ],
)
def test_one_forward_pass_gives_what_sb3s_two_calls_give(algo, env_id, kwargs):
    """`policy_outputs` runs the features extractor once; the distribution and value must not change."""
    from stable_baselines3 import A2C, DQN, PPO, SAC

    from policykd.distributions import policy_dist, policy_outputs, policy_value

    model = {"ppo": PPO, "a2c": A2C, "sac": SAC, "dqn": DQN}[algo](
        "MlpPolicy", env_id, policy_kwargs=kwargs or None, seed=0
    )
    obs = model.policy.obs_to_tensor(np.stack([model.observation_space.sample() for _ in range(16)]))[0]
    with th.no_grad():
        dist, value = policy_outputs(model.policy, obs)
        expected, expected_value = policy_dist(model.policy, obs), policy_value(model.policy, obs)
    for key in ("logits", "mean", "log_std"):
        if getattr(expected, key) is not None:
            assert th.equal(getattr(dist, key), getattr(expected, key)), key
    assert (value is None) == (expected_value is None)
    if value is not None:
        assert th.equal(value, expected_value)


def test_weighted_losses_are_the_weighted_mean_of_per_state_losses():
    one = kl(cat(Q), cat(P)).item()  # state 1 disagrees, state 2 agrees exactly
    weights = th.tensor([1.5, 0.5])
    assert kl(cat(Q, P), cat(P, P), weights=weights).item() == pytest.approx(1.5 * one / 2, rel=1e-5)
    nll = hard_nll(cat(Q, P), cat(P, P), weights=weights).item()
    assert nll == pytest.approx((1.5 * -math.log(0.5) + 0.5 * -math.log(0.7)) / 2, rel=1e-5)


def test_state_weights_follow_disagreement_and_teacher_confidence():
    from policykd.losses import state_weights

    student, teacher = cat(Q, P), cat(P, P)
    assert state_weights("uniform", student, teacher) is None
    by_kl = state_weights("kl", student, teacher)
    assert (
        by_kl.mean().item() == pytest.approx(1.0)
        and by_kl[0] > by_kl[1]
        and by_kl[1].item() == pytest.approx(0.0, abs=1e-6)
    )
    sure, unsure = [math.log(0.95), math.log(0.05)], [0.0, 0.0]
    confidence = state_weights("teacher-confidence", student, cat(sure, unsure))
    assert confidence.mean().item() == pytest.approx(1.0)
    assert confidence[0].item() == pytest.approx(2 * 0.95 / 1.45, rel=1e-5)
    gaussian = state_weights(
        "teacher-confidence", gauss([[0.0], [0.0]], [[0.0], [0.0]]), gauss([[0.0], [0.0]], [[-1.0], [0.0]])
    )
    assert gaussian[0] > gaussian[1]
