"""Teacher loading: every rl-zoo folder, algorithm detection, legacy gym pickles, bad specs."""

import importlib.util
import zipfile

import numpy as np
import pytest

from policykd.errors import PolicykdError
from policykd.rollouts import run_episodes, teacher_actor
from policykd.sb3_models import detect_algo, read_zip_data
from policykd.teachers import load_teacher, load_teachers
from policykd.teachers.zoo import resolve_zoo_spec

# folder -> (algo, env it distils on, distribution kind, acting params from the zoo README where it lists them)
ZOO_FOLDERS = {
    "ppo/CartPole-v1_1": ("ppo", "CartPole-v1", "categorical", None),
    "a2c/CartPole-v1_1": ("a2c", "CartPole-v1", "categorical", None),
    "dqn/CartPole-v1_1": ("dqn", "CartPole-v1", "categorical", None),
    "qrdqn/CartPole-v1_1": ("qrdqn", "CartPole-v1", "categorical", None),
    "dqn/Acrobot-v1_1": ("dqn", "Acrobot-v1", "categorical", None),
    "ppo/Pendulum-v1_1": ("ppo", "Pendulum-v1", "gaussian", None),
    "sac/Pendulum-v1_1": ("sac", "Pendulum-v1", "gaussian", None),
    "ppo/HalfCheetah-v3_1": ("ppo", "HalfCheetah-v5", "gaussian", 71_948),
    "sac/HalfCheetah-v3_1": ("sac", "HalfCheetah-v5", "gaussian", 73_484),
    "ppo/Hopper-v3_1": ("ppo", "Hopper-v5", "gaussian", None),
    "sac/Hopper-v3_1": ("sac", "Hopper-v5", "gaussian", None),
    "sac/Walker2d-v3_1": ("sac", "Walker2d-v5", "gaussian", None),
}


def test_no_legacy_gym_installed():
    """policykd runs on gymnasium alone: the legacy gym package is not installed to make something work."""
    assert importlib.util.find_spec("gym") is None, "policykd must not need the legacy gym package"


@pytest.mark.parametrize("folder", sorted(ZOO_FOLDERS))
def test_every_zoo_folder_loads_on_current_env(zoo, folder):
    """Every zoo agent loads on today's env version, with its algorithm, label kind, value head, parameter count and
    VecNormalize where the zoo has one."""
    algo, env_id, kind, params = ZOO_FOLDERS[folder]
    teacher = load_teacher(zoo / folder)
    assert (teacher.algo, teacher.factory.env_id) == (algo, env_id)
    obs = teacher.factory.make(2, 0).reset()
    dist, value = teacher.label(obs)
    assert dist.kind == kind
    assert (value is not None) == (algo in ("ppo", "a2c"))
    assert dist.squashed == (algo == "sac")
    if params:
        assert teacher.acting_params == params
    has_vecnormalize = (zoo / folder / env_id.replace("-v5", "-v3") / "vecnormalize.pkl").exists()
    assert (teacher.normalizer is not None) == has_vecnormalize


def test_halfcheetah_teacher_reproduces_its_return_with_vecnormalize(zoo):
    """The zoo's HalfCheetah PPO reaches its README return with its VecNormalize statistics, and falls apart without
    them."""
    teacher = load_teacher(zoo / "ppo/HalfCheetah-v3_1", env_id="HalfCheetah-v5")
    assert teacher.normalizer is not None and not teacher.normalizer.training
    returns = run_episodes(teacher_actor(teacher), teacher.factory, episodes=1, seed=0)
    assert returns.mean > 5000  # the zoo README measured 5,869 over 3 episodes
    teacher.normalizer = None  # without its statistics the same policy falls apart
    assert run_episodes(teacher_actor(teacher), teacher.factory, episodes=1, seed=0).mean < 3000


@pytest.mark.parametrize("spec", ["sac/Pendulum-v1_1", "sac/HalfCheetah-v3_1", "hopper-tqc-v5", "ppo/Pendulum-v1_1"])
def test_teacher_actions_are_bitwise_sb3_predict(zoo, spec):
    """A last-bit difference grows into a different MuJoCo return, so `policykd evaluate` and the
    summaries must act exactly as SB3's `predict` (what `evaluate_policy` uses)."""
    from policykd.distributions import env_action

    teacher = load_teacher(spec if "/" not in spec else zoo / spec)
    env = teacher.factory.make(1, 0)
    rng = np.random.default_rng(0)
    obs = np.concatenate([env.reset(), rng.normal(size=(255, *env.observation_space.shape))]).astype(np.float32)
    ours = teacher_actor(teacher)(obs)
    sb3 = teacher.model.predict(
        teacher.normalizer.normalize_obs(obs) if teacher.normalizer else obs, deterministic=True
    )[0]
    assert ours.dtype == sb3.dtype and np.array_equal(ours, sb3)
    assert np.array_equal(env_action(teacher.label(obs)[0], teacher.action_space), sb3)


