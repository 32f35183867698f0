"""Ensembles of teachers of different families: each member labels with its own VecNormalize and its own SB3
predict path; squashed and unsquashed Gaussians are mixed in env units; DQN and PPO mix on CartPole."""

import json

import numpy as np
import pytest
import torch as th
from conftest import cli
from gymnasium import spaces

from policykd.distributions import GAUSSIAN, ActionDist, env_action, unsquashed


def test_unsquashing_maps_the_mean_through_tanh_and_the_std_by_its_slope():
    """A squashed Gaussian in env units: the mean through tanh, the std by its slope (checked by sampling)."""
    box = spaces.Box(-2.0, 2.0, (1,), np.float32)
    dist = ActionDist(GAUSSIAN, mean=th.tensor([[0.4]]), log_std=th.tensor([[np.log(0.01)]]), squashed=True)
    plain = unsquashed(dist, box)
    assert not plain.squashed and plain.mean.item() == pytest.approx(2 * np.tanh(0.4), rel=1e-6)
    samples = 2 * np.tanh(0.4 + 0.01 * np.random.default_rng(0).standard_normal(200_000))
    assert float(th.exp(plain.log_std)) == pytest.approx(samples.std(), rel=0.01)
    assert np.allclose(env_action(plain, box), env_action(dist, box), atol=1e-6)  # the same greedy action


def test_ppo_with_vecnormalize_and_sac_without_each_label_their_own_way_and_distil(zoo, tmp_path):
    """Each member's label is its own SB3 predict (its own VecNormalize or none); the mixture distils into PPO."""
    import policykd
    from policykd.teachers import load_teachers

    ensemble = load_teachers(
        [str(zoo / "ppo/HalfCheetah-v3_1"), str(zoo / "sac/HalfCheetah-v3_1")], env_id="HalfCheetah-v5"
    )
    venv = ensemble.factory.make(3, 0)
    obs = venv.reset()
    assert [m.normalizer is not None for m in ensemble.members] == [True, False]
    for member in ensemble.members:  # each member's label is its own SB3 predict on the same raw observations
        own = member.normalizer.normalize_obs(obs) if member.normalizer is not None else obs
        assert np.array_equal(
            env_action(member.label(obs)[0], member.action_space), member.model.predict(own, deterministic=True)[0]
        )
    dist, _ = ensemble.label(obs)
    assert dist.kind == GAUSSIAN and not dist.squashed
    venv.close()
    result = policykd.distill(
        "HalfCheetah-v5",
        [zoo / "ppo/HalfCheetah-v3_1", zoo / "sac/HalfCheetah-v3_1"],
        out=str(tmp_path / "cheetah"),
        steps=2000,
        rounds=1,
        eval_episodes=1,
        quiet=True,
    )
    assert result.summary.student_algo == "ppo" and result.summary.teacher_algo == "ppo+sac"


def test_dqn_and_ppo_on_cartpole_mix_and_distil(zoo, tmp_path):
    """Q-values and logits mix into one label, and the student reaches 95 % of the ensemble's return."""
    import policykd

    # 6,000 steps, 10 epochs: 500 at seeds 0 and 1 (the preset's 20,000 steps and 20 epochs took 4x as long)
    result = policykd.distill(
        "CartPole-v1",
        [zoo / "dqn/CartPole-v1_1", zoo / "ppo/CartPole-v1_1"],
        out=str(tmp_path / "cartpole"),
        steps=6000,
        rounds=3,
        epochs=10,
        quiet=True,
    )
    summary = json.loads((tmp_path / "cartpole" / "summary.json").read_text())
    assert (
        summary["teacher_algo"] == "dqn+ppo"
        and result.summary.student_return_mean >= 0.95 * summary["teacher_return_mean"]
    )


