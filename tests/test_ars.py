"""ARS teachers (sb3-contrib): safe loading, labels equal to `ARS.predict`, and the default TD3 student.

ARS acts deterministically: its linear policy clips its output to the action bounds, its MLP
policy ends in tanh. rl-zoo's ARS agents (linear, with VecNormalize) were saved by sb3-contrib
< 1.7, whose linear head was a bare `nn.Linear`; a fixture rewrites a fresh zip to that layout.
"""

from __future__ import annotations

import io
import json
import shutil
import zipfile
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from conftest import cli
from sb3_contrib import ARS
from stable_baselines3 import TD3
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

from policykd.distributions import DETERMINISTIC, env_action, policy_dist
from policykd.losses import mse_action
from policykd.students.build import default_student_algo
from policykd.teachers import load_teacher

ENV = "Pendulum-v1"
# A large step makes the linear policy's output leave [-2, 2] on part of the states, so both
# the clipped and the unclipped branch of ARS's action are exercised.
_ARS_KWARGS = {"n_delta": 2, "n_top": 1, "learning_rate": 2.0, "delta_std": 1.0, "seed": 0, "device": "cpu"}


def _train(folder: Path, policy: str, *, normalize: bool = False, **policy_kwargs) -> Path:
    """A tiny ARS Pendulum agent (seconds), saved as rl-zoo does: the zip and vecnormalize.pkl side by side."""
    folder.mkdir(parents=True, exist_ok=True)
    env = DummyVecEnv([lambda: gym.make(ENV)])
    if normalize:
        env = VecNormalize(env, norm_obs=True, norm_reward=False)
    model = ARS(policy, env, policy_kwargs=policy_kwargs or None, **_ARS_KWARGS)
    model.learn(2000)
    model.save(folder / "ars.zip")
    if normalize:
        env.save(folder / "vecnormalize.pkl")
    return folder / "ars.zip"


def _legacy(zip_path: Path, target: Path) -> Path:
    """The zip as sb3-contrib < 1.7 wrote a LinearPolicy: `action_net.weight`, not `action_net.0.weight`."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(zip_path) as src, zipfile.ZipFile(target, "w") as dst:
        for name in src.namelist():
            payload = src.read(name)
            if name == "policy.pth":
                state = th.load(io.BytesIO(payload), weights_only=True)
                buffer = io.BytesIO()
                th.save({k.replace("action_net.0.", "action_net."): v for k, v in state.items()}, buffer)
                payload = buffer.getvalue()
            dst.writestr(name, payload)
    return target


@pytest.fixture(scope="session")
def ars_teachers(tmp_path_factory) -> dict[str, Path]:
    """Four ARS Pendulum zips: linear (clipped), MLP (tanh), linear with VecNormalize, and that one
    rewritten to the sb3-contrib < 1.7 layout, as the rl-zoo agent of the issue is."""
    root = tmp_path_factory.mktemp("ars")
    normalized = _train(root / "vecnormalize", "LinearPolicy", normalize=True)
    legacy = _legacy(normalized, root / "legacy" / "ars.zip")  # as rl-zoo's HalfCheetah agent
    shutil.copy(normalized.with_name("vecnormalize.pkl"), legacy.with_name("vecnormalize.pkl"))
    return {
        "linear": _train(root / "linear", "LinearPolicy"),
        "mlp": _train(root / "mlp", "MlpPolicy", net_arch=[8]),  # tanh-squashed
        "vecnormalize": normalized,
        "legacy": legacy,
    }


def _rollout_obs(model: ARS, normalizer: VecNormalize | None, steps: int = 200) -> np.ndarray:
    """Raw observations of one episode played by the agent itself, plus a few random states."""
    env = gym.make(ENV)
    obs, _ = env.reset(seed=3)
    batch = [env.observation_space.sample() for _ in range(8)]
    for _ in range(steps):
        batch.append(obs)
        seen = normalizer.normalize_obs(obs[None]) if normalizer is not None else obs[None]
        obs, *_ = env.step(model.predict(seen, deterministic=True)[0][0])
    return np.asarray(batch, dtype=np.float32)


def _reference(zip_path: Path) -> tuple[ARS, VecNormalize | None]:
    """sb3-contrib's own load, and the frozen VecNormalize beside the zip (if any)."""
    model = ARS.load(zip_path, device="cpu")
    pkl = zip_path.with_name("vecnormalize.pkl")
    if not pkl.is_file():
        return model, None
    normalizer = VecNormalize.load(str(pkl), DummyVecEnv([lambda: gym.make(ENV)]))
    normalizer.training = False
    return model, normalizer


