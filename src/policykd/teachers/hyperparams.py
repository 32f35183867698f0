"""rl-baselines3-zoo's tuned hyperparameters (`envs/teachers.yaml`), turned into SB3 arguments.

The file keeps rl-zoo's notation so it can be checked against the zoo line by line; this
module translates it the way rl-zoo's ExpManager does (`lin_` schedules, `normalize`,
`noise_type`/`noise_std`, list `train_freq`), except that `policy_kwargs` are plain
mappings with activation functions named, never strings passed to `eval`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

import numpy as np
import yaml
from gymnasium import spaces
from gymnasium.envs.registration import parse_env_id
from stable_baselines3.common.noise import NormalActionNoise, OrnsteinUhlenbeckActionNoise
from stable_baselines3.common.utils import LinearSchedule
from torch import nn

from policykd.envs import split_env_id
from policykd.errors import PolicykdError, option
from policykd.resources import resource_path

HYPERPARAMS_FILE = resource_path("envs", "teachers.yaml")
CONTINUOUS_ONLY = {"sac", "td3", "tqc"}

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "elu": nn.ELU,
    "leaky_relu": nn.LeakyReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
}
_SCHEDULED = ("learning_rate", "clip_range", "clip_range_vf")


class VecNormalizeKwargs(TypedDict, total=False):
    """What rl-zoo's `normalize` sets of VecNormalize's arguments."""

    norm_obs: bool
    norm_reward: bool
    gamma: float


@dataclass(frozen=True)
class ZooHyperparams:
    """One env's entry for one algorithm, split into what rl-zoo handles outside the constructor."""

    key: str  # the entry in teachers.yaml that matched (env id or env name)
    raw: dict[str, Any]  # as written in the file: what config.yml and CARD.md report
    policy: str
    n_timesteps: int
    n_envs: int
    normalize: VecNormalizeKwargs | None  # None when not normalised, None when not normalised
    model_kwargs: dict[str, Any] = field(default_factory=dict)  # still without action noise


def read_table(path: Path = HYPERPARAMS_FILE) -> dict[str, dict[str, dict[str, Any]]]:
    try:
        table = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise PolicykdError(f"cannot read hyperparameters from {path}: {err}") from None
    if not isinstance(table, dict):
        raise PolicykdError(f"{path} should map algorithms to envs")
    return table


def check_action_space(algo: str, env_id: str, action_space: spaces.Space) -> None:
    """SAC, TD3 and TQC act in continuous (Box) action spaces only."""
    if algo in CONTINUOUS_ONLY and not isinstance(action_space, spaces.Box):
        from policykd.sb3_models import describe_space

        raise PolicykdError(
            f"{algo} needs a continuous (Box) action space, but {env_id}'s action space is "
            f"{describe_space(action_space)}; use {option('algo', 'ppo')}"
        )


def lookup(algo: str, env_id: str, path: Path = HYPERPARAMS_FILE) -> ZooHyperparams:
    """The entry for `env_id` (exact id first, then its name without version, then `atari` for ALE/*) under `algo`;
    a `module:EnvId` is looked up as EnvId."""
    env_id = split_env_id(env_id)[1]
    entries = read_table(path).get(algo) or {}
    namespace, name, _ = parse_env_id(env_id)
    family = f"{namespace}/{name}" if namespace else name
    atari = "atari" if namespace == "ALE" and "atari" in entries else None
    key = env_id if env_id in entries else family if family in entries else atari
    if key is None:
        have = ", ".join(sorted(entries)) or "none"
        raise PolicykdError(
            f"no rl-zoo hyperparameters for {algo} on {env_id} in {path.parent.name}/{path.name} "
            f"({algo} has: {have}); add an entry there"
        )
    return translate(key, dict(entries[key]), path)


