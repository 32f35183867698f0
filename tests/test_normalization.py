"""Folding the student's input standardisation into its first layer is exact."""

import numpy as np
import pytest
import torch as th

from policykd.distributions import policy_dist, policy_value
from policykd.envs import EnvFactory
from policykd.students.build import build_student
from policykd.students.folding import fit_obs_stats, folded, supports_folding


@pytest.mark.parametrize(
    "algo, env_id, arch",
    [
        ("ppo", "Pendulum-v1", (16, 16)),
        ("ppo", "CartPole-v1", ()),
        ("dqn", "CartPole-v1", (8, 8)),
        ("sac", "Pendulum-v1", (8, 8)),
        ("td3", "Pendulum-v1", (8, 8)),
    ],
)
def test_folded_student_on_raw_obs_equals_student_on_standardised_obs(algo, env_id, arch):
    """Folding the statistics into the first layer: the same distribution and value on raw input, for every family
    (DQN's target net too), and the exact weights back after."""
    venv = EnvFactory(env_id).make(1, 0)
    student = build_student(algo, venv, arch, seed=0)
    assert supports_folding(student)
    rng = np.random.default_rng(0)
    obs = (rng.normal(size=(64, *venv.observation_space.shape)) * [5.0] + 3.0).astype(np.float32)
    stats = fit_obs_stats(obs)
    policy = student.policy
    with th.no_grad():
        x = policy.obs_to_tensor(stats.apply(obs))[0]
        before, value_before = policy_dist(policy, x), policy_value(policy, x)
        with folded(student, stats):
            raw = policy.obs_to_tensor(obs)[0]
            after, value_after = policy_dist(policy, raw), policy_value(policy, raw)
            if hasattr(policy, "q_net_target"):
                assert th.allclose(policy.q_net_target(raw), policy.q_net(raw))
        restored = policy_dist(policy, x)
    for key in ("logits", "mean", "log_std"):
        if getattr(before, key) is not None:
            assert th.allclose(getattr(before, key), getattr(after, key), atol=1e-4), key
            assert th.equal(getattr(before, key), getattr(restored, key)), key
    if value_before is not None:
        assert th.allclose(value_before, value_after, atol=1e-4)


def test_near_constant_inputs_get_a_floor_on_their_std():
    """A constant input gets a std floor, so folding never divides by zero."""
    obs = np.zeros((10, 3), dtype=np.float32)
    obs[:, 0] = np.arange(10)
    stats = fit_obs_stats(obs)
    assert stats.std[1] == pytest.approx(1e-2) and stats.std[0] > 1
