"""Teacher and student returns on identical episode seeds.

Episode i is the first episode of env i, reset with seed `seed + i`, so teacher and
student face the same initial states (and the same env randomness where it does not
depend on the actions). All episodes run side by side: one batched forward per step.
Returns are the Monitor's raw episode scores (unclipped, for Atari too).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, NamedTuple, Protocol, runtime_checkable

import numpy as np
from sb3_contrib.common.recurrent.policies import RecurrentActorCriticPolicy
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.vec_env import VecEnv, VecNormalize

from policykd.distributions import env_action, same_actions
from policykd.envs import EnvFactory, array_obs

if TYPE_CHECKING:  # teachers build on rollouts; a teacher here is only a type
    from policykd.teachers import Teacher

ActFn = Callable[[np.ndarray], np.ndarray]


@runtime_checkable
class Remembers(Protocol):
    """An actor with memory per episode (an exported history window, an LSTM state): `run_episodes` calls its
    `step(obs, episodes, starts)`, saying which episode each row is and where one starts (rows leave as episodes end)."""

    def __call__(self, obs: np.ndarray) -> np.ndarray: ...

    def step(self, obs: np.ndarray, episodes: np.ndarray, starts: np.ndarray) -> np.ndarray: ...


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


COLLAPSE_RATIO = 0.5
"""An episode below half its teacher's mean return (`return_ratio` < 0.5) is a collapse: a walker that fell, a
cheetah that flipped; a mean hides them, a count does not."""


def collapsed_episodes(returns: Sequence[float], teacher_mean: float) -> int:
    """How many of `returns` are collapses against `teacher_mean` (`COLLAPSE_RATIO`)."""
    return sum(return_ratio(float(r), teacher_mean) < COLLAPSE_RATIO for r in returns)


def run_episodes(act: ActFn, factory: EnvFactory, episodes: int, seed: int) -> Returns:
    """One episode per env, env i seeded with `seed + i`; `act` maps raw observations to actions.

    Each env is its own one-env VecEnv (seeded as env i of `factory.make(episodes, seed)` is) and stops when its
    episode ends, while one batched `act` serves the envs still playing. A single VecEnv would step every env
    until the longest episode ends: Pong's differ up to 2x in length, and those idle steps were 43 % of the
    teacher's 20-episode evaluation. ale-py's vector env (`factory.native`) steps all of them in one call, in C++
    threads, where an env's episode depends only on its seed and its actions: one env each would lose the threads,
    so it plays every episode in one vector env, the finished ones idle (`_side_by_side`)."""
    if factory.native:
        return _side_by_side(act, factory.make(episodes, seed), episodes)
    venvs = [factory.make(1, seed + i) for i in range(episodes)]
    returns = np.full(episodes, np.nan)
    lengths = np.zeros(episodes, dtype=np.int64)
    try:
        obs = [array_obs(venv.reset()) for venv in venvs]
        playing = list(range(episodes))
        step, first = (act.step if isinstance(act, Remembers) else None), True
        while playing:
            rows = np.concatenate([obs[i] for i in playing])
            actions = act(rows) if step is None else step(rows, np.array(playing), np.full(len(playing), first))
            first = False
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


def _side_by_side(act: ActFn, venv: VecEnv, episodes: int) -> Returns:
    """The first episode of each of `venv`'s envs; envs whose episode has ended step on with action 0 unread."""
    returns = np.full(episodes, np.nan)
    lengths = np.zeros(episodes, dtype=np.int64)
    step = act.step if isinstance(act, Remembers) else None
    try:
        obs = array_obs(venv.reset())
        playing = np.arange(episodes)
        starts = np.ones(episodes, dtype=bool)
        while len(playing):
            rows = obs[playing]
            chosen = act(rows) if step is None else step(rows, playing, starts[playing])
            starts[:] = False
            actions = np.zeros((episodes, *np.shape(chosen)[1:]), dtype=np.asarray(chosen).dtype)
            actions[playing] = chosen
            next_obs, _, _, infos = venv.step(actions)
            obs = array_obs(next_obs)
            for i in playing:
                if "episode" in infos[i]:
                    returns[i], lengths[i] = infos[i]["episode"]["r"], infos[i]["episode"]["l"]
            playing = playing[np.isnan(returns[playing])]
    finally:
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
    """The teacher's greedy action; a loaded recurrent model (a RecurrentPPO student that `policykd evaluate` runs)
    acts with an LSTM state per episode (`RecurrentActor`), which its memoryless `label` cannot."""
    model = getattr(teacher, "model", None)
    if isinstance(model, BaseAlgorithm) and isinstance(model.policy, RecurrentActorCriticPolicy):
        return RecurrentActor(model, normalizing(teacher.normalizer), deterministic=True)
    return lambda obs: env_action(teacher.label(obs)[0], teacher.action_space)


