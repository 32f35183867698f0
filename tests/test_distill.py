"""The library API end to end on small envs: students per teacher family, drivers, reproducibility."""

import json

import numpy as np
import pytest
import torch as th
from conftest import run_fresh_python

import policykd
from policykd.errors import PolicykdError
from policykd.run.plan import beta_schedule

FAST = dict(quiet=True, eval_episodes=3, rounds=2)


def distill(*args, **settings):
    """The library call; its RunSummary."""
    return policykd.distill(*args, **settings).summary


def test_beta_schedules():
    """DAgger's beta per round, linear and exponential, and the fixed drivers; an unknown driver is refused."""
    assert [beta_schedule("dagger", r, 5) for r in range(5)] == [1.0, 0.75, 0.5, 0.25, 0.0]
    assert [beta_schedule("dagger", r, 3, schedule="exponential", decay=0.5) for r in range(3)] == [1.0, 0.5, 0.25]
    assert beta_schedule("teacher", 3, 5) == 1.0 and beta_schedule("student", 0, 5) == 0.0
    with pytest.raises(PolicykdError, match="unknown driver"):
        beta_schedule("nobody", 0, 5)


def _scalars(folder, tag):
    """The values TensorBoard reads back for `tag` under `folder`, in step order."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    acc.Reload()
    return [e.value for e in acc.Scalars(tag)]


@pytest.mark.parametrize("driver, betas", [("teacher", [1.0, 1.0]), ("student", [0.0, 0.0]), ("dagger", [1.0, 0.0])])
def test_every_driver_runs_and_logs_its_beta(cartpole_ppo_teacher, tmp_path, driver, betas):
    """Each driver's beta per round is logged, and is who really acted: the fraction of teacher actions taken while
    collecting equals beta in each of the 2 rounds (dagger: the teacher in the first, the student in the last)."""
    summary = distill("CartPole-v1", [cartpole_ppo_teacher], out=tmp_path / driver, steps=1600, driver=driver, **FAST)
    assert summary.driver == driver and summary.env_steps == 1600
    assert 0.0 <= summary.action_agreement <= 1.0
    assert _scalars(tmp_path / driver / "tb", "collect/beta") == betas
    assert _scalars(tmp_path / driver / "tb", "collect/teacher_action_fraction") == betas


def test_same_seed_gives_same_student(cartpole_ppo_teacher, tmp_path):
    """The same seed on CPU gives bit-identical weights; another seed gives other weights."""

    def weights(out, seed):
        distill("CartPole-v1", [cartpole_ppo_teacher], out=tmp_path / out, steps=1600, seed=seed, **FAST)
        from stable_baselines3 import PPO

        return PPO.load(tmp_path / out / "student.zip", device="cpu").policy.state_dict()

    a, b, c = weights("a", 7), weights("b", 7), weights("c", 8)
    assert all(th.equal(a[k], b[k]) for k in a)
    assert not all(th.equal(a[k], c[k]) for k in a)


def test_dqn_teacher_gives_dqn_student(zoo, tmp_path):
    """A DQN teacher gives a DQN student within a quarter of its size; a QR-DQN teacher's quantiles distil by MSE on
    Q-values."""
    summary = distill("CartPole-v1", [zoo / "dqn/CartPole-v1_1"], out=tmp_path / "dqn", steps=4000, **FAST)
    assert (summary.teacher_algo, summary.student_algo) == ("dqn", "dqn")
    assert summary.student_params <= 0.25 * summary.teacher_params
    mse = distill("CartPole-v1", [zoo / "qrdqn/CartPole-v1_1"], out=tmp_path / "qr", steps=1600, loss="mse_q", **FAST)
    assert (mse.teacher_algo, mse.student_algo, mse.loss) == ("qrdqn", "dqn", "mse_q")


def test_sac_teacher_gives_sac_student_that_continues_rl(zoo, tmp_path):
    """A SAC teacher gives a SAC student that plain SB3, in a fresh interpreter without policykd, trains further
    (gradient updates, not only a load); the student need not be good, so 2 epochs a round."""
    out = tmp_path / "sac"
    summary = distill("Pendulum-v1", [zoo / "sac/Pendulum-v1_1"], out=out, steps=1600, epochs=2, **FAST)
    assert (summary.teacher_algo, summary.student_algo) == ("sac", "sac")
    code = f"""
