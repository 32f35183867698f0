"""A recurrent student (`--student-algo recurrent-ppo`): sb3-contrib's RecurrentPPO, distilled on sequences.

CartPole with its velocities hidden (`--student-obs mask=1,3`) needs memory: the LSTM student distils, loads with
`RecurrentPPO.load` where policykd is not importable and replays its evaluation there; the buffer's sequences hold the
student's view beside the teacher's labels of the full state; training's sequence forward and the folded input
standardisation are exactly what sb3-contrib's `predict` steps; what it cannot be combined with is refused.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch as th
from conftest import cli, run_fresh_python

import policykd
from policykd.data.buffer import DistillationBuffer
from policykd.distributions import sequence_outputs
from policykd.errors import PolicykdError
from policykd.rollouts import student_actor
from policykd.run.build import build_run
from policykd.settings import DistillSettings
from policykd.students.folding import ObsStats, fold

KEEP = [0, 2]  # mask=1,3: cart position and pole angle
RECURRENT = dict(student_algo="recurrent-ppo", student_obs=("mask=1,3",))


def test_recurrent_student_distils_and_replays_without_policykd(tmp_path):
    """A 4,000-step run reaches returns no memoryless student gets from these two entries (~50); in a fresh
    interpreter without policykd, RecurrentPPO.load and sb3-contrib's own stepping (state and episode_start per
    episode, episodes side by side as policykd plays them) repeat the summary's returns exactly, as `evaluate` does."""
    out = tmp_path / "lstm"
    result = policykd.distill("CartPole-v1", out=out, steps=4000, eval_episodes=3, quiet=True, **RECURRENT)
    summary = result.summary
    assert (summary.student_algo, list(summary.student_obs)) == ("recurrent-ppo", ["mask=1,3"])
    assert len(summary.student_arch) == 1 and summary.student_params < summary.teacher_params
    assert summary.student_return_mean > 150, summary.student_returns
    code = f"""
import sys
sys.modules["policykd"] = None
import numpy as np
from sb3_contrib import RecurrentPPO
from stable_baselines3.common.env_util import make_vec_env
model = RecurrentPPO.load({str(out / "student.zip")!r}, device="cpu")
episodes, zero = 3, np.zeros(model.policy.lstm_hidden_state_shape, np.float32)
venvs = [make_vec_env("CartPole-v1", n_envs=1, seed={summary.eval_seed} + i) for i in range(episodes)]
obs = [venv.reset()[:, {KEEP}] for venv in venvs]
state = {{i: (zero, zero) for i in range(episodes)}}
returns, playing, first = [None] * episodes, list(range(episodes)), True
while playing:
    held = (np.concatenate([state[i][0] for i in playing], 1), np.concatenate([state[i][1] for i in playing], 1))
    starts = np.full(len(playing), first)
    actions, (h, c) = model.predict(np.concatenate([obs[i] for i in playing]), held, starts, deterministic=True)
    first = False
    for j, i in enumerate(playing):
        state[i] = (h[:, j : j + 1], c[:, j : j + 1])
        next_obs, _, _, infos = venvs[i].step(actions[j : j + 1])
        obs[i] = next_obs[:, {KEEP}]
        if "episode" in infos[0]:
            returns[i] = infos[0]["episode"]["r"]
    playing = [i for i in playing if returns[i] is None]
print(*returns)
"""
    fresh = run_fresh_python(code)
    assert fresh.returncode == 0, fresh.stderr
    assert [float(x) for x in fresh.stdout.split()] == summary.student_returns
    # `policykd evaluate` of the run folder steps it the same way (its view from the summary)
    assert policykd.evaluate("CartPole-v1", out, episodes=3)["model"]["returns"] == summary.student_returns


class Recording:
    """A teacher that remembers every batch of observations it labels (the collector's full observations)."""

    def __init__(self, teacher):
        self.teacher, self.seen = teacher, []

    def __getattr__(self, name):
        return getattr(self.teacher, name)

    def label(self, obs):
        self.seen.append(np.array(obs))
        return self.teacher.label(obs)


