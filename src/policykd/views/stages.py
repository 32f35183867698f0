"""The stages of a student view, one per `--student-obs` name (`VIEWS` in `policykd.registry`), and the user's own
`module:function`. A stage maps an observation space to the student's (`space`) and, per run of envs, keeps its own
state per env (`start`): a delay line, a history window, a noise generator seeded with the envs.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, cast

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from policykd.errors import PolicykdError


class Envs(Protocol):
    """The envs a stage may read beyond their observations (`ram`: each env's console); a VecEnv is one."""

    def get_attr(self, attr_name: str) -> list[Any]: ...


Observe = Callable[[np.ndarray, np.ndarray, Envs, Sequence[dict]], np.ndarray]
"""One stage's step: (observations, where an episode starts, the env, its infos) -> what the next stage sees."""


class Stage(Protocol):
    """One stage of a view: the space it maps to, and a fresh per-env state for `n_envs` envs."""

    @property
    def spec(self) -> str: ...

    def space(self, space: spaces.Box) -> spaces.Box: ...

    def start(self, n_envs: int, rng: np.random.Generator) -> Observe: ...


class Probe(Protocol):
    """What a stage may ask of the env when it is built: its first observation and its unwrapped gymnasium env."""

    @property
    def obs(self) -> np.ndarray: ...

    @property
    def info(self) -> dict: ...

    @property
    def env(self) -> gym.Env: ...


StageMaker = Callable[[str, "str | None", Probe], Stage]
"""A `VIEWS` entry: (the spec as written, its value after `=`, the env's probe) -> the stage, or a one-line error."""


def _box(space: gym.Space, spec: str) -> spaces.Box:
    if not isinstance(space, spaces.Box) or len(space.shape) != 1:
        raise PolicykdError(f"student view {spec!r} needs a flat Box observation, not {space}")
    return space


@dataclass(frozen=True)
class Mask:
    """Hides observation entries (`mask=1,3`, or a named group such as `mask=velocities`): the student keeps the rest."""

    spec: str
    hidden: tuple[int, ...]

    def space(self, space: spaces.Box) -> spaces.Box:
        box = _box(space, self.spec)
        bad = [i for i in self.hidden if not 0 <= i < box.shape[0]]
        if bad:
            raise PolicykdError(
                f"student view {self.spec!r}: index {bad[0]} is out of range for {box.shape[0]} entries"
            )
        keep = self.keep(box.shape[0])
        if not keep.size:
            raise PolicykdError(f"student view {self.spec!r} hides every entry")
        return spaces.Box(box.low[keep], box.high[keep], dtype=box.dtype)

    def keep(self, size: int) -> np.ndarray:
        return np.setdiff1d(np.arange(size), self.hidden)

    def start(self, n_envs: int, rng: np.random.Generator) -> Observe:
        keep: list[np.ndarray] = []

        def observe(obs: np.ndarray, starts: np.ndarray, venv: Envs, infos: Sequence[dict]) -> np.ndarray:
            if not keep:
                keep.append(self.keep(obs.shape[1]))
            return obs[:, keep[0]]

        return observe


@dataclass(frozen=True)
class Noise:
    """Gaussian sensor noise of standard deviation SIGMA (in the observation's units), seeded with the env."""

    spec: str
    sigma: float

    def space(self, space: spaces.Box) -> spaces.Box:
        box = _box(space, self.spec)
        return spaces.Box(-np.inf, np.inf, box.shape, np.float32)

    def start(self, n_envs: int, rng: np.random.Generator) -> Observe:
        def observe(obs: np.ndarray, starts: np.ndarray, venv: Envs, infos: Sequence[dict]) -> np.ndarray:
            return (obs + self.sigma * rng.standard_normal(obs.shape)).astype(np.float32)

        return observe


@dataclass(frozen=True)
class Delay:
    """The observation from K steps ago (sensor latency); an episode's first K steps repeat its first observation."""

    spec: str
    k: int

    def space(self, space: spaces.Box) -> spaces.Box:
        return space

    def start(self, n_envs: int, rng: np.random.Generator) -> Observe:
        line: list[np.ndarray] = []  # [K+1, n_envs, ...], oldest first

        def observe(obs: np.ndarray, starts: np.ndarray, venv: Envs, infos: Sequence[dict]) -> np.ndarray:
            if not line:
                line.append(np.repeat(obs[None], self.k + 1, axis=0))
            window = line[0]
            window[:-1] = window[1:].copy()
            window[-1] = obs
            window[:, starts] = obs[starts]
            return window[0].copy()

        return observe


@dataclass(frozen=True)
class History:
    """The last K observations side by side, oldest first (an episode's first steps repeat its first observation)."""

    spec: str
    k: int

    def space(self, space: spaces.Box) -> spaces.Box:
        box = _box(space, self.spec)
        return spaces.Box(np.tile(box.low, self.k), np.tile(box.high, self.k), dtype=box.dtype)

    def start(self, n_envs: int, rng: np.random.Generator) -> Observe:
        stack: list[np.ndarray] = []  # [n_envs, K, d]

        def observe(obs: np.ndarray, starts: np.ndarray, venv: Envs, infos: Sequence[dict]) -> np.ndarray:
            if not stack:
                stack.append(np.repeat(obs[:, None], self.k, axis=1))
            window = stack[0]
            window[:, :-1] = window[:, 1:].copy()
            window[:, -1] = obs
            window[starts] = obs[starts][:, None]
            return window.reshape(len(obs), -1).copy()

        return observe


@dataclass(frozen=True)
class Ram:
    """Atari's 128-byte console RAM instead of the frames (the teacher keeps its frames)."""

    spec: str = "ram"
    reads_env: ClassVar[bool] = True
    """It reads each running env's console, which only SB3's Atari stack exposes (`policykd.native_atari`)."""

    def space(self, space: gym.Space) -> spaces.Box:
        return spaces.Box(0, 255, (128,), np.uint8)

    def start(self, n_envs: int, rng: np.random.Generator) -> Observe:
        ales: dict[int, list[Any]] = {}

        def observe(obs: np.ndarray, starts: np.ndarray, venv: Envs, infos: Sequence[dict]) -> np.ndarray:
            if id(venv) not in ales:
                ales.clear()
                ales[id(venv)] = [env.ale for env in venv.get_attr("unwrapped")]
            return np.stack([ale.getRAM() for ale in ales[id(venv)]])

        return observe


@dataclass(frozen=True)
class Function:
    """A user's `module:function(obs, info) -> array`: the student's sensors computed from one env's observation."""

    spec: str
    function: Callable[[np.ndarray, dict], np.ndarray]
    shape: tuple[int, ...]

    def space(self, space: gym.Space) -> spaces.Box:
        return spaces.Box(-np.inf, np.inf, self.shape, np.float32)

    def start(self, n_envs: int, rng: np.random.Generator) -> Observe:
        def observe(obs: np.ndarray, starts: np.ndarray, venv: Envs, infos: Sequence[dict]) -> np.ndarray:
            rows = [self.call(o, info) for o, info in zip(obs, list(infos) + [{}] * (len(obs) - len(infos)))]
            return np.stack(rows)

        return observe

    def call(self, obs: np.ndarray, info: dict) -> np.ndarray:
        out = np.asarray(self.function(obs, info), dtype=np.float32)
        if out.shape != self.shape:
            raise PolicykdError(f"student view {self.spec!r} returned shape {out.shape}, first {self.shape}")
        return out


def named_groups(probe: Probe) -> dict[str, tuple[int, ...]]:
    """The env's named observation groups: `observation_groups` on the unwrapped env (a user's env may declare
    them: name -> indices), else MuJoCo's joint `positions` and `velocities`, found by matching the first observation
    against `data.qpos` and `data.qvel` (v5 locomotion leaves out the first one or two position coordinates)."""
    declared = getattr(probe.env, "observation_groups", None)
    if isinstance(declared, dict):
        return {str(k): tuple(int(i) for i in v) for k, v in declared.items()}
    data = getattr(probe.env, "data", None)
    if data is None or not hasattr(data, "qpos") or probe.obs.ndim != 1:
        return {}
    qpos, qvel, obs = np.asarray(data.qpos), np.asarray(data.qvel), probe.obs
    for skip in range(min(3, qpos.size)):
        n = qpos.size - skip
        if (
            obs.size >= n + qvel.size
            and np.allclose(obs[:n], qpos[skip:])
            and np.allclose(obs[n : n + qvel.size], qvel)
        ):
            return {"positions": tuple(range(n)), "velocities": tuple(range(n, n + qvel.size))}
    return {}


def _integer(spec: str, value: str | None, *, least: int) -> int:
    try:
        k = int(value or "")
    except ValueError:
        raise PolicykdError(f"student view {spec!r} needs a whole number, like {spec.split('=')[0]}=4") from None
    if k < least:
        raise PolicykdError(f"student view {spec!r} must be at least {least}")
    return k


def mask(spec: str, value: str | None, probe: Probe) -> Stage:
    if not value:
        raise PolicykdError(f"student view {spec!r} needs indices or a group, like mask=1,3 or mask=velocities")
    groups = named_groups(probe)
    hidden: list[int] = []
    for part in value.split(","):
        part = part.strip()
        if part in groups:
            hidden += groups[part]
        elif part.lstrip("-").isdigit():
            hidden.append(int(part))
        else:
            known = f" (this env has {', '.join(groups)})" if groups else " (this env has no named groups)"
            raise PolicykdError(f"student view {spec!r}: {part!r} is neither an index nor a named group{known}")
    return Mask(spec, tuple(sorted(set(hidden))))


def noise(spec: str, value: str | None, probe: Probe) -> Stage:
    try:
        sigma = float(value or "")
    except ValueError:
        raise PolicykdError(f"student view {spec!r} needs a standard deviation, like noise=0.05") from None
    if not sigma > 0 or not np.isfinite(sigma):
        raise PolicykdError(f"student view {spec!r} must be a positive standard deviation")
    return Noise(spec, sigma)


def delay(spec: str, value: str | None, probe: Probe) -> Stage:
    return Delay(spec, _integer(spec, value, least=1))


def history(spec: str, value: str | None, probe: Probe) -> Stage:
    return History(spec, _integer(spec, value, least=1))


def ram(spec: str, value: str | None, probe: Probe) -> Stage:
    if value:
        raise PolicykdError(f"student view {spec!r} takes no value: write ram")
    if not hasattr(probe.env, "ale"):
        raise PolicykdError(
            f"student view 'ram' needs an Atari env (ALE/...), not {probe.env.spec.id if probe.env.spec else probe.env}"
        )
    return Ram()


_GIVEN: dict[str, object] = {}
"""Functions and wrapper classes the library was given as objects, by their spec: found in this interpreter even where
their module cannot be imported by name (a script's `__main__`, a function defined inside another)."""


def spec_of(view: object) -> str:
    """A `student_obs` item as its spec: a string as it is; a function or an `ObservationWrapper` class as
    `module:qualname` (remembered, so that this interpreter finds it whatever its module)."""
    if isinstance(view, str):
        return view
    if not callable(view):
        raise PolicykdError(f"student_obs item {view!r} is neither a spec string, a function nor a wrapper class")
    spec = f"{getattr(view, '__module__', '?')}:{getattr(view, '__qualname__', repr(view))}"
    _GIVEN[spec] = view
    return spec


def _import(spec: str) -> object:
    if spec in _GIVEN:
        return _GIVEN[spec]
    module, _, name = spec.partition(":")
    try:
        found: object = importlib.import_module(module)
        for part in name.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError) as err:
        raise PolicykdError(f"student view {spec!r} cannot be imported: {err}") from None
    return found