import sys
sys.modules["policykd"] = None
import gymnasium as gym
from stable_baselines3 import SAC
model = SAC.load({str(out / "student.zip")!r}, env=gym.make("Pendulum-v1"), device="cpu")
model.learn(model.learning_starts + 50)
print("updates", model._n_updates)
"""
    result = run_fresh_python(code)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout.split()[-1]) > 0, result.stdout


def test_deterministic_teacher_uses_mse_action(pendulum_td3_teacher, tmp_path):
    """A deterministic actor (TD3) has no density: the default loss becomes MSE on the action, and a density loss is
    refused."""
    summary = distill("Pendulum-v1", [pendulum_td3_teacher], out=tmp_path / "td3", steps=800, **FAST)
    assert (summary.teacher_algo, summary.student_algo) == ("td3", "td3")
    assert summary.loss == "mse_action"  # the default KL has no density to compare: MSE on the action
    with pytest.raises(PolicykdError, match="loss 'gaussian_kl' needs"):
        distill("Pendulum-v1", [pendulum_td3_teacher], out=tmp_path / "bad", steps=800, loss="gaussian_kl", **FAST)


def test_ensemble_with_weights(zoo, tmp_path):
    """Two weighted teachers of different families distil into one student; the summary names both."""
    summary = distill(
        "CartPole-v1",
        [zoo / "ppo/CartPole-v1_1", zoo / "a2c/CartPole-v1_1"],
        teacher_weights=(2.0, 1.0),
        out=tmp_path / "ens",
        steps=1600,
        **FAST,
    )
    assert len(summary.teachers) == 2 and summary.teacher_algo == "a2c+ppo"


def test_vecnormalize_student_reproduces_its_return_in_plain_sb3(zoo, tmp_path):
    """A teacher with VecNormalize: the student's saved statistics and weights, loaded by SB3's own tools in a fresh
    interpreter, replay the summary's evaluation returns exactly (any student will do: 2 epochs a round)."""
    out = tmp_path / "hc"
    summary = distill(
        "HalfCheetah-v5",
        [zoo / "ppo/HalfCheetah-v3_1"],
        out=out,
        steps=2000,
        quiet=True,
        eval_episodes=2,
        rounds=2,
        n_envs=4,
        epochs=2,
    )
    assert (out / "vecnormalize.pkl").is_file()
    code = f"""
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import VecNormalize
# policykd plays its evaluation episodes side by side, one env per episode (env i seeded eval_seed + i):
# the same with SB3's own tools gives the same batches, hence the same floats and the same episodes
# (a 4,000-step student is erratic enough that batch-1 float rounding alone changes its return)
venv = VecNormalize.load({str(out / "vecnormalize.pkl")!r}, make_vec_env("HalfCheetah-v5", n_envs=2, seed={summary.eval_seed}))
venv.training = False
venv.norm_reward = False
model = PPO.load({str(out / "student.zip")!r}, device="cpu")
rewards, _ = evaluate_policy(model, venv, n_eval_episodes=2, return_episode_rewards=True)
print(*sorted(rewards))
"""
    result = run_fresh_python(code)
    assert result.returncode == 0, result.stderr
    reproduced = [float(x) for x in result.stdout.strip().splitlines()[-1].split()]
    assert reproduced == pytest.approx(sorted(summary.student_returns), abs=1e-3)
    # `policykd evaluate --model RUN` plays the run's student behind its VecNormalize (it once read the run folder as
    # a folder holding one zip, without it), as does the zip itself
    for model in (out, out / "student.zip"):
        played = policykd.evaluate("HalfCheetah-v5", model, episodes=2)["model"]
        assert played["returns"] == pytest.approx(summary.student_returns, abs=1e-3)