def test_buffer_sequences_hold_the_view_and_labels_of_the_full_state(tmp_path):
    """Collected by the LSTM student under DAgger (beta 0.5) into a small ring that overwrites itself: every row of
    every sequence is its env's next step, holds the view of the full state the teacher labelled at that step, and the
    teacher's label of it; episode starts are where the env's episodes start."""
    run = build_run(DistillSettings("CartPole-v1", out=str(tmp_path / "b"), n_envs=4, buffer_size=1002, **RECURRENT))
    try:
        collector = run.collector
        assert collector is not None
        teacher = collector.teacher = Recording(run.live_teacher)
        collector.restart(run.fresh_envs(7))
        dones, step = [], collector.venv.step

        def stepping(actions):
            stepped = step(actions)
            dones.append(np.array(stepped[2], dtype=bool))
            return stepped

        collector.venv.step = stepping
        collector.run(1600, 0.5, student_actor(run.student, run.prep))  # 400 vector steps: the 1002-row ring wrapped
        buffer, streams = run.buffer, run.buffer.streams
        assert streams is not None and buffer.full
        rows = buffer.sequence_rows(buffer.sequence_firsts(16), 16)
        assert 0 < len(rows) < len(buffer)
        ticks, envs = streams.tick[rows], streams.env[rows]
        assert (np.diff(ticks, axis=1) == 1).all() and (envs == envs[:, :1]).all()
        sample = rows[np.random.default_rng(0).choice(len(rows), 5, replace=False)].reshape(-1)
        full = np.stack([teacher.seen[t][e] for t, e in zip(streams.tick[sample], streams.env[sample])])
        batch = buffer.get(sample)
        np.testing.assert_array_equal(batch.obs, full[:, KEEP])
        np.testing.assert_allclose(batch.teacher.logits, teacher.label(full)[0].logits, atol=1e-6)
        clone = DistillationBuffer(buffer.capacity, sequences=True)  # a checkpoint keeps the streams
        clone.restore(buffer.state())
        np.testing.assert_array_equal(clone.sequence_rows(clone.sequence_firsts(16), 16), rows)
        began = [t == 0 or dones[t - 1][e] for t, e in zip(streams.tick[sample], streams.env[sample])]
        np.testing.assert_array_equal(streams.start[sample], began)
        assert any(began) or streams.start[rows].any()  # episodes end and start inside the collected streams
    finally:
        run.close()


def test_an_interrupted_run_resumes_to_the_same_student(tmp_path, monkeypatch):
    """Stopped before its second round's training, the run resumes from its checkpoint (the buffer's streams with it:
    training draws its sequences from them) to the weights an uninterrupted run ends with."""
    from sb3_contrib import RecurrentPPO

    from policykd.run import phases
    from policykd.run.plan import Train

    settings = dict(steps=1200, rounds=2, checkpoint_every=400, eval_episodes=1, quiet=True, **RECURRENT)
    policykd.distill("CartPole-v1", out=tmp_path / "whole", **settings)
    train = phases.PHASES[Train]

    def stop_in_round_1(run, state, phase, view):
        if phase.round == 1:
            raise KeyboardInterrupt
        train(run, state, phase, view)

    monkeypatch.setitem(phases.PHASES, Train, stop_in_round_1)
    with pytest.raises(KeyboardInterrupt):
        policykd.distill("CartPole-v1", out=tmp_path / "cut", **settings)
    monkeypatch.setitem(phases.PHASES, Train, train)
    policykd.distill("CartPole-v1", out=tmp_path / "cut", **settings)
    whole, cut = (RecurrentPPO.load(tmp_path / f / "student.zip", device="cpu").policy for f in ("whole", "cut"))
    for (name, a), b in zip(whole.state_dict().items(), cut.state_dict().values()):
        assert th.equal(a, b), name


def _student(tmp_path, **settings):
    run = build_run(DistillSettings("CartPole-v1", out=str(tmp_path / "s"), **{**RECURRENT, **settings}))
    run.close()
    return run.student