def test_algorithm_detected_from_zip(zoo):
    """The algorithm is read from the zip's data for every zoo agent."""
    for folder, (algo, *_rest) in ZOO_FOLDERS.items():
        zip_path = next((zoo / folder).glob("*.zip"))
        assert detect_algo(read_zip_data(zip_path)) == algo


def test_space_mismatch_names_both_spaces(zoo):
    """A teacher on another env's spaces is refused with both spaces named."""
    with pytest.raises(PolicykdError, match=r"Box\(4,\).*Acrobot-v1's Box\(6,\)"):
        load_teacher(zoo / "ppo/CartPole-v1_1", env_id="Acrobot-v1")


def test_bad_specs_fail_with_one_clear_line(zoo, tmp_path):
    """A missing or corrupt teacher file is one line that says which."""
    with pytest.raises(PolicykdError, match="not found"):
        load_teacher(tmp_path / "missing.zip", env_id="CartPole-v1")
    corrupt = tmp_path / "corrupt.zip"
    corrupt.write_bytes(b"PK\x03\x04 this is not really a zip")
    with pytest.raises(PolicykdError, match="not a zip|corrupt"):
        load_teacher(corrupt, env_id="CartPole-v1")
    other = tmp_path / "other.zip"
    with zipfile.ZipFile(other, "w") as archive:
        archive.writestr("hello.txt", "not a model")
    with pytest.raises(PolicykdError, match="not a Stable-Baselines3 model"):
        load_teacher(other, env_id="CartPole-v1")
    empty_run = tmp_path / "ppo" / "CartPole-v1_1"
    (empty_run / "CartPole-v1").mkdir(parents=True)
    with pytest.raises(PolicykdError, match="has no CartPole-v1.zip"):
        load_teacher(empty_run)
    with pytest.raises(PolicykdError, match="unknown env id 'CartPole-v9'"):
        load_teacher(zoo / "ppo/CartPole-v1_1", env_id="CartPole-v9")


def test_zoo_spec_uses_folder_and_fails_offline_with_one_line(zoo, tmp_path):
    """zoo:<algo>/<env> resolves in the zoo folder; offline, a spec not there is one line."""
    assert resolve_zoo_spec("zoo:ppo/CartPole-v1", zoo) == zoo / "ppo" / "CartPole-v1_1"
    teacher = load_teacher("zoo:dqn/CartPole-v1", zoo_folder=zoo)
    assert teacher.algo == "dqn"
    with pytest.raises(PolicykdError, match="cannot download zoo:ppo/NoSuchEnv-v0") as err:
        load_teacher("zoo:ppo/NoSuchEnv-v0", zoo_folder=tmp_path)
    assert "\n" not in str(err.value)


def test_ensemble_averages_members(zoo):
    """A weighted ensemble's label is the weighted mixture of its members' probabilities."""
    ensemble = load_teachers([zoo / "ppo/CartPole-v1_1", zoo / "a2c/CartPole-v1_1"], weights=[3, 1])
    obs = ensemble.factory.make(4, 0).reset()
    dist, value = ensemble.label(obs)
    (p_dist, p_value), (a_dist, a_value) = (m.label(obs) for m in ensemble.members)
    probs = 0.75 * p_dist.logits.softmax(-1) + 0.25 * a_dist.logits.softmax(-1)
    np.testing.assert_allclose(dist.logits.softmax(-1).numpy(), probs.numpy(), rtol=1e-5)
    np.testing.assert_allclose(value.numpy(), (0.75 * p_value + 0.25 * a_value).numpy(), rtol=1e-5)
    with pytest.raises(PolicykdError, match="does not match CartPole-v1"):
        load_teachers([zoo / "ppo/CartPole-v1_1", zoo / "dqn/Acrobot-v1_1"], env_id="CartPole-v1")


def test_episodes_stop_one_by_one_with_the_returns_of_one_vecenv_stepping_all():
    """run_episodes steps each env only until its episode ends: the same episodes as one VecEnv of all of them."""
    from policykd.envs import EnvFactory

    factory, seed, n = EnvFactory("CartPole-v1"), 5, 6
    act = lambda obs: (obs[:, 3] > 0).astype(np.int64)  # noqa: E731  deterministic; episodes of 166 to 244 steps
    venv, returns = factory.make(n, seed), np.full(n, np.nan)
    obs = venv.reset()
    while np.isnan(returns).any():
        obs, _, _, infos = venv.step(act(obs))
        for i, info in enumerate(infos):
            if "episode" in info and np.isnan(returns[i]):
                returns[i] = info["episode"]["r"]
    one_by_one = run_episodes(act, factory, n, seed)
    assert np.array_equal(one_by_one.returns, returns)
    assert len(set(one_by_one.lengths)) > 1  # episodes of different lengths: some envs stopped early