def test_summary_json_matches_return_value(cartpole_ppo_teacher, tmp_path):
    """summary.json on disk holds what the library call returned, its mean that of its returns."""
    summary = distill("CartPole-v1", [cartpole_ppo_teacher], out=tmp_path / "s", steps=800, **FAST)
    on_disk = json.loads((tmp_path / "s" / "summary.json").read_text())
    assert on_disk["student_return_mean"] == summary.student_return_mean
    assert np.isclose(np.mean(on_disk["student_returns"]), on_disk["student_return_mean"])


def test_linear_lr_schedule_falls_to_zero_by_the_last_round(cartpole_ppo_teacher, tmp_path):
    """--lr-schedule linear: the last rate of each round, read back from TensorBoard, falls to 0 by the last round;
    an unknown schedule is refused with the choices."""
    out = tmp_path / "linear"
    distill(
        "CartPole-v1",
        [cartpole_ppo_teacher],
        out=out,
        steps=1600,
        learning_rate=1e-3,
        lr_schedule="linear",
        **{**FAST, "rounds": 4},
    )
    last_lr_per_round = _scalars(out / "tb", "train/learning_rate")
    assert len(last_lr_per_round) == 4
    # Round r ends just above 1e-3 * (1 - (r + 1) / 4): 7.5e-4, 5e-4, 2.5e-4, ~0.
    assert last_lr_per_round == pytest.approx([7.5e-4, 5e-4, 2.5e-4, 0.0], abs=3e-5)
    with pytest.raises(PolicykdError, match="unknown lr schedule 'cosine': choose from constant, linear"):
        distill("CartPole-v1", [cartpole_ppo_teacher], out=tmp_path / "bad", lr_schedule="cosine", **FAST)


def test_sampled_actions_follow_the_teachers_distribution():
    """--sample-actions draws from the distribution (categorical frequencies, a squashed Gaussian's median and spread);
    Q-values stay greedy."""
    from gymnasium import spaces

    from policykd.distributions import CATEGORICAL, GAUSSIAN, ActionDist, env_action, sample_action

    th.manual_seed(0)
    probs = ActionDist(CATEGORICAL, logits=th.log(th.tensor([[0.25, 0.75]])).repeat(4000, 1))
    assert sample_action(probs, spaces.Discrete(2)).mean() == pytest.approx(0.75, abs=0.03)
    q_values = probs._replace(q_values=True)  # no distribution to draw from: greedy
    assert (sample_action(q_values, spaces.Discrete(2)) == 1).all()
    box = spaces.Box(-2.0, 2.0, (1,))
    squashed = ActionDist(
        GAUSSIAN, mean=th.full((4000, 1), 0.5), log_std=th.full((4000, 1), np.log(0.3)), squashed=True
    )
    drawn = sample_action(squashed, box)
    assert box.contains(drawn[0]) and np.abs(drawn).max() <= 2.0
    # tanh of N(0.5, 0.3^2), scaled by 2: its median is the mode, 2 tanh(0.5)
    assert np.median(drawn) == pytest.approx(env_action(squashed, box)[0, 0], abs=0.03)
    assert np.arctanh(drawn / 2).std() == pytest.approx(0.3, abs=0.02)


def test_sample_actions_changes_the_data_and_stays_reproducible(zoo, tmp_path):
    """Sampled actions change the collected episodes against greedy ones, and the same seed samples the same ones."""

    def run(name, sample):
        distill(
            "Pendulum-v1",
            [zoo / "sac/Pendulum-v1_1"],
            out=tmp_path / name,
            steps=1200,
            n_envs=2,
            driver="teacher",
            sample_actions=sample,
            **FAST,
        )

    def collected_return(name):
        return _scalars(tmp_path / name / "tb", "collect/episode_return")

    for name, sample in (("greedy", False), ("sampled", True), ("sampled_again", True)):
        run(name, sample)
    assert collected_return("sampled") == collected_return("sampled_again")
    assert collected_return("sampled") != collected_return("greedy")
