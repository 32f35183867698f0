"""Who drives the env (teacher, student, or a beta-mixture: DAgger) and the teacher's labels.

Whoever drives, the teacher labels every visited state, so the student learns to act
in the states its own mistakes lead to (Ross et al. 2011, DAgger).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from stable_baselines3.common.vec_env import VecEnv

from policykd.data.buffer import DistillationBuffer
from policykd.distributions import check_finite, env_action, sample_action
from policykd.envs import array_obs
from policykd.teachers import Teacher

ActFn = Callable[[np.ndarray], np.ndarray]


@dataclass
class CollectStats:
    steps: int = 0
    teacher_actions: int = 0
    episode_returns: list[float] = field(default_factory=list)


@dataclass
class Collector:
    """Steps `venv` and fills `buffer`; keeps the env state between rounds."""

    venv: VecEnv
    teacher: Teacher
    buffer: DistillationBuffer
    rng: np.random.Generator
    obs: np.ndarray | None = None
    sample: bool = False
    """The teacher's executed actions are drawn from its distribution, not its mode (the student's
    act function is given accordingly): the data then covers recovering from small errors."""

    def run(
        self,
        n_steps: int,
        beta: float,
        student_act: ActFn | None,
        on_step: Callable[[int], None] | None = None,
        steps_before: int = 0,
    ) -> CollectStats:
        """Collect at least `n_steps` env steps (rounded up to whole vector steps);
        `steps_before` (the run's earlier steps) only numbers the steps in error messages."""
        if self.obs is None:
            self.obs = array_obs(self.venv.reset())
        obs = self.obs
        stats = CollectStats()
        n_envs = self.venv.num_envs
        for _ in range(math.ceil(n_steps / n_envs)):
            dist, value = self.teacher.label(obs)
            check_finite(dist, value, f"the teacher's output at env step {steps_before + stats.steps}")
            self.buffer.add(obs, dist, value)
            actions = (sample_action if self.sample else env_action)(dist, self.venv.action_space)
            if beta < 1.0:
                assert student_act is not None, "a student must act when beta < 1"
                from_teacher = self.rng.random(n_envs) < beta
                if not from_teacher.all():
                    actions = np.where(_broadcast(from_teacher, actions), actions, student_act(obs))
                stats.teacher_actions += int(from_teacher.sum())
            else:
                stats.teacher_actions += n_envs
            next_obs, _, _, infos = self.venv.step(actions)
            self.obs = obs = array_obs(next_obs)
            stats.steps += n_envs
            stats.episode_returns += [info["episode"]["r"] for info in infos if "episode" in info]
            if on_step is not None:
                on_step(n_envs)
        return stats


def _broadcast(mask: np.ndarray, actions: np.ndarray) -> np.ndarray:
    return mask.reshape(-1, *([1] * (actions.ndim - 1)))