def normalizing(normalizer: VecNormalize | None) -> Callable[[np.ndarray], np.ndarray] | None:
    """A frozen VecNormalize's `normalize_obs` as a student's `prep` (None: the student reads raw observations)."""
    if normalizer is None:
        return None
    return lambda obs: array_obs(normalizer.normalize_obs(obs))


class RecurrentActor:
    """A recurrent student (sb3-contrib's RecurrentPPO) acting as its own `predict(obs, state, episode_start,
    deterministic)` steps it, with one LSTM state per episode: `step` says which episode each row is and where one
    starts (`run_episodes`: rows leave as their episodes end; the collector: one row per env, restarting where an
    episode ends). A plain call takes the rows as envs 0, 1, ..., each starting at its first call and never again (a
    caller that knows where episodes start says so through `step`)."""

    def __init__(
        self, student: BaseAlgorithm, prep: Callable[[np.ndarray], np.ndarray] | None, *, deterministic: bool
    ) -> None:
        self.student, self.prep, self.deterministic = student, prep, deterministic
        policy = student.policy
        assert isinstance(policy, RecurrentActorCriticPolicy)  # `student_actor` makes one for these only
        self.zero = np.zeros(policy.lstm_hidden_state_shape, dtype=np.float32)
        self.states: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        rows = np.arange(len(obs))
        return self.step(obs, rows, np.array([int(r) not in self.states for r in rows]))

    def step(self, obs: np.ndarray, episodes: np.ndarray, starts: np.ndarray) -> np.ndarray:
        held = [self.states.get(int(e), (self.zero, self.zero)) for e in episodes]
        state = (np.concatenate([h for h, _ in held], axis=1), np.concatenate([c for _, c in held], axis=1))
        if self.prep is not None:
            obs = self.prep(obs)
        actions, after = self.student.predict(
            obs, state=state, episode_start=np.asarray(starts, dtype=bool), deterministic=self.deterministic
        )
        assert after is not None  # a recurrent policy returns its next state
        h, c = after
        for j, e in enumerate(episodes):
            self.states[int(e)] = (h[:, j : j + 1], c[:, j : j + 1])
        return actions


def student_actor(
    student: BaseAlgorithm, prep: Callable[[np.ndarray], np.ndarray] | None = None, *, deterministic: bool = True
) -> ActFn:
    """What SB3's `evaluate_policy` does with a VecNormalize-wrapped env: `prep` (normalise), then predict; for a
    recurrent student a `RecurrentActor`, which keeps an LSTM state per episode."""
    if isinstance(student.policy, RecurrentActorCriticPolicy):
        return RecurrentActor(student, prep, deterministic=deterministic)

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
    agree = [0, 0]

    def compare(obs: np.ndarray, actions: np.ndarray) -> None:
        if teacher is not None:
            teacher_actions = env_action(teacher.label(obs)[0], teacher.action_space)
            same = same_actions(actions, teacher_actions, teacher.action_space)
            agree[0] += int(same.sum())
            agree[1] += len(same)

    returns = run_episodes(_Watched(student_actor(student, prep), compare), factory, episodes, seed)
    return returns, (agree[0] / agree[1] if agree[1] else float("nan"))


class _Watched:
    """An actor whose every batch of actions `watch(obs, actions)` also sees; a stateful actor keeps its memory."""

    def __init__(self, act: ActFn, watch: Callable[[np.ndarray, np.ndarray], None]) -> None:
        self.act, self.watch = act, watch

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        actions = self.act(obs)
        self.watch(obs, actions)
        return actions

    def step(self, obs: np.ndarray, episodes: np.ndarray, starts: np.ndarray) -> np.ndarray:
        actions = self.act.step(obs, episodes, starts) if isinstance(self.act, Remembers) else self.act(obs)
        self.watch(obs, actions)
        return actions
