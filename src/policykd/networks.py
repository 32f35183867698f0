"""A small Nature-style CNN for image students, saved *by value* inside the student zip.

SB3 pickles `policy_kwargs` (with the features extractor class) into the zip with
cloudpickle. Registering this module with `cloudpickle.register_pickle_by_value` embeds
the class definition itself, so `PPO.load("student.zip")` works where policykd is not
installed. Keep this module self-contained: it may import only torch, gymnasium and SB3.
"""

from __future__ import annotations

import torch as th
from gymnasium import spaces
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn


class SmallCNN(BaseFeaturesExtractor):
    """NatureCNN's shape (8x8/4, 4x4/2, 3x3/1 convolutions, then a linear layer) with fewer channels."""

    def __init__(self, observation_space: spaces.Box, features_dim: int = 32, channels: tuple = (16, 32, 32)) -> None:
        super().__init__(observation_space, features_dim)
        c1, c2, c3 = channels
        self.cnn = nn.Sequential(
            nn.Conv2d(observation_space.shape[0], c1, kernel_size=8, stride=4),
            nn.ReLU(),
            nn.Conv2d(c1, c2, kernel_size=4, stride=2),
            nn.ReLU(),
            nn.Conv2d(c2, c3, kernel_size=3, stride=1),
            nn.ReLU(),
            nn.Flatten(),
        )
        with th.no_grad():
            n_flat = self.cnn(th.zeros((1, *observation_space.shape))).shape[1]
        self.linear = nn.Sequential(nn.Linear(n_flat, features_dim), nn.ReLU())

    def forward(self, observations: th.Tensor) -> th.Tensor:
        return self.linear(self.cnn(observations))
