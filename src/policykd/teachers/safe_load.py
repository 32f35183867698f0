"""Build an SB3 model from a stranger's zip without unpickling anything from it.

`BaseAlgorithm.load` decodes the cloudpickle blobs in the zip's `data` JSON (spaces,
policy class, policy_kwargs, schedules), and a crafted blob runs code on load. Here the
JSON is read with `json` only: policy_kwargs come from the readable copy SB3 writes next
to each blob, with classes mapped through a short allow-list; spaces come from the live
env; the weights come from `policy.pth` through `torch.load(weights_only=True)`.
Optimizer states and extra tensors (`log_ent_coef`) are skipped: teachers never train.
"""

from __future__ import annotations

import io
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.preprocessing import is_image_space
from stable_baselines3.common.sb2_compat.rmsprop_tf_like import RMSpropTFLike
from stable_baselines3.common.torch_layers import CombinedExtractor, FlattenExtractor, NatureCNN

from policykd.errors import PolicykdError, option
from policykd.networks import SmallCNN
from policykd.sb3_models import ALGOS, read_zip_data

SERIALIZED = ":serialized:"

_ALLOWED_CLASSES: dict[str, type] = {
    f"<class '{cls.__module__}.{cls.__qualname__}'>": cls
    for cls in (
        th.nn.ReLU,
        th.nn.Tanh,
        th.nn.ELU,
        th.nn.LeakyReLU,
        th.nn.SiLU,
        th.nn.GELU,
        th.nn.Sigmoid,
        th.optim.Adam,
        th.optim.RMSprop,
        th.optim.SGD,
        th.optim.AdamW,
        RMSpropTFLike,  # rl-zoo's Atari A2C agents use it
        FlattenExtractor,
        NatureCNN,
        CombinedExtractor,
        SmallCNN,  # policykd's own image students
    )
}
# Students saved before the CNN moved to policykd.networks name it by its old module.
_ALLOWED_CLASSES["<class 'policykd.students.cnn.SmallCNN'>"] = SmallCNN

# Keys SB3 2.x policies no longer take (SB3's own `load` drops `device` too).
_DROPPED_KWARGS = {"device"}

# Plain JSON hyperparameters worth restoring; everything else keeps its default.
_PLAIN_HYPERPARAMETERS = (
    "gamma",
    "gae_lambda",
    "sde_sample_freq",
    "exploration_rate",
    "ent_coef",
    "tau",
    "num_timesteps",
)


def _unsafe(zip_path: Path, what: str) -> PolicykdError:
    return PolicykdError(
        f"teacher {zip_path} cannot be loaded safely: {what}; "
        f"{option('trust_teacher')} would use SB3's full load, which runs the pickles inside the zip"
    )