def test_confidence_weighting_mixes_each_state_by_each_members_exp_minus_entropy(zoo):
    """Confidence weighting, per state, by each member's exp(-entropy), against the formula written out."""
    from policykd.distributions import entropy_per_state
    from policykd.teachers import load_teachers

    ensemble = load_teachers([str(zoo / "dqn/CartPole-v1_1"), str(zoo / "ppo/CartPole-v1_1")], env_id="CartPole-v1")
    ensemble.confidence = True
    venv = ensemble.factory.make(4, 0)
    obs = venv.reset()
    venv.close()
    members = [m.label(obs)[0] for m in ensemble.members]
    sure = th.stack([th.exp(-entropy_per_state(d)) for d in members], dim=1)
    w = sure / sure.sum(dim=1, keepdim=True)
    expected = sum(w[:, i : i + 1] * th.softmax(d.logits, dim=-1) for i, d in enumerate(members))
    got = th.softmax(ensemble.label(obs)[0].logits, dim=-1)
    assert th.allclose(got, expected, atol=1e-6)
    assert not th.allclose(w[:, 0], th.full((4,), 0.5))  # the members are not equally sure


def test_return_weighting_favours_the_better_member(zoo, weak_teacher_path, tmp_path):
    """Return weighting gives the strong member most of the weight; with one teacher it is refused in one line."""
    from policykd.teachers import load_teachers
    from policykd.teachers.weighting import return_weights

    ensemble = load_teachers([str(zoo / "ppo/CartPole-v1_1"), str(weak_teacher_path)], env_id="CartPole-v1")
    weights = return_weights(ensemble, 3, 10_000)
    assert weights[0] > 3 * weights[1] > 0
    bad = cli(
        "distill",
        "--env",
        "CartPole-v1",
        "--teacher",
        str(zoo / "ppo/CartPole-v1_1"),
        "--teacher-weighting",
        "return",
        "--out",
        str(tmp_path / "x"),
    )
    assert bad.returncode == 2 and "weighs the members of an ensemble" in bad.stderr


def test_select_weighting_keeps_the_members_as_good_as_the_best(zoo, weak_teacher_path):
    """`select` (the default) drops a member that plays worse than the best and averages members that play alike."""
    from policykd.teachers import load_teachers
    from policykd.teachers.weighting import select_weights

    strong, weak = str(zoo / "ppo/CartPole-v1_1"), str(weak_teacher_path)
    assert select_weights(load_teachers([weak, strong], env_id="CartPole-v1"), 3, 10_000) == [0.0, 1.0]
    alike = load_teachers([strong, str(zoo / "a2c/CartPole-v1_1")], env_id="CartPole-v1", weights=(2.0, 1.0))
    assert select_weights(alike, 3, 10_000) == [2.0, 1.0]  # both balance 500 steps: kept, averaged


def test_select_weighting_keeps_the_better_gait_alone_in_env_units(zoo):
    """rl-zoo's SAC and PPO HalfCheetah agents run with different gaits (9,441 and 5,869): `select` keeps SAC
    alone, whose labels stay in env units (unsquashed), as the PPO-family student of a mixed ensemble learns them."""
    from policykd.teachers import load_teachers
    from policykd.teachers.weighting import select_weights

    ensemble = load_teachers(
        [str(zoo / "ppo/HalfCheetah-v3_1"), str(zoo / "sac/HalfCheetah-v3_1")], env_id="HalfCheetah-v5"
    )
    assert select_weights(ensemble, 2, 10_000) == [0.0, 1.0]
    venv = ensemble.factory.make(2, 0)
    dist, _ = ensemble.label(venv.reset())
    venv.close()
    assert not dist.squashed  # in env units, as a PPO-family student learns it


@pytest.fixture
def weak_teacher_path(tmp_path):
    from stable_baselines3 import PPO

    model = PPO("MlpPolicy", "CartPole-v1", seed=0, n_steps=64, device="cpu")
    model.learn(128)
    model.save(tmp_path / "weak.zip")
    return tmp_path / "weak.zip"
