"""What an SB3 model zip is: its algorithm (read from the zip, never asked for), its saved
spaces, and how many parameters its acting network has."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
from gymnasium import spaces
from sb3_contrib import ARS, QRDQN, TQC, TRPO, RecurrentPPO
from stable_baselines3 import A2C, DDPG, DQN, PPO, SAC, TD3
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.policies import ActorCriticPolicy, BasePolicy
from torch import nn

from policykd.errors import PolicykdError

ALGOS: dict[str, type[BaseAlgorithm]] = {
    "ppo": PPO,
    "a2c": A2C,
    "trpo": TRPO,
    "dqn": DQN,
    "qrdqn": QRDQN,
    "sac": SAC,
    "tqc": TQC,
    "td3": TD3,
    "ddpg": DDPG,
    "ars": ARS,
    "recurrent-ppo": RecurrentPPO,
}

# Module of the saved policy class -> algorithm. Actor-critic policies are shared by
# PPO, A2C and TRPO, so those are told apart by the hyperparameters each one saves.
_POLICY_MODULES = {
    "stable_baselines3.dqn.policies": "dqn",
    "sb3_contrib.qrdqn.policies": "qrdqn",
    "stable_baselines3.sac.policies": "sac",
    "sb3_contrib.tqc.policies": "tqc",
    "stable_baselines3.td3.policies": "td3",
    "sb3_contrib.ars.policies": "ars",
    "sb3_contrib.common.recurrent.policies": "recurrent-ppo",
}


def read_zip_data(path: Path) -> dict:
    """The JSON `data` member of an SB3 zip, read without unpickling anything."""
    if not path.is_file():
        raise PolicykdError(f"teacher file not found: {path}")
    if not zipfile.is_zipfile(path):
        raise PolicykdError(f"{path} is not a zip file (corrupt or not an SB3 model)")
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            if "data" not in names or "policy.pth" not in names:
                raise PolicykdError(f"{path} is a zip but not a Stable-Baselines3 model (no 'data' and 'policy.pth')")
            return json.loads(archive.read("data"))
    except (zipfile.BadZipFile, json.JSONDecodeError, UnicodeDecodeError, OSError) as err:
        raise PolicykdError(f"{path} is a corrupt SB3 model zip: {err}") from None


def detect_algo(data: dict) -> str:
    """The algorithm that saved a zip, from its policy class module and hyperparameters."""
    module = data.get("policy_class", {}).get("__module__", "")
    if module in _POLICY_MODULES:
        algo = _POLICY_MODULES[module]
        if algo == "td3" and data.get("policy_delay") == 1 and data.get("target_noise_clip") == 0.0:
            return "ddpg"
        return algo
    if module == "stable_baselines3.common.policies" or "gae_lambda" in data:
        if "cg_max_steps" in data:
            return "trpo"
        return "ppo" if "clip_range" in data else "a2c"
    raise PolicykdError(
        f"unsupported policy class module {module or '(unknown)'!r}: policykd reads " + ", ".join(sorted(ALGOS))
    )


def _box(shape, dtype) -> str:
    return f"Box{tuple(int(n) for n in shape)} {dtype}"


def saved_space(data: dict, key: str) -> str:
    """A short description of a space saved in the zip JSON, e.g. 'Box(4,) float32' or 'Discrete(2)'."""
    fields = data.get(key, {})
    kind = fields.get(":type:", "").rsplit(".", 1)[-1].rstrip("'>")
    if kind == "Discrete":
        return f"Discrete({fields.get('n')})"
    try:
        shape = json.loads(str(fields.get("shape", fields.get("_shape", "null"))))
    except json.JSONDecodeError:
        shape = None
    return _box(shape, fields.get("dtype", "?")) if kind == "Box" and shape is not None else kind or "unknown"


def describe_space(space: spaces.Space) -> str:
    """The same short description for a live gymnasium space."""
    if isinstance(space, spaces.Discrete):
        return f"Discrete({int(space.n)})"
    if isinstance(space, spaces.Box):
        return _box(space.shape, space.dtype)
    return repr(space)


def check_spaces(data: dict, obs_space: spaces.Space, action_space: spaces.Space, where: str, env_id: str) -> None:
    """Refuse a teacher whose saved spaces do not match the env, naming both."""
    for key, live in (("observation_space", obs_space), ("action_space", action_space)):
        saved = saved_space(data, key)
        if saved.split()[0] != describe_space(live).split()[0]:  # shapes and n; dtypes may differ
            raise PolicykdError(
                f"{where}: its {key.replace('_', ' ')} {saved} does not match {env_id}'s {describe_space(live)}"
            )


def acting_params(policy: BasePolicy) -> int:
    """Parameters the policy needs to act: the actor, or the Q-network (no critic, no target net)."""
    if isinstance(policy, ActorCriticPolicy):
        value_parts = [policy.mlp_extractor.value_net, policy.value_net]
        recurrent = (getattr(policy, "lstm_critic", None), getattr(policy, "critic", None))  # RecurrentPPO's critic
        value_parts += [part for part in recurrent if isinstance(part, nn.Module)]
        if not policy.share_features_extractor:
            value_parts.append(policy.vf_features_extractor)
        value = sum(p.numel() for part in value_parts for p in part.parameters())
        return sum(p.numel() for p in policy.parameters()) - value
    for name in ("q_net", "quantile_net", "actor"):
        part = getattr(policy, name, None)
        if part is not None:
            return sum(p.numel() for p in part.parameters())
    return sum(p.numel() for p in policy.parameters())


def uses_images(space: spaces.Space) -> bool:
    return isinstance(space, spaces.Box) and len(space.shape) == 3 and space.dtype == np.uint8
