"""Several teachers on one env, acting as one: their distributions are averaged."""

from __future__ import annotations

import functools
import operator
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.vec_env import VecNormalize

from policykd.distributions import ActionDist, entropy_per_state, mix, unsquashed
from policykd.envs import EnvFactory
from policykd.errors import PolicykdError
from policykd.sb3_models import describe_space
from policykd.teachers.base import Teacher


@dataclass
class EnsembleTeacher:
    """Weighted average of its members (see `distributions.mix`); values are averaged too."""

    members: Sequence[Teacher]
    weights: Sequence[float] = field(default_factory=list)
    confidence: bool = False
    """Weight each member per state by exp(-entropy) of its distribution there (times `weights`)."""
    _unsquash: bool | None = field(default=None, init=False, repr=False)
    """Members disagree on squashing (SAC with PPO): all are labelled in env units, also the ones a selection left
    out, so a selected SAC member still labels a PPO-family student (found on the first batch)."""

    def __post_init__(self) -> None:
        if not self.weights:
            self.weights = [1.0] * len(self.members)
        if len(self.weights) != len(self.members):
            raise PolicykdError(f"{len(self.weights)} teacher weights for {len(self.members)} teachers")
        if any(w < 0 for w in self.weights) or sum(self.weights) <= 0:
            raise PolicykdError(f"teacher weights must be non-negative with a positive sum: {list(self.weights)}")
        first = self.members[0]
        for other in self.members[1:]:
            for space in ("observation_space", "action_space"):
                a, b = getattr(first, space), getattr(other, space)
                if describe_space(a) != describe_space(b):
                    raise PolicykdError(
                        f"ensemble teachers {first.name} and {other.name} differ in {space}: {a} vs {b}"
                    )
            if other.factory.env_wrapper != first.factory.env_wrapper:
                raise PolicykdError(f"ensemble teachers {first.name} and {other.name} need different env wrappers")

    @property
    def name(self) -> str:
        return " + ".join(m.name for m in self.members)

    @property
    def algo(self) -> str:
        return "+".join(sorted({m.algo for m in self.members}))

    @property
    def factory(self) -> EnvFactory:
        return self.members[0].factory

    @property
    def observation_space(self) -> spaces.Space:
        return self.members[0].observation_space

    @property
    def action_space(self) -> spaces.Space:
        return self.members[0].action_space

    @property
    def normalizer(self) -> VecNormalize | None:
        return self.members[0].normalizer

    @property
    def acting_params(self) -> int:
        return sum(m.acting_params for m in self.members)

    def to(self, device: th.device) -> None:
        for member in self.members:
            member.to(device)

    def label(self, obs: np.ndarray) -> tuple[ActionDist, th.Tensor | None]:
        """Each member labels the raw observations itself (its own VecNormalize); continuous members of different
        families (SAC's squashed Gaussian, PPO's in env units) are all expressed in env units first, then
        moment-matched: the ensemble is then a PPO-family teacher."""
        playing = [(m, w) for m, w in zip(self.members, self.weights) if w > 0]  # selection leaves some out
        labels = [m.label(obs) for m, _ in playing]
        shares = [w for _, w in playing]
        dists = [d for d, _ in labels]
        if self._unsquash is None:
            self._unsquash = len({m.label(obs[:1])[0].squashed for m in self.members}) > 1
        if self._unsquash:
            box = self.action_space  # members that disagree on squashing are continuous
            assert isinstance(box, spaces.Box)
            dists = [unsquashed(d, box) for d in dists]
        weights: Sequence[float] | th.Tensor = shares
        if self.confidence:
            sure = th.stack([th.exp(-entropy_per_state(d)) for d in dists], dim=1)  # (B, M)
            weights = sure * th.as_tensor(np.asarray(shares, dtype=np.float32), device=sure.device)
        dist = mix(dists, weights) if len(dists) > 1 else dists[0]
        valued = [(w, v) for w, (_, v) in zip(shares, labels) if v is not None]  # values: fixed weights
        if not valued:
            return dist, None
        total = sum(w for w, _ in valued)
        return dist, functools.reduce(operator.add, [w * v for w, v in valued]) / total
