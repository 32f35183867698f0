"""Off-policy RL on Atari frames: the frames-once replay buffer against SB3's own, on real ALE Pong frames."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from conftest import run_fresh_python
from stable_baselines3.common.buffers import ReplayBuffer

from policykd.envs import EnvFactory
from policykd.rl.model import RLConfig, learn_segment, load_rl_model, restore_rl, save_rl
from policykd.rl.replay import FramesOnceReplayBuffer, plain_sb3
from policykd.students.build import build_student

N_ENVS = 2


def _short_pong():
    """Real Pong, cut at 100 agent steps so that a small buffer sees many episode ends (timeouts)."""
    return EnvFactory("ALE/Pong-v5", env_kwargs={"max_episode_steps": 400}).make(N_ENVS, 0)


def _fill(buffers, steps: int) -> int:
    """What SB3's off-policy collection adds: the terminal observation as next observation where an episode ended."""
    venv, rng, ends = _short_pong(), np.random.default_rng(0), 0
    obs = venv.reset()
    for _ in range(steps):
        action = rng.integers(0, venv.action_space.n, size=N_ENVS)
        new_obs, reward, done, infos = venv.step(action)
        next_obs = new_obs.copy()
        for i in np.flatnonzero(done):
            next_obs[i] = infos[i]["terminal_observation"]
        for buffer in buffers:
            buffer.add(obs, next_obs, action, reward, done, infos)
        obs, ends = new_obs, ends + int(done.sum())
    venv.close()
    return ends


@pytest.fixture(scope="module")
def filled():
    venv = _short_pong()
    spaces = venv.observation_space, venv.action_space
    venv.close()
    sb3, ours = (cls(600, *spaces, device="cpu", n_envs=N_ENVS) for cls in (ReplayBuffer, FramesOnceReplayBuffer))
    ends = _fill([sb3, ours], 450)  # 300 rows per env: the ring wraps
    return sb3, ours, ends


def _same_as_sb3(sb3: ReplayBuffer, ours: FramesOnceReplayBuffer) -> int:
    """Every transition ours can still read equals SB3's, field by field; returns how many that is."""
    rows, envs = np.meshgrid(np.arange(ours.buffer_size), np.arange(N_ENVS), indexing="ij")
    alive = ours.store.alive(ours.oldest)
    rows, envs = rows[alive], envs[alive]
    got = ours.samples(rows, envs)
    want = (
        sb3.observations[rows, envs],
        sb3.actions[rows, envs],
        sb3.next_observations[rows, envs],
        (sb3.dones[rows, envs] * (1 - sb3.timeouts[rows, envs])).reshape(-1, 1),
        sb3.rewards[rows, envs, None],
    )
    for name, a, b in zip(got._fields, got, want):
        assert np.array_equal(a.numpy(), b), name
    return len(rows)


def test_frames_once_replay_gives_sb3s_transitions_at_an_eighth_of_the_memory(filled):
    """Fed the same real Pong steps as SB3's ReplayBuffer (ring wrapped, timeouts), ours returns the same transitions
    field by field, samples only whole ones, at under a sixth of the bytes."""
    sb3, ours, ends = filled
    assert ends >= 6 and sb3.full and ours.full and sb3.timeouts.any()
    readable = _same_as_sb3(sb3, ours)
    assert readable >= 0.99 * 600
    sb3_bytes = sum(
        a.nbytes for a in (sb3.observations, sb3.next_observations, sb3.actions, sb3.rewards, sb3.dones, sb3.timeouts)
    )
    assert ours.nbytes < sb3_bytes / 6  # 8 frames a transition against one (plus slack for a small ring)
    batch = ours.sample(256)
    assert batch.observations.shape == (256, 4, 84, 84) and batch.next_observations.dtype == batch.observations.dtype
    rows, envs = np.unravel_index(np.flatnonzero(ours.store.alive(ours.oldest)), ours.oldest.shape)
    readable = {(sb3.observations[r, e].tobytes(), sb3.next_observations[r, e].tobytes()) for r, e in zip(rows, envs)}
    drawn = zip(batch.observations.numpy(), batch.next_observations.numpy())
    assert all((o.tobytes(), n.tobytes()) in readable for o, n in drawn)  # only whole, readable transitions


def test_a_pickled_buffer_reads_back_the_same_and_holds_only_frames_written(filled):
    """Pickling (what SB3's save_replay_buffer does) keeps every transition and writes only the frames filled, not the
    ring."""
    sb3, ours, _ = filled
    again = pickle.loads(pickle.dumps(ours))
    assert _same_as_sb3(sb3, again) == _same_as_sb3(sb3, ours)
    fresh = FramesOnceReplayBuffer(100_000, ours.observation_space, ours.action_space, device="cpu", n_envs=N_ENVS)
    _fill([fresh], 50)
    ring = fresh.store.frames.nbytes  # 100k frames: 705 MB
    assert len(pickle.dumps(fresh)) < 0.02 * ring  # the ~200 frames written and the (small) per-step arrays


def test_a_dqn_student_on_pong_learns_from_it_resumes_it_and_saves_a_plain_sb3_zip(tmp_path):
    """A DQN student on Pong trains from the frames-once buffer, restores it from a checkpoint, and is saved as a zip
    that plain SB3 (without policykd) loads."""
    factory = EnvFactory("ALE/Pong-v5")
    venv = factory.make(N_ENVS, 0)
    student = build_student("dqn", venv, (8, 8, 8, 8), seed=0)
    config = RLConfig({"learning_starts": 32, "buffer_size": 1_000, "train_freq": 4}, N_ENVS, "test")
    model = load_rl_model("dqn", student, venv, config)
    assert isinstance(model.replay_buffer, FramesOnceReplayBuffer)
    learn_segment(model, venv, 0, 96, 192, lambda k: None)
    assert model._n_updates > 0
    save_rl(model, tmp_path, "rl-student")
    restored = restore_rl("dqn", tmp_path, "rl-student")
    rows, envs = np.arange(40), np.zeros(40, dtype=int)
    for a, b in zip(model.replay_buffer.samples(rows, envs), restored.replay_buffer.samples(rows, envs)):
        assert (a is None and b is None) or bool((a == b).all())
    with plain_sb3(model):
        model.save(tmp_path / "student.zip")
    assert model.replay_buffer_class is FramesOnceReplayBuffer
    venv.close()
    code = f"""
import sys
sys.modules["policykd"] = None
from stable_baselines3 import DQN
from stable_baselines3.common.buffers import ReplayBuffer
model = DQN.load({str(tmp_path / "student.zip")!r}, device="cpu")
assert model.replay_buffer_class in (None, ReplayBuffer), model.replay_buffer_class
print("ok")
"""
    done = run_fresh_python(code)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
