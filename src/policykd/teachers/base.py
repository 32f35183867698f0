"""The Teacher protocol, and a teacher backed by one SB3 model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.vec_env import VecNormalize

from policykd.distributions import ActionDist, obs_tensor, policy_outputs
from policykd.envs import EnvFactory, array_obs
from policykd.sb3_models import acting_params, uses_images


class Teacher(Protocol):
    """Anything that labels observations with an action distribution (and a value, if it has one)."""

    @property
    def name(self) -> str: ...

    @property
    def algo(self) -> str: ...

    @property
    def factory(self) -> EnvFactory: ...

    @property
    def observation_space(self) -> spaces.Space: ...

    @property
    def action_space(self) -> spaces.Space: ...

    @property
    def normalizer(self) -> VecNormalize | None: ...

    @property
    def acting_params(self) -> int: ...

    def label(self, obs: np.ndarray) -> tuple[ActionDist, th.Tensor | None]:
        """Distribution and value for a batch of raw env observations (no gradients)."""
        ...

    def to(self, device: th.device) -> None:
        """Run its networks on `device` from now on (labels come back on it)."""
        ...


@dataclass
class SB3Teacher:
    """One SB3 model (any supported algorithm), with the frozen VecNormalize it was trained with."""

    name: str
    algo: str
    model: BaseAlgorithm
    factory: EnvFactory
    normalizer: VecNormalize | None = None
    trained_env_id: str | None = None
    config: dict[str, object] | None = None

    def __post_init__(self) -> None:
        if uses_images(self.observation_space):  # NHWC convolutions: Pong's labels in 1.9 instead of 2.5 ms (batch 8)
            self.model.policy.to(memory_format=th.channels_last)  # type: ignore[call-overload]  # torch's stub lacks it

    @property
    def observation_space(self) -> spaces.Space:
        return self.model.observation_space

    @property
    def action_space(self) -> spaces.Space:
        return self.model.action_space

    @property
    def acting_params(self) -> int:
        return acting_params(self.model.policy)

    def to(self, device: th.device) -> None:
        self.model.policy.to(device)
        self.model.device = device

    def label(self, obs: np.ndarray) -> tuple[ActionDist, th.Tensor | None]:
        if self.normalizer is not None:
            obs = array_obs(self.normalizer.normalize_obs(obs))
        policy = self.model.policy
        with th.no_grad():
            return policy_outputs(policy, obs_tensor(policy, obs))
