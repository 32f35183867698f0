"""Student views: a student that sees less than its teacher (the teacher-student workflow of legged robotics).

The teacher labels the env's full observation; the student is built for, trained on, evaluated on and exported for
its view of it: the robot's own sensors (`mask`, `ram`, a user's `module:function`), their noise and latency
(`noise`, `delay`) and a short memory (`history`). A view is a chain of stages applied in the order given to the
vectorised env's observations; each stage keeps its state per env (a delay line, a history window) and restarts it
where an episode starts, so the same chain serves collection (n envs), evaluation (one env per episode) and the
`StudentObservation` wrapper a user deploys with. `VIEWS` in `policykd.registry` lists the stages (policykd.views.stages).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper
from stable_baselines3.common.vec_env.base_vec_env import VecEnvStepReturn

from policykd.errors import PolicykdError
from policykd.views.stages import (
    Delay,
    Envs,
    Function,
    History,
    Mask,
    Noise,
    Observe,
    Probe,
    Ram,
    Stage,
    StageMaker,
    function,
    named_groups,
)

__all__ = [
    "Delay",
    "Function",
    "History",
    "Mask",
    "Noise",
    "Probe",
    "Ram",
    "Stage",
    "StageMaker",
    "StudentObservation",
    "VecView",
    "View",
    "build_view",
    "full_obs",
    "named_groups",
    "probe",
    "view_for",
    "with_view",
]


@dataclass(frozen=True)
class View:
    """A student's view: its stages in order and the observation space they give."""

    stages: tuple[Stage, ...]
    space: spaces.Box

    @property
    def specs(self) -> tuple[str, ...]:
        return tuple(s.spec for s in self.stages)

    def start(self, n_envs: int, seed: int) -> Observe:
        """Fresh state for `n_envs` envs seeded with `seed` (noise is drawn from it: the same seed, the same noise)."""
        steps = [stage.start(n_envs, np.random.default_rng([seed, i])) for i, stage in enumerate(self.stages)]

        def observe(obs: np.ndarray, starts: np.ndarray, venv: Envs, infos: Sequence[dict]) -> np.ndarray:
            for step in steps:
                obs = step(obs, starts, venv, infos)
            return obs

        return observe

    @property
    def reads_env(self) -> bool:
        """A stage reads the running envs themselves (`ram`), not only their observations and infos."""
        return any(getattr(stage, "reads_env", False) for stage in self.stages)

    @property
    def history(self) -> int:
        """K of a trailing `history=K` (an export keeps that window itself), else 1."""
        last = self.stages[-1] if self.stages else None
        return last.k if isinstance(last, History) else 1

    def sensors(self) -> View:
        """The view without its trailing history: what a deployed artifact is fed each step (its `contract.json`)."""
        if self.history == 1:
            return self
        stages = self.stages[:-1]
        space = (
            self.space
            if not stages
            else spaces.Box(
                self.space.low[: self.space.shape[0] // self.history],
                self.space.high[: self.space.shape[0] // self.history],
                dtype=self.space.dtype,
            )
        )
        return View(stages, space)


def parse_spec(spec: str) -> tuple[str, str | None]:
    """`name=value`, `name`, or `module:function` (kind "function")."""
    name, eq, value = spec.partition("=")
    if not eq and ":" in spec:
        return "function", None
    return name.strip(), (value.strip() if eq else None)


def build_view(specs: Sequence[str], probe: Probe, space: gym.Space) -> View | None:
    """The view the specs describe for this env (None: the student sees what the teacher sees). Checks every spec
    against the env before any work: unknown names, indices out of range, `ram` outside Atari, user functions."""
    from policykd.registry import VIEWS

    if not specs:
        return None
    stages: list[Stage] = []
    for spec in specs:
        kind, value = parse_spec(spec)
        if kind == "function":
            stage = function(spec, probe)
        else:
            stage = VIEWS.load(kind)(spec, value, probe)
        space = stage.space(space)  # type: ignore[arg-type]
        stages.append(stage)
        if space.shape != probe.obs.shape:  # indices and named groups now refer to this stage's output
            probe = _Probed(probe, space)
    return View(tuple(stages), space)  # type: ignore[arg-type]


@dataclass
class _Probed:
    """A probe whose observation has passed through earlier stages (named groups then no longer apply)."""

    inner: Probe
    space: gym.Space

    @property
    def obs(self) -> np.ndarray:
        return np.zeros(self.space.shape or (), np.float32)

    @property
    def info(self) -> dict:
        return self.inner.info

    @property
    def env(self) -> gym.Env:
        return self.inner.env


class VecView(VecEnvWrapper):
    """A VecEnv whose observations are the student's view of the wrapped env's; `full_obs` keeps the teacher's."""

    def __init__(self, venv: VecEnv, view: View, seed: int) -> None:
        super().__init__(venv, observation_space=view.space)
        self.view = view
        self.seed_ = seed
        self.observe = view.start(venv.num_envs, seed)
        self.full_obs: np.ndarray | None = None

    def reset(self) -> np.ndarray:
        self.observe = self.view.start(self.num_envs, self.seed_)
        self.full_obs = np.asarray(self.venv.reset())
        starts = np.ones(self.num_envs, dtype=bool)
        return self.observe(self.full_obs, starts, self.venv, self.venv.reset_infos)

    def step_wait(self) -> VecEnvStepReturn:
        obs, rewards, dones, infos = self.venv.step_wait()
        self.full_obs = np.asarray(obs)
        return self.observe(self.full_obs, np.asarray(dones, bool), self.venv, infos), rewards, dones, infos


class StudentObservation(gym.ObservationWrapper):
    """A single gymnasium env as the student sees it, for a user's own loop or SB3's `evaluate_policy` on a view
    student: `StudentObservation(gym.make("Hopper-v5"), ["mask=velocities", "history=4"])`."""

    def __init__(self, env: gym.Env, specs: Sequence[str], seed: int = 0) -> None:
        super().__init__(env)
        obs, info = env.reset(seed=seed)
        probe = _EnvProbe(np.asarray(obs), info, env.unwrapped)
        view = build_view(specs, probe, env.observation_space)
        if view is None:
            raise PolicykdError("StudentObservation needs at least one view spec")
        self.view, self.seed_ = view, seed
        self.observation_space = view.space
        self._observe = view.start(1, seed)
        self._start = True

    def reset(self, **kwargs: Any) -> tuple[np.ndarray, dict]:
        self._start = True
        return super().reset(**kwargs)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        starts = np.array([self._start])
        self._start = False
        return self._observe(np.asarray(observation)[None], starts, _Unwrapped(self.env), [{}])[0]


@dataclass
class _EnvProbe:
    obs: np.ndarray
    info: dict
    env: gym.Env


class _Unwrapped:
    """The one-env stand-in for `VecEnv.get_attr("unwrapped")` that the `ram` stage asks for."""

    def __init__(self, env: gym.Env) -> None:
        self.env = env

    def get_attr(self, name: str) -> list[Any]:
        return [getattr(self.env, name)]


def full_obs(venv: VecEnv, obs: np.ndarray) -> np.ndarray:
    """The teacher's observation of the step whose student observation is `obs` (the same array without a view)."""
    return venv.full_obs if isinstance(venv, VecView) and venv.full_obs is not None else obs


def probe(factory: MakesEnvs, seed: int = 0) -> tuple[Probe, gym.Space]:
    """One env of `factory`, reset with `seed`: its first observation, reset info and unwrapped env, and its
    observation space (the env is closed: what stages and contracts read of it does not step it)."""
    venv = factory.make(1, seed)
    try:
        obs = np.asarray(venv.reset())
        info = venv.reset_infos[0] if venv.reset_infos else {}
        return _EnvProbe(obs[0], info, venv.get_attr("unwrapped")[0]), venv.observation_space
    finally:
        venv.close()


def view_for(factory: MakesEnvs, specs: Sequence[str], seed: int = 0) -> View | None:
    """The view `specs` describe on the envs `factory` makes, checked against one env's first observation."""
    if not specs:
        return None
    first, space = probe(factory, seed)
    return build_view(specs, first, space)


class MakesEnvs(Protocol):
    """What makes vectorised envs (`policykd.envs.EnvFactory`)."""

    def make(self, n_envs: int, seed: int) -> VecEnv: ...


F = TypeVar("F")


def with_view(factory: F, view: View | None) -> F:
    """The student's env factory: `factory` (an `EnvFactory`) seen through `view`, whose envs are `VecView`s."""
    return dataclasses.replace(factory, view=view)  # type: ignore[type-var]
