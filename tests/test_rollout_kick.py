"""The one-pass kick of PPO/A2C students (`policykd.rl.rollout_kick`): the same gradient as RL loss + lambda x KL summed
and backed once, the teacher asked once per rollout, and frames handed to the teacher as the env gave them."""

import numpy as np
import pytest
import torch as th


def _student_and_kick(env_id, teacher, weight, *, n_steps=16, n_epochs=1):
    from stable_baselines3 import PPO

    from policykd.envs import EnvFactory
    from policykd.rl.kick import Kick

    venv = EnvFactory(env_id).make(2, 0)
    model = PPO(
        "MlpPolicy" if len(venv.observation_space.shape) == 1 else "CnnPolicy",
        venv,
        n_steps=n_steps,
        batch_size=8,
        n_epochs=n_epochs,
        policy_kwargs={"net_arch": [8, 8]},
        seed=0,
        device="cpu",
    )
    kick = Kick(teacher, "kl", 2.0, None, schedule="constant", weight=weight, total=1, teacher_return=0.0)
    kick.attach(model)
    return model, kick


def _one_rollout(model):
    _, callback = model._setup_learn(model.n_steps * model.n_envs, callback=None)
    callback.on_training_start(locals(), globals())
    model.collect_rollouts(model.env, callback, model.rollout_buffer, n_rollout_steps=model.n_steps)
    return model.rollout_buffer


def _rl_loss(model, batch):
    """A stand-in for PPO's loss that reaches every head: log-probabilities weighted by advantages, and values."""
    actions = batch.actions.long().flatten() if model.action_space.shape == () else batch.actions
    values, log_prob, entropy = model.policy.evaluate_actions(batch.observations, actions)
    return -(log_prob * batch.advantages).mean() + values.pow(2).mean() - 0.01 * entropy.mean()


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_one_pass_gives_the_gradient_of_the_summed_loss(env_id, cartpole_ppo_teacher, tmp_path):
    """The hook's gradient equals backward(RL loss + lambda x KL at the run's temperature) computed the plain way."""
    from stable_baselines3 import PPO

    from policykd.distributions import policy_dist
    from policykd.losses import loss_fn
    from policykd.teachers import load_teacher

    if env_id == "Pendulum-v1":
        teacher_path = tmp_path / "pendulum_ppo.zip"
        PPO("MlpPolicy", env_id, n_steps=64, batch_size=32, seed=2, device="cpu").learn(128).save(teacher_path)
    else:
        teacher_path = cartpole_ppo_teacher
    teacher = load_teacher(str(teacher_path), env_id=env_id)
    model, kick = _student_and_kick(env_id, teacher, 0.7)
    buffer = _one_rollout(model)
    batch = next(buffer.get(8))
    model.policy.optimizer.zero_grad()
    _rl_loss(model, batch).backward()
    hooked = [p.grad.clone() for p in model.policy.parameters()]
    assert kick.teacher_calls == 1

    kick.detach()
    model.policy.optimizer.zero_grad()
    obs = batch.observations
    labels, _ = teacher.label(obs.numpy())
    kl = loss_fn("kl")(policy_dist(model.policy, obs), labels, 2.0)
    (_rl_loss(model, batch) + 0.7 * kl).backward()
    for mine, plain in zip(hooked, (p.grad for p in model.policy.parameters())):
        assert th.allclose(mine, plain, atol=1e-6), (mine - plain).abs().max()
    assert any(g.abs().sum() > 0 for g in hooked)


def test_the_teacher_labels_each_rollout_once_whatever_the_epochs(cartpole_ppo_teacher):
    """PPO's 5 epochs over 3 rollouts: 3 teacher calls (the general kick made 3 x 5 x 4 minibatches = 60), and the
    kick's loss logged for every minibatch; with lambda 0 the teacher is never asked."""
    from policykd.teachers import load_teacher

    teacher = load_teacher(str(cartpole_ppo_teacher), env_id="CartPole-v1")
    model, kick = _student_and_kick("CartPole-v1", teacher, 1.0, n_steps=16, n_epochs=5)
    model.learn(3 * 16 * 2)
    assert kick.teacher_calls == 3
    assert len(kick.losses) == 3 * 5 * 4 and np.isfinite(kick.take_losses())
    quiet, idle = _student_and_kick("CartPole-v1", teacher, 0.0, n_steps=16, n_epochs=5)
    quiet.learn(3 * 16 * 2)
    assert idle.teacher_calls == 0 and idle.losses == []


def test_a2c_takes_the_one_pass_kick_too(cartpole_ppo_teacher):
    """A2C trains once on the whole rollout: one teacher call and one kick loss per rollout, and its weights move."""
    from stable_baselines3 import A2C

    from policykd.envs import EnvFactory
    from policykd.rl.kick import Kick
    from policykd.teachers import load_teacher

    teacher = load_teacher(str(cartpole_ppo_teacher), env_id="CartPole-v1")
    model = A2C("MlpPolicy", EnvFactory("CartPole-v1").make(2, 0), n_steps=5, seed=0, device="cpu")
    kick = Kick(teacher, "kl", 1.0, None, schedule="constant", weight=1.0, total=1, teacher_return=0.0)
    kick.attach(model)
    model.learn(3 * 5 * 2)
    assert kick.teacher_calls == 3 and len(kick.losses) == 3


def test_the_teacher_sees_the_rollouts_frames_as_the_env_gave_them():
    """SB3 stores frames as float32: the teacher gets the uint8 frames back, bit for bit, and they are not / 255."""
    from policykd.rl.rollout_kick import rollout_observations
    from policykd.teachers import load_teacher

    teacher = load_teacher("pong-ppo-v5", env_id="ALE/Pong-v5")
    model, kick = _student_and_kick("ALE/Pong-v5", teacher, 1.0, n_steps=8)
    buffer = _one_rollout(model)
    stored = buffer.observations.copy()
    next(buffer.get(8))  # flattens the rollout, as PPO's first minibatch does
    frames = rollout_observations(buffer)
    assert frames.dtype == np.uint8 and frames.shape == (16, *model.observation_space.shape)
    assert frames.max() > 1 and np.array_equal(frames, stored.swapaxes(0, 1).reshape(frames.shape))
