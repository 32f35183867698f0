"""Env ids and the one wrapper stack that teacher, student and evaluation all share."""

from __future__ import annotations

import difflib
import importlib
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np
from stable_baselines3.common.env_util import make_atari_env, make_vec_env
from stable_baselines3.common.vec_env import VecEnv, VecFrameStack, VecTransposeImage
from stable_baselines3.common.vec_env.base_vec_env import VecEnvObs

from policykd.errors import PolicykdError

# Wrapper classes a teacher's rl-zoo config may name: importing anything else from a
# stranger's config would run code of their choosing.
_WRAPPER_MODULES = ("gymnasium.wrappers", "sb3_contrib.common.wrappers", "stable_baselines3.common.atari_wrappers")


def is_atari(env_id: str) -> bool:
    return env_id.startswith("ALE/") or env_id.endswith("NoFrameskip-v4")


def _register(env_id: str) -> None:
    if is_atari(env_id):
        import ale_py

        gym.register_envs(ale_py)
    else:
        _quiet_known_mujoco_warning()


def _quiet_known_mujoco_warning() -> None:
    """gymnasium's MuJoCo v5 models use `settotalmass`, which MuJoCo 4 calls deprecated on stderr
    each time an env is made: noise that would bury a one-line error. Other warnings still print."""
    try:
        import mujoco
    except ImportError:
        return

    def warn(message: str) -> None:
        if "'settotalmass' is deprecated" not in message:
            sys.stderr.write(f"WARNING: {message}\n")

    mujoco.set_mju_user_warning(warn)


def check_env_id(env_id: str) -> str:
    """Return `env_id` if gymnasium knows it, else a PolicykdError with the closest ids."""
    _register(env_id)
    try:
        gym.spec(env_id)
    except gym.error.Error as err:
        close = difflib.get_close_matches(env_id, list(gym.envs.registry), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise PolicykdError(f"unknown env id {env_id!r} ({type(err).__name__}){hint}") from None
    return env_id


def newest_version(env_id: str) -> str:
    """The newest registered version of an env: HalfCheetah-v3 -> HalfCheetah-v5."""
    _register(env_id)
    namespace, name, _ = gym.envs.registration.parse_env_id(env_id)
    versions = [
        spec.version
        for spec in gym.envs.registry.values()
        if spec.namespace == namespace and spec.name == name and spec.version is not None
    ]
    if not versions:
        return env_id
    return gym.envs.registration.get_env_id(namespace, name, max(versions))


def array_obs(obs: VecEnvObs) -> np.ndarray:
    """A vectorised env's observations as the one array that teachers, students and buffers read. SB3 also
    allows a dict or tuple (Dict and Tuple observation spaces), which policykd does not handle."""
    if not isinstance(obs, np.ndarray):
        raise PolicykdError(
            f"policykd needs Box observations, not a {type(obs).__name__} of them (Dict or Tuple spaces)"
        )
    return obs


def _wrapper_class(name: str) -> Callable[..., gym.Env]:
    name = name.replace("gym.wrappers", "gymnasium.wrappers", 1)
    module, _, cls = name.rpartition(".")
    if not module.startswith(_WRAPPER_MODULES):
        raise PolicykdError(f"env_wrapper {name!r} is not from {', '.join(_WRAPPER_MODULES)}")
    try:
        return getattr(importlib.import_module(module), cls)
    except (ImportError, AttributeError):
        raise PolicykdError(f"env_wrapper {name!r} cannot be imported") from None


def wrapper_from_zoo(spec: object) -> Callable[[gym.Env], gym.Env] | None:
    """rl-zoo's `env_wrapper` (a class path, {path: kwargs}, or a list of those, as its YAML has it) as one callable."""
    if not spec:
        return None
    items = spec if isinstance(spec, list) else [spec]
    chain: list[tuple[Callable, dict]] = []
    for item in items:
        if isinstance(item, dict):
            ((name, kwargs),) = item.items()
            chain.append((_wrapper_class(name), kwargs or {}))
        else:
            chain.append((_wrapper_class(str(item)), {}))

    def wrap(env: gym.Env) -> gym.Env:
        for cls, kwargs in chain:
            env = cls(env, **kwargs)
        return env

    return wrap


@dataclass(frozen=True)
class EnvFactory:
    """Builds the vectorised env; teacher, student and evaluation get the identical stack."""

    env_id: str
    env_wrapper: object = None  # rl-zoo `env_wrapper` spec: see `wrapper_from_zoo`
    env_kwargs: dict = field(default_factory=dict)
    frame_stack: int = 4  # Atari only

    def make(self, n_envs: int, seed: int) -> VecEnv:
        if is_atari(self.env_id):
            _register(self.env_id)
            kwargs = {"frameskip": 1, **self.env_kwargs}
            venv = make_atari_env(self.env_id, n_envs=n_envs, seed=seed, env_kwargs=kwargs)
            return VecTransposeImage(VecFrameStack(venv, n_stack=self.frame_stack))
        return make_vec_env(
            self.env_id,
            n_envs=n_envs,
            seed=seed,
            wrapper_class=wrapper_from_zoo(self.env_wrapper),
            env_kwargs=self.env_kwargs or None,
        )

    def spaces(self) -> tuple[gym.Space, gym.Space]:
        """Observation and action spaces as the policy sees them, without stepping the env."""
        venv = self.make(1, 0)
        try:
            return venv.observation_space, venv.action_space
        finally:
            venv.close()
