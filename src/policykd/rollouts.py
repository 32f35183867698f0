"""Teacher and student returns on identical episode seeds.

Episode i is the first episode of env i, reset with seed `seed + i`, so teacher and
student face the same initial states (and the same env randomness where it does not
depend on the actions). All episodes run side by side: one batched forward per step.
Returns are the Monitor's raw episode scores (unclipped, for Atari too).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.vec_env import VecNormalize

from policykd.distributions import env_action, same_actions
from policykd.envs import EnvFactory, array_obs

if TYPE_CHECKING:  # teachers build on rollouts; a teacher here is only a type
    from policykd.teachers import Teacher

ActFn = Callable[[np.ndarray], np.ndarray]


class Returns(NamedTuple):
    returns: np.ndarray
    lengths: np.ndarray

    @property
    def mean(self) -> float:
        return float(np.mean(self.returns))

    @property
    def std(self) -> float:
        return float(np.std(self.returns))


def return_ratio(student: float, teacher: float) -> float:
    """The student's return as a fraction of its teacher's, `1 + (s - t) / |t|`: 1.0 is the teacher's return, 0.9 is 10 %
    of the teacher's magnitude below it, also for negative returns (Pendulum: a student at -300 against a teacher at
    -150 is 0.0, not 2.0, which plain s / t would say). NaN when the teacher's return is 0 and the student's is not."""
    if student == teacher:
        return 1.0
    if teacher == 0 or not math.isfinite(teacher) or not math.isfinite(student):
        return float("nan")
    return 1.0 + (student - teacher) / abs(teacher)


def run_episodes(act: ActFn, factory: EnvFactory, episodes: int, seed: int) -> Returns:
    """One episode per env, env i seeded with `seed + i`; `act` maps raw observations to actions.

    Each env is its own one-env VecEnv (seeded as env i of `factory.make(episodes, seed)` is) and stops when its
    episode ends, while one batched `act` serves the envs still playing. A single VecEnv would step every env
    until the longest episode ends: Pong's differ up to 2x in length, and those idle steps were 43 % of the
    teacher's 20-episode evaluation."""
    venvs = [factory.make(1, seed + i) for i in range(episodes)]
    returns = np.full(episodes, np.nan)
    lengths = np.zeros(episodes, dtype=np.int64)
    try:
        obs = [array_obs(venv.reset()) for venv in venvs]
        playing = list(range(episodes))
        while playing:
            actions = act(np.concatenate([obs[i] for i in playing]))
            for i, action in zip(playing, actions):
                next_obs, _, _, infos = venvs[i].step(action[None])
                obs[i] = array_obs(next_obs)
                if "episode" in infos[0]:
                    returns[i], lengths[i] = infos[0]["episode"]["r"], infos[0]["episode"]["l"]
            playing = [i for i in playing if np.isnan(returns[i])]
    finally:
        for venv in venvs:
            venv.close()
    return Returns(returns, lengths)


def rollout_observations(act: ActFn, factory: EnvFactory, steps: int, n_envs: int, seed: int) -> np.ndarray:
    """The raw observations of `steps` steps of `n_envs` seeded envs driven by `act`: the states a policy meets,
    for calibrating an int8 export or ranking units to prune."""
    venv = factory.make(n_envs, seed)
    seen = []
    try:
        obs = array_obs(venv.reset())
        for _ in range(steps):
            seen.append(obs)
            obs = array_obs(venv.step(act(obs))[0])
    finally:
        venv.close()
    return np.concatenate(seen)


def teacher_actor(teacher: Teacher) -> ActFn:
    return lambda obs: env_action(teacher.label(obs)[0], teacher.action_space)


def normalizing(normalizer: VecNormalize | None) -> Callable[[np.ndarray], np.ndarray] | None:
    """A frozen VecNormalize's `normalize_obs` as a student's `prep` (None: the student reads raw observations)."""
    if normalizer is None:
        return None
    return lambda obs: array_obs(normalizer.normalize_obs(obs))


def student_actor(
    student: BaseAlgorithm, prep: Callable[[np.ndarray], np.ndarray] | None = None, *, deterministic: bool = True
) -> ActFn:
    """What SB3's `evaluate_policy` does with a VecNormalize-wrapped env: `prep` (normalise), then predict."""

    def act(obs: np.ndarray) -> np.ndarray:
        if prep is not None:
            obs = prep(obs)
        return student.predict(obs, deterministic=deterministic)[0]

    return act


def student_eval(
    student: BaseAlgorithm,
    prep: Callable[[np.ndarray], np.ndarray],
    factory: EnvFactory,
    episodes: int,
    seed: int,
    teacher: Teacher | None = None,
) -> tuple[Returns, float]:
    """Student returns on the evaluation seeds, and (with a live teacher) how often its greedy
    action is the teacher's on the states the student visits (`same_actions`: continuous, within 5 % of the range)."""
    act = student_actor(student, prep)
    agree = [0, 0]

    def act_and_compare(obs: np.ndarray) -> np.ndarray:
        actions = act(obs)
        if teacher is not None:
            teacher_actions = env_action(teacher.label(obs)[0], teacher.action_space)
            same = same_actions(actions, teacher_actions, teacher.action_space)
            agree[0] += int(same.sum())
            agree[1] += len(same)
        return actions

    returns = run_episodes(act_and_compare, factory, episodes, seed)
    return returns, (agree[0] / agree[1] if agree[1] else float("nan"))
