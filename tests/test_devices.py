"""Tensors made from arrays land beside the network's weights, whatever its device.

These machines have no GPU, so the networks here are moved to torch's `meta` device: it computes shapes only and,
like a GPU, refuses an operation that mixes its tensors with CPU ones. Each function below once built a CPU tensor
next to a GPU network (found on a lent GPU machine, `benchmarks/device_checks.sh`)."""

from __future__ import annotations

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3 import PPO

from policykd.distributions import CATEGORICAL, DETERMINISTIC, GAUSSIAN, ActionDist, entropy_per_state, mix, unsquashed
from policykd.students.folding import ObsStats, fold, unfold

META = th.device("meta")


def test_folding_the_observation_statistics_into_a_network_off_the_cpu() -> None:
    model = PPO("MlpPolicy", "CartPole-v1", policy_kwargs={"net_arch": [8]}, device="cpu")
    model.policy.to(META)
    stats = ObsStats(np.zeros(4, np.float32), np.full(4, 2.0, np.float32))
    fold(model, stats)
    unfold(model, stats)
    assert all(p.device == META for p in model.policy.parameters())


def test_distribution_helpers_keep_the_labels_device() -> None:
    box = spaces.Box(-2.0, 2.0, (3,), np.float32)
    gaussian = ActionDist(
        GAUSSIAN, mean=th.zeros(5, 3, device=META), log_std=th.zeros(5, 3, device=META), squashed=True
    )
    assert unsquashed(gaussian, box).tensor("mean").device == META
    assert entropy_per_state(ActionDist(DETERMINISTIC, mean=th.zeros(5, 3, device=META))).device == META
    logits = [ActionDist(CATEGORICAL, logits=th.zeros(5, 2, device=META)) for _ in range(2)]
    assert mix(logits, [0.7, 0.3]).tensor("logits").device == META