def _plain(value: Any, zip_path: Path, key: str) -> Any:
    """A readable JSON value, with class reprs mapped through the allow-list."""
    if isinstance(value, dict):
        if SERIALIZED in value or ":type:" in value:
            raise _unsafe(zip_path, f"policy_kwargs[{key!r}] is a pickled object")
        return {k: _plain(v, zip_path, f"{key}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v, zip_path, key) for v in value]
    if isinstance(value, str) and "<" in value:  # str() of a class, function or object holding one
        if value in _ALLOWED_CLASSES:
            return _ALLOWED_CLASSES[value]
        raise _unsafe(
            zip_path,
            f"policy_kwargs[{key!r}] is {' '.join(value.split())[:120]}, which is not on policykd's allow-list",
        )
    return value


def policy_kwargs_from_json(data: dict, zip_path: Path) -> dict[str, object]:
    """policy_kwargs rebuilt from the readable fields beside the pickled blob."""
    saved = data.get("policy_kwargs") or {}
    if not isinstance(saved, dict):
        raise _unsafe(zip_path, "its policy_kwargs are not a dict")
    if SERIALIZED in saved and saved.get(":type:") != "<class 'dict'>":
        raise _unsafe(zip_path, f"its policy_kwargs are a pickled {saved.get(':type:')}")
    kwargs = {
        k: _plain(v, zip_path, k)
        for k, v in saved.items()
        if k not in (":type:", SERIALIZED) and k not in _DROPPED_KWARGS
    }
    net_arch = kwargs.get("net_arch")
    if isinstance(net_arch, list) and net_arch and isinstance(net_arch[0], dict):
        kwargs["net_arch"] = net_arch[0]  # old zoo format; SB3 2.x wants the dict itself
    return kwargs


def _policy_name(algo: str, data: dict, obs_space: spaces.Space, kwargs: dict) -> str:
    """The alias whose class the JSON names (`<function ARSLinearPolicy.__init__ ...>`),
    else the algorithm's own default for this observation space."""
    init = re.match(r"<function (\w+)\.__init__ ", str((data.get("policy_class") or {}).get("__init__", "")))
    aliases = ALGOS[algo].policy_aliases
    named = [alias for alias, cls in aliases.items() if init and cls.__name__ == init.group(1)]
    if named:
        return named[0]
    if isinstance(obs_space, spaces.Dict):
        return "MultiInputPolicy"
    normalized = not kwargs.get("normalize_images", True)
    if is_image_space(obs_space, normalized_image=normalized) and "CnnPolicy" in aliases:
        return "CnnPolicy"
    return "MlpPolicy"


def _read_weights(zip_path: Path) -> dict[str, th.Tensor]:
    """policy.pth through torch's weights-only unpickler (tensors and plain containers only)."""
    try:
        with zipfile.ZipFile(zip_path) as archive:
            buffer = io.BytesIO(archive.read("policy.pth"))
        state = th.load(buffer, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises UnpicklingError, RuntimeError, ... for bad files
        detail = _one_line(err)
        raise PolicykdError(f"teacher {zip_path}: policy.pth cannot be read as plain weights: {detail}") from None
    if not isinstance(state, dict) or not all(isinstance(v, th.Tensor) for v in state.values()):
        raise PolicykdError(f"teacher {zip_path}: policy.pth is not a state dict of tensors")
    return state


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split())[:400]


def _legacy_ars_keys(state: dict[str, th.Tensor]) -> dict[str, th.Tensor]:
    """sb3-contrib < 1.7 built ARS's LinearPolicy head as a bare `nn.Linear` (`action_net.weight`),
    later versions as `nn.Sequential` (`action_net.0.weight`): rl-zoo's ARS agents are in the old
    layout. The tensors are the same; renamed as sb3-contrib's own `ARS.set_parameters` does."""
    return {re.sub(r"^action_net\.(weight|bias)$", r"action_net.0.\1", k): v for k, v in state.items()}


def _load_state(policy: th.nn.Module, state: dict[str, th.Tensor], zip_path: Path) -> None:
    """Load the weights; any missing, unexpected or misshapen tensor is an error naming the zip."""
    try:
        result = policy.load_state_dict(state, strict=False)
    except RuntimeError as err:  # shape mismatch
        detail = _one_line(err)
        raise PolicykdError(f"teacher {zip_path}: its weights do not fit the rebuilt policy: {detail}") from None
    missing = list(result.missing_keys)
    if getattr(policy, "share_features_extractor", False):
        # SB3 < 1.7 saved only `features_extractor.*`; the pi/vf names are aliases of that module.
        missing = [
            k
            for k in missing
            if not (k.startswith(("pi_features_extractor.", "vf_features_extractor.")) and k.split("_", 1)[1] in state)
        ]
    if missing or result.unexpected_keys:
        detail = f"missing {missing[:3]}" if missing else f"unexpected {list(result.unexpected_keys)[:3]}"
        raise PolicykdError(f"teacher {zip_path}: its weights do not fit the rebuilt policy ({detail})")


def load_sb3_safely(
    zip_path: Path, algo: str, observation_space: spaces.Space, action_space: spaces.Space, data: dict | None = None
) -> BaseAlgorithm:
    """An `ALGOS[algo]` model with the zip's weights, built without unpickling its JSON blobs.

    `data` is the zip's JSON when the caller has already read it."""
    zip_path = Path(zip_path)
    data = read_zip_data(zip_path) if data is None else data
    module = str((data.get("policy_class") or {}).get("__module__", ""))
    if not module.startswith(("stable_baselines3.", "sb3_contrib.")):
        raise _unsafe(zip_path, f"its policy class comes from {module or 'an unknown module'!r}, not SB3")
    kwargs = policy_kwargs_from_json(data, zip_path)
    use_sde = data.get("use_sde") is True or kwargs.get("use_sde") is True
    cls = ALGOS[algo]
    policy = _policy_name(algo, data, observation_space, kwargs)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = cls(policy=policy, env=None, device="cpu", _init_setup_model=False)  # type: ignore[call-arg]
            # What `BaseAlgorithm.load` restores from the JSON, minus anything pickled.
            model.observation_space = observation_space
            model.action_space = action_space
            model.n_envs = 1
            model.learning_rate = 0.0
            for key in _PLAIN_HYPERPARAMETERS:
                value = data.get(key)
                if hasattr(model, key) and isinstance(value, (int, float, str)) and not isinstance(value, bool):
                    setattr(model, key, value)
            if isinstance(model, OnPolicyAlgorithm):
                kwargs.pop("use_sde", None)  # passed to the policy by `_setup_model` itself
                model.use_sde = use_sde
                model.n_steps = 1  # a one-step rollout buffer: nothing to allocate
            if isinstance(model, OffPolicyAlgorithm):
                if use_sde:
                    kwargs["use_sde"] = True
                model.use_sde = use_sde
                model.buffer_size = 1  # no replay buffer worth the name
                if hasattr(model, "target_entropy"):
                    assert action_space.shape is not None  # SAC/TQC: a Box
                    model.target_entropy = -float(np.prod(action_space.shape))  # 'auto' would need model.env
            model.policy_kwargs = kwargs
            model._setup_model()
    except PolicykdError:
        raise
    except Exception as err:  # a kwarg this SB3 does not accept, a bad value, ...
        detail = _one_line(err)
        raise PolicykdError(f"teacher {zip_path}: cannot rebuild its {algo.upper()} {policy}: {detail}") from None
    state = _read_weights(zip_path)
    _load_state(model.policy, _legacy_ars_keys(state) if algo == "ars" else state, zip_path)
    if model.use_sde:
        model.policy.reset_noise()  # type: ignore[operator]
    return model