def _stepped_logits(policy, obs, starts, hidden):
    """sb3-contrib stepping one observation at a time: each step's logits (a fresh state per sequence)."""
    logits, state = [], None
    for t in range(obs.shape[1]):
        zero = th.zeros(1, obs.shape[0], hidden)
        state = (zero, zero) if state is None else state
        dist, state = policy.get_distribution(th.as_tensor(obs[:, t]), state, th.as_tensor(starts[:, t]))
        logits.append(dist.distribution.logits)
    return th.stack(logits, dim=1).reshape(-1, logits[0].shape[-1])


def test_sequence_forward_and_lstm_folding_are_sb3_contribs_stepping(tmp_path):
    """Training's forward over sequence-major rows (with episode starts inside) gives each step's logits as stepping
    the policy does; the student arch is H (an LSTM of H units) or H,net; folding the input standardisation into the
    LSTM's input weights keeps every step's output on raw observations."""
    student = _student(tmp_path, student_arch=(12, 8))
    policy = student.policy
    assert (policy.lstm_actor.hidden_size, policy.net_arch) == (12, {"pi": [8], "vf": [8]})
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(3, 10, 2)).astype(np.float32)
    starts = np.zeros((3, 10), np.float32)
    starts[0, 4] = starts[2, 7] = 1.0
    with th.no_grad():
        dist, value = sequence_outputs(policy, th.as_tensor(obs.reshape(30, 2)), th.as_tensor(starts.reshape(-1)), 3)
        th.testing.assert_close(dist.logits, _stepped_logits(policy, obs, starts, 12), atol=1e-6, rtol=0)
        assert value.shape == (30,)
        stats = ObsStats(np.array([0.5, -0.1], np.float32), np.array([2.0, 0.3], np.float32))
        standardised = _stepped_logits(policy, (obs - stats.mean) / stats.std, starts, 12)
        fold(student, stats)
        th.testing.assert_close(_stepped_logits(policy, obs, starts, 12), standardised, atol=1e-5, rtol=0)
    # a 10 % budget of the 4,610-parameter teacher is below the smallest LSTM: the width floor, 16
    assert _student(tmp_path).policy.lstm_actor.hidden_size == 16


@pytest.mark.parametrize(
    "args, message",
    [
        (["--rl-steps", "1000"], "with --rl-steps"),
        (["--hint-weight", "1"], "with --hint-weight"),
        (["--relation-weight", "1"], "with --relation-weight"),
        (["--augment", "obs-noise=0.05"], "with --augment"),
    ],
)
def test_refused_before_any_work(tmp_path, args, message):
    """One line, exit status 2, nothing written."""
    out = tmp_path / "refused"
    result = cli("distill", "--env", "CartPole-v1", "--student-algo", "recurrent-ppo", *args, "--out", str(out))
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not out.exists()


def test_image_observations_are_refused():
    """An LSTM student reads flat observations: an image env is refused with the family named."""
    import gymnasium as gym
    from stable_baselines3.common.vec_env import DummyVecEnv

    from policykd.students.build import build_student

    class Frames(gym.Env):
        observation_space = gym.spaces.Box(0, 255, (36, 36, 3), np.uint8)
        action_space = gym.spaces.Discrete(2)

    with pytest.raises(PolicykdError, match="recurrent-ppo student reads flat observations, not images"):
        build_student("recurrent-ppo", DummyVecEnv([Frames]), (16,), seed=0)


def test_a_student_of_another_family_than_a_squashed_teacher_is_matched_on_the_action(sac_pendulum_teacher, tmp_path):
    """A SAC teacher (tanh-squashed) and a PPO-family student: their greedy actions are compared (`mse_action`),
    which needs bounds of [-1, 1]; Pendulum's are [-2, 2]: one line, exit 2."""
    result = cli(
        "distill", "--env", "Pendulum-v1", "--teacher", str(sac_pendulum_teacher), "--student-algo", "recurrent-ppo",
        "--out", str(tmp_path / "out"),
    )  # fmt: skip
    assert result.returncode == 2 and "needs action bounds of [-1, 1]" in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "out").exists()