@pytest.mark.parametrize("kind", ["linear", "mlp", "legacy", "vecnormalize"])
@pytest.mark.parametrize("trust", [False, True])
def test_labels_act_as_ars_predict(ars_teachers, kind, trust):
    """Every ARS layout (linear, MLP, legacy, VecNormalize), safe-loaded or trusted, labels with exactly what
    `ARS.predict` does, both sides of the linear policy's clip included."""
    zip_path = ars_teachers["vecnormalize" if kind == "legacy" else kind]
    model, normalizer = _reference(zip_path)
    obs = _rollout_obs(model, normalizer)
    seen = normalizer.normalize_obs(obs) if normalizer is not None else obs
    expected = model.predict(seen, deterministic=True)[0]

    teacher = load_teacher(ars_teachers[kind], env_id=ENV, trust=trust)
    assert teacher.algo == "ars" and (teacher.normalizer is not None) == (normalizer is not None)
    dist, value = teacher.label(obs)
    assert dist.kind == DETERMINISTIC and dist.squashed and value is None
    assert float(dist.mean.abs().max()) <= 1.0  # in the [-1, 1] space of a squashed student
    # Unscaling the [-1, 1] label rounds within a float32 ulp of ARS's clipped action.
    np.testing.assert_allclose(env_action(dist, teacher.action_space), expected, rtol=0, atol=1e-6)
    if kind == "linear":  # both sides of the clip are covered
        raw = np.abs(model.policy.action_net(th.as_tensor(seen)).detach().numpy())
        assert 0.05 < (raw > 2.0).mean() < 0.95


def test_default_td3_student_fits_the_ars_teacher(ars_teachers):
    """A deterministic ARS teacher gets a TD3 student by default, and MSE on the action compares them (squashed against
    clipped)."""
    teacher = load_teacher(ars_teachers["linear"], env_id=ENV)
    assert default_student_algo("ars", teacher.action_space) == "td3"
    student = TD3("MlpPolicy", ENV, policy_kwargs={"net_arch": [16]}, seed=0, device="cpu")
    obs = _rollout_obs(*_reference(ars_teachers["linear"]), steps=50)
    student_dist = policy_dist(student.policy, student.policy.obs_to_tensor(obs)[0])
    loss = mse_action(student_dist, teacher.label(obs)[0])  # refused before: squashed vs not
    assert th.isfinite(loss) and loss.item() > 0.0


def test_distill_from_an_ars_teacher_through_the_cli(ars_teachers, tmp_path):
    """`distill --teacher` on a legacy ARS zip (the CLI in-process): a TD3 student, saved as plain SB3."""
    out = tmp_path / "ars"
    result = cli(
        "distill",
        "--env",
        ENV,
        "--teacher",
        str(ars_teachers["legacy"]),
        "--steps",
        "800",
        "--rounds",
        "2",
        "--epochs",
        "1",
        "--eval-episodes",
        "2",
        "--out",
        str(out),
        "--quiet",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert (out / "student.zip").is_file()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["teacher_algo"] == "ars" and summary["student_algo"] == "td3"
    TD3.load(out / "student.zip", device="cpu")  # a plain SB3 model
