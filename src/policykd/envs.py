"""Env ids and the one wrapper stack that teacher, student and evaluation all share."""

from __future__ import annotations

import difflib
import importlib
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, cast

import gymnasium as gym
import numpy as np
from stable_baselines3.common.env_util import make_atari_env, make_vec_env
from stable_baselines3.common.vec_env import VecEnv, VecFrameStack, VecTransposeImage
from stable_baselines3.common.vec_env.base_vec_env import VecEnvObs

from policykd.constants import AtariStack
from policykd.errors import PolicykdError
from policykd.fields import class_path, key_values, spelled
from policykd.views import VecView, View

# Wrapper classes a teacher's rl-zoo config may name: importing anything else from a
# stranger's config would run code of their choosing.
_WRAPPER_MODULES = ("gymnasium.wrappers", "sb3_contrib.common.wrappers", "stable_baselines3.common.atari_wrappers")


def split_env_id(env_id: str) -> tuple[str | None, str]:
    """`mymod:Point-v0` -> ("mymod", "Point-v0"), gymnasium's spelling of an env that importing `mymod` registers;
    a plain id has no module."""
    module, colon, name = env_id.partition(":")
    return (module, name) if colon else (None, env_id)


def is_atari(env_id: str) -> bool:
    name = split_env_id(env_id)[1]
    return name.startswith("ALE/") or name.endswith("NoFrameskip-v4")


def folder_name(env_id: str) -> str:
    """An env id as a file or folder name (runs/<env>, rl-zoo's <ENV>_1): ALE/Pong-v5 -> ALE-Pong-v5, and
    mymod:Point-v0 -> Point-v0 (a colon is a drive on Windows and a separator in PATH-like lists; rl-zoo names the
    env without its module too, which `--gym-packages` imports)."""
    return split_env_id(env_id)[1].replace("/", "-")


def _import_env_module(env_id: str) -> str:
    """Import the module of a `module:EnvId` (it registers the env, as `gym.make` would import it); the bare id."""
    module, name = split_env_id(env_id)
    if module is not None:
        try:
            importlib.import_module(module)
        except Exception as err:  # the user's module: any error in it means the env cannot be made
            raise PolicykdError(f"env module {module!r} cannot be imported: {type(err).__name__}: {err}") from None
    return name


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


def _candidates(module: str | None) -> list[str]:
    """The env ids to suggest for a mistyped one: those whose entry point lives in the user's `module` (an
    ALE or MuJoCo id is no answer to a typo in their own env's name), else every registered id."""
    ids = list(gym.envs.registry)
    if module is None:
        return ids

    def source(spec: gym.envs.registration.EnvSpec) -> str:
        entry = spec.entry_point
        return entry if isinstance(entry, str) else getattr(entry, "__module__", "")

    own = [i for i in ids if source(gym.envs.registry[i]).split(":")[0].startswith(module)]
    return own or ids