def translate(key: str, raw: dict[str, Any], path: Path = HYPERPARAMS_FILE) -> ZooHyperparams:
    """rl-zoo notation -> constructor kwargs (what ExpManager._preprocess_hyperparams does)."""
    kwargs = dict(raw)
    where = f"{path.name} [{key}]"
    normalize = _normalize(kwargs.pop("normalize", False), kwargs.get("gamma"), where)
    policy = str(kwargs.pop("policy", "MlpPolicy"))
    n_timesteps = int(float(kwargs.pop("n_timesteps", 0)))
    n_envs = int(kwargs.pop("n_envs", 1))
    for name in _SCHEDULED:
        if name in kwargs:
            kwargs[name] = schedule(kwargs[name], f"{where} {name}")
    if isinstance(kwargs.get("train_freq"), list):
        kwargs["train_freq"] = tuple(kwargs["train_freq"])
    if "policy_kwargs" in kwargs:
        kwargs["policy_kwargs"] = policy_kwargs(kwargs["policy_kwargs"], where)
    return ZooHyperparams(key, raw, policy, n_timesteps, n_envs, normalize, kwargs)


def schedule(value: Any, where: str) -> LinearSchedule | float:
    """`lin_<x>` -> x decaying linearly to 0 over the run (rl-zoo's linear_schedule); numbers stay."""
    if isinstance(value, str):
        kind, _, number = value.partition("_")
        try:
            start = float(number)
        except ValueError:
            start = None
        if kind != "lin" or start is None:
            raise PolicykdError(f"{where}: schedule {value!r} is not a number or lin_<number>")
        return LinearSchedule(start, 0.0, 1.0)
    return float(value)


def policy_kwargs(spec: object, where: str) -> dict[str, Any]:
    if not isinstance(spec, dict):
        raise PolicykdError(f"{where}: policy_kwargs must be a mapping (not a dict(...) string), got {spec!r}")
    kwargs = dict(spec)
    if "activation_fn" in kwargs:
        name = str(kwargs["activation_fn"]).lower().removeprefix("nn.")
        if name not in ACTIVATIONS:
            raise PolicykdError(
                f"{where}: activation_fn {kwargs['activation_fn']!r}: choose from {', '.join(ACTIVATIONS)}"
            )
        kwargs["activation_fn"] = ACTIVATIONS[name]
    return kwargs


def _normalize(value: object, gamma: float | None, where: str) -> VecNormalizeKwargs | None:
    """rl-zoo: `true` normalises observations and rewards; a mapping picks; VecNormalize uses
    the algorithm's discount (set later from the model when the entry gives no gamma)."""
    if value is False or value is None:
        return None
    options: VecNormalizeKwargs = {}
    if isinstance(value, dict) and set(value) <= {"norm_obs", "norm_reward"}:
        for k, v in value.items():  # in the file's order, as the card prints them
            if k == "norm_obs":
                options["norm_obs"] = bool(v)
            else:
                options["norm_reward"] = bool(v)
    elif value is not True:
        raise PolicykdError(
            f"{where}: normalize must be true, false or {{norm_obs: .., norm_reward: ..}}, got {value!r}"
        )
    if gamma is not None:
        options["gamma"] = float(gamma)
    return options


def action_noise(kwargs: dict[str, Any], action_space: spaces.Space) -> dict[str, Any]:
    """`noise_type`/`noise_std` -> SB3 action noise, sized for the env's action space."""
    kwargs = dict(kwargs)
    noise_type = kwargs.pop("noise_type", None)
    noise_std = kwargs.pop("noise_std", None)
    if noise_type is None:
        return kwargs
    assert action_space.shape is not None  # action noise: off-policy continuous control, a Box
    n_actions = int(np.prod(action_space.shape))
    mean, sigma = np.zeros(n_actions), float(noise_std) * np.ones(n_actions)
    if "normal" in noise_type:
        kwargs["action_noise"] = NormalActionNoise(mean=mean, sigma=sigma)
    elif "ornstein-uhlenbeck" in noise_type:
        kwargs["action_noise"] = OrnsteinUhlenbeckActionNoise(mean=mean, sigma=sigma)
    else:
        raise PolicykdError(f"unknown noise_type {noise_type!r}: normal or ornstein-uhlenbeck")
    return kwargs


def train_freq_steps(train_freq: int | tuple[int, str]) -> int:
    """Env steps per off-policy rollout for SB3's `train_freq` (an int, or (n, "step"|"episode"); an episode-based
    one counts as 1: the rollout length is not known in steps)."""
    if isinstance(train_freq, tuple):
        return int(train_freq[0]) if train_freq[1] == "step" else 1
    return int(train_freq)
