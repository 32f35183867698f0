"""--ema: the moving average of the student's weights is what drives, is evaluated and is saved."""

import numpy as np
import pytest
import torch as th
from torch import nn

from policykd.errors import PolicykdError
from policykd.settings import DistillSettings
from policykd.students.averaging import averaged_weights, make_average


def test_the_average_is_swapped_in_and_the_trained_weights_come_back():
    """The EMA update by hand (first copies, then mixes), swapped in within the block and the trained weights restored
    after."""
    layer = nn.Linear(3, 2)
    assert make_average(layer, 0.0) is None
    average = make_average(layer, 0.5)
    first = layer.weight.detach().clone()
    average.update_parameters(layer)  # the first update copies
    with th.no_grad():
        layer.weight.add_(1.0)
    average.update_parameters(layer)  # 0.5 * first + 0.5 * (first + 1)
    trained = layer.weight.detach().clone()
    with averaged_weights(layer, average):
        assert th.allclose(layer.weight, first + 0.5)
    assert th.equal(layer.weight, trained)
    with averaged_weights(layer, None):
        assert th.equal(layer.weight, trained)


def test_ema_must_be_below_one():
    """An average that never moves is refused, named as the library caller wrote it (`ema`, not `--ema`)."""
    with pytest.raises(PolicykdError, match=r"^ema must be within \[0, 1\), got 1.0"):
        DistillSettings(env_id="CartPole-v1", ema=1.0)


def test_the_saved_student_is_the_average_not_the_last_step(cartpole_ppo_teacher, tmp_path):
    """--ema: student.zip acts as the averaged weights, not as the last gradient step's."""
    from stable_baselines3 import PPO

    from policykd.run.build import build_run
    from policykd.run.loop import execute

    settings = DistillSettings(
        env_id="CartPole-v1",
        teachers=(str(cartpole_ppo_teacher),),
        out=str(tmp_path / "ema"),
        steps=1600,
        rounds=2,
        eval_episodes=2,
        ema=0.9,
    )
    run = build_run(settings)
    execute(run, quiet=True)
    obs = np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32)

    def logits(policy, x):
        with th.no_grad():
            return policy.get_distribution(policy.obs_to_tensor(x)[0]).distribution.logits

    saved = logits(PPO.load(tmp_path / "ema" / "student.zip", device="cpu").policy, obs)  # takes raw observations
    standardised = run.prep(obs)  # what the policy in training reads
    assert th.allclose(saved, logits(run.average.module, standardised), atol=1e-4)
    assert not th.allclose(saved, logits(run.student.policy, standardised), atol=1e-4)