def check_env_id(env_id: str, options: EnvOptions | None = None) -> str:
    """Return `env_id` if gymnasium knows it (importing the module of a `module:EnvId` first), else a PolicykdError
    with the closest ids; then the command's env options (`options`), if any, are checked by making the env once
    with them."""
    module, _ = split_env_id(env_id)
    name = _import_env_module(env_id)
    _register(name)
    try:
        gym.spec(name)
    except gym.error.Error as err:
        close = difflib.get_close_matches(name, _candidates(module), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        if module is not None:
            raise PolicykdError(f"env module {module!r} registers no env {name!r}{hint}") from None
        raise PolicykdError(f"unknown env id {env_id!r} ({type(err).__name__}){hint}") from None
    check_env_options(env_id, options or EnvOptions())
    return env_id


def newest_version(env_id: str) -> str:
    """The newest registered version of an env: HalfCheetah-v3 -> HalfCheetah-v5 (mymod:Point-v0 -> mymod:Point-v1)."""
    module, _ = split_env_id(env_id)
    name = _import_env_module(env_id)
    _register(name)
    namespace, bare, _ = gym.envs.registration.parse_env_id(name)
    versions = [
        spec.version
        for spec in gym.envs.registry.values()
        if spec.namespace == namespace and spec.name == bare and spec.version is not None
    ]
    if not versions:
        return env_id
    newest = gym.envs.registration.get_env_id(namespace, bare, max(versions))
    return newest if module is None else f"{module}:{newest}"


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


@dataclass(frozen=True)
class EnvOptions:
    """What the user adds to an env from the command line (`--env-kwargs`, `--env-wrapper`): keyword arguments for
    `gym.make` and their own wrapper classes. Unlike a stranger's rl-zoo config, whose wrappers must come from an
    allow-list, these are the user's own choice, so any importable class is taken."""

    kwargs: Mapping[str, object] = field(default_factory=dict)
    wrappers: tuple[str, ...] = ()
    atari_stack: AtariStack = "sb3"
    """Which Atari stack steps the envs (`EnvFactory.atari_stack`)."""

    def __bool__(self) -> bool:
        """Whether there is anything to check by making the env (the stack choice needs no check): `options or
        other` would drop the stack, so callers that fall back to other options keep it (`with_saved`)."""
        return bool(self.kwargs or self.wrappers)

    def with_saved(self, saved: EnvOptions) -> EnvOptions:
        """These options where they name kwargs or wrappers, else `saved`'s (a run's, an export's), with this stack."""
        return self if self else replace(saved, atari_stack=self.atari_stack)

    @classmethod
    def parse(cls, kwargs: object, wrappers: object, atari_stack: AtariStack = "sb3") -> EnvOptions:
        """`--env-kwargs` KEY=VALUE specs and `--env-wrapper` class paths (a tuple, a list, or None) as options."""
        specs = tuple(cast("tuple[str, ...]", kwargs or ()))
        own = tuple(cast("tuple[str, ...]", wrappers or ()))
        return cls(key_values(specs, spelled("env_kwargs")), own, atari_stack)

    @classmethod
    def of(cls, settings: object) -> EnvOptions:
        """A settings object's `env_kwargs`, `env_wrappers` and `atari_stack` (defaults for one without them)."""
        return cls.parse(
            getattr(settings, "env_kwargs", ()),
            getattr(settings, "env_wrappers", ()),
            getattr(settings, "atari_stack", "sb3"),
        )


def user_wrapper(spec: str) -> type[gym.Wrapper]:
    """The class a `--env-wrapper module:Class` names, imported (a one-line error if it cannot be, or is no class)."""
    named = f"{spelled('env_wrappers', '--env-wrapper')} {spec!r}"
    path = class_path(spec)
    if path is None:
        raise PolicykdError(f"{named} is not module:Class")
    module, name = path
    try:
        cls = getattr(importlib.import_module(module), name)
    except Exception as err:  # the user's module: any error in it means the wrapper cannot be used
        raise PolicykdError(f"{named} cannot be imported: {type(err).__name__}: {err}") from None
    if not isinstance(cls, type):
        raise PolicykdError(f"{named} is not a class but a {type(cls).__name__}")
    return cls


def check_env_options(env_id: str, options: EnvOptions) -> None:
    """The wrappers import, the env takes the keyword arguments and the wrappers take the env: the env is made and
    wrapped once (gymnasium raises TypeError for an argument its constructor does not take), so a typo fails before
    any work."""
    if not options:
        return
    classes = {spec: user_wrapper(spec) for spec in options.wrappers}
    kwargs: dict[str, Any] = dict(options.kwargs)
    try:
        env = gym.make(env_id, **kwargs)
    except TypeError as err:
        bad = [key for key in options.kwargs if repr(key) in str(err)]
        what = f"does not take {bad[0]!r}" if bad else f"refuses them ({err})"
        raise PolicykdError(
            f"{spelled('env_kwargs')} {', '.join(f'{k}={v!r}' for k, v in options.kwargs.items())}: {env_id} {what}"
        ) from None
    try:
        for spec, cls in classes.items():
            try:
                env = cls(env)
            except Exception as err:  # the user's class: whatever it raises, it cannot wrap this env
                named = f"{spelled('env_wrappers', '--env-wrapper')} {spec!r}"
                raise PolicykdError(f"{named} cannot wrap {env_id}: {type(err).__name__}: {err}") from None
    finally:
        env.close()


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


def _wrapper_chain(zoo_spec: object, own: tuple[str, ...]) -> Callable[[gym.Env], gym.Env] | None:
    """A teacher's rl-zoo `env_wrapper` (allow-listed), then the user's own classes, in order."""
    zoo = wrapper_from_zoo(zoo_spec)
    classes = [user_wrapper(spec) for spec in own]
    if zoo is None and not classes:
        return None

    def wrap(env: gym.Env) -> gym.Env:
        env = zoo(env) if zoo is not None else env
        for cls in classes:
            env = cls(env)
        return env

    return wrap


@dataclass(frozen=True)
class EnvFactory:
    """Builds the vectorised env; teacher, student and evaluation get the identical stack."""

    env_id: str
    env_wrapper: object = None  # rl-zoo `env_wrapper` spec: see `wrapper_from_zoo`
    env_kwargs: dict = field(default_factory=dict)
    frame_stack: int = 4  # Atari only
    view: View | None = None
    """The student's view (policykd.views): None for the teacher's full observation."""
    wrappers: tuple[str, ...] = ()
    """The user's own wrapper classes (`--env-wrapper module:Class`), applied after `env_wrapper`."""
    atari_stack: AtariStack = "sb3"
    """Atari only: "native" steps ale-py's own vector env (`policykd.native_atari`) where it plays the env as SB3's
    stack does, "sb3" always steps SB3's `make_atari_env` stack."""

    @property
    def options(self) -> EnvOptions:
        """What another model of these envs is loaded with to step the same ones (config's kwargs included)."""
        return EnvOptions(self.env_kwargs, self.wrappers, self.atari_stack)

    @property
    def native(self) -> bool:
        """Whether ale-py's vector env steps these envs: asked for, no wrapper of the user's (they wrap one gymnasium
        env), a view that reads only observations, and an env it plays as SB3's stack does (`native_atari.fits`)."""
        if self.atari_stack != "native" or not is_atari(self.env_id) or self.wrappers:
            return False
        if self.view is not None and self.view.reads_env:
            return False
        from policykd import native_atari

        _register(self.env_id)
        return native_atari.fits(split_env_id(self.env_id)[1], {"frameskip": 1, **self.env_kwargs})

    def make(self, n_envs: int, seed: int) -> VecEnv:
        """`n_envs` envs seeded `seed`, `seed + 1`, ...; with a view, the student's observations of them (the
        teacher's are the wrapper's `full_obs`)."""
        venv = self._make(n_envs, seed)
        return venv if self.view is None else VecView(venv, self.view, seed)

    def _make(self, n_envs: int, seed: int) -> VecEnv:
        if self.native:
            from policykd.native_atari import NativeAtariVecEnv

            kwargs = {"frameskip": 1, **self.env_kwargs}
            return NativeAtariVecEnv(
                split_env_id(self.env_id)[1],
                n_envs,
                seed,
                frame_stack=self.frame_stack,
                env_kwargs=kwargs,
                threads=_cores(),
            )
        if is_atari(self.env_id):
            _register(self.env_id)
            kwargs = {"frameskip": 1, **self.env_kwargs}
            venv = make_atari_env(self.env_id, n_envs=n_envs, seed=seed, env_kwargs=kwargs)
            return VecTransposeImage(VecFrameStack(venv, n_stack=self.frame_stack))
        return make_vec_env(
            self.env_id,
            n_envs=n_envs,
            seed=seed,
            wrapper_class=_wrapper_chain(self.env_wrapper, self.wrappers),
            env_kwargs=self.env_kwargs or None,
        )

    def spaces(self) -> tuple[gym.Space, gym.Space]:
        """Observation and action spaces as the policy sees them, without stepping the env."""
        venv = self.make(1, 0)
        try:
            return venv.observation_space, venv.action_space
        finally:
            venv.close()


def env_factory(
    env_id: str,
    *,
    env_wrapper: object = None,
    env_kwargs: Mapping[str, object] | None = None,
    frame_stack: int = 4,
    options: EnvOptions | None = None,
) -> EnvFactory:
    """The factory for `env_id` as a teacher's config has it (`env_wrapper`, `env_kwargs`, `frame_stack`), with the
    command's env options on top (`options`: `--env-kwargs`, `--env-wrapper`): its keyword arguments override the
    config's, its wrappers follow the config's. Every other factory of a run derives from the teacher's (the student's
    view, evaluation, RL), so options given here reach all of them."""
    options = options if options is not None else EnvOptions()  # one without kwargs or wrappers still names a stack
    kwargs = {**(env_kwargs or {}), **options.kwargs}
    return EnvFactory(
        env_id, env_wrapper, kwargs, frame_stack, wrappers=options.wrappers, atari_stack=options.atari_stack
    )


def _cores() -> int:
    """The cores this process may run on (a container's CPU set, not the host's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
