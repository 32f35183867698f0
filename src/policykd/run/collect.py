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
from policykd.rollouts import Remembers
from policykd.teachers import Teacher
from policykd.views import full_obs

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
    starts: np.ndarray | None = None
    """Where an episode starts at `obs` (one per env): the buffer keeps it for recurrent students, whose actor
    (`policykd.rollouts.Remembers`) restarts its state there."""

    def restart(self, obs: np.ndarray) -> None:
        """Continue from fresh envs' first observations: every env starts an episode."""
        self.obs, self.starts = obs, np.ones(len(obs), dtype=bool)

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
            self.restart(array_obs(self.venv.reset()))
        obs, starts = self.obs, self.starts
        assert obs is not None and starts is not None  # `restart` set both
        stats = CollectStats()
        n_envs = self.venv.num_envs
        envs = np.arange(n_envs)
        for _ in range(math.ceil(n_steps / n_envs)):
            dist, value = self.teacher.label(full_obs(self.venv, obs))  # the student's view: the teacher's obs
            check_finite(dist, value, f"the teacher's output at env step {steps_before + stats.steps}")
            self.buffer.add(obs, dist, value, starts=starts)
            actions = (sample_action if self.sample else env_action)(dist, self.venv.action_space)
            if beta < 1.0:
                assert student_act is not None, "a student must act when beta < 1"
                from_teacher = self.rng.random(n_envs) < beta
                if isinstance(student_act, Remembers):  # its memory sees every step, whoever acts
                    own = student_act.step(obs, envs, starts)
                    actions = np.where(_broadcast(from_teacher, actions), actions, own)
                elif not from_teacher.all():
                    actions = np.where(_broadcast(from_teacher, actions), actions, student_act(obs))
                stats.teacher_actions += int(from_teacher.sum())
            else:
                stats.teacher_actions += n_envs
            next_obs, _, dones, infos = self.venv.step(actions)
            self.obs = obs = array_obs(next_obs)
            self.starts = starts = np.asarray(dones, dtype=bool)
            stats.steps += n_envs
            stats.episode_returns += [info["episode"]["r"] for info in infos if "episode" in info]
            if on_step is not None:
                on_step(n_envs)
        return stats


def _broadcast(mask: np.ndarray, actions: np.ndarray) -> np.ndarray:
    return mask.reshape(-1, *([1] * (actions.ndim - 1)))