def _as_function(spec: str, found: object, probe: Probe) -> Callable[[np.ndarray, dict], np.ndarray]:
    """A function as it is; a gymnasium `ObservationWrapper` class through its `observation` method, built once around
    the env (stateless wrappers: its `reset` is not called per episode)."""
    if isinstance(found, type) and issubclass(found, gym.ObservationWrapper):
        wrapper = found(probe.env)
        return lambda obs, info: wrapper.observation(obs)
    if not callable(found):
        raise PolicykdError(f"student view {spec!r} is not a function")
    return cast(Callable[[np.ndarray, dict], np.ndarray], found)


def function(spec: str, probe: Probe) -> Stage:
    """`module:function` (or an `ObservationWrapper` class), imported and called once on the env's first observation
    to learn its output's shape."""
    fn = _as_function(spec, _import(spec), probe)
    try:
        out = np.asarray(fn(probe.obs, probe.info), dtype=np.float32)
    except Exception as err:  # the user's code: any failure is theirs to read, in one line
        raise PolicykdError(
            f"student view {spec!r} failed on the env's first observation: {type(err).__name__}: {err}"
        ) from None
    if out.ndim != 1 or not out.size:
        raise PolicykdError(f"student view {spec!r} must return a flat array of numbers, got shape {out.shape}")
    return Function(spec, fn, out.shape)
