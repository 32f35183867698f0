"""rl-baselines3-zoo run folders: `<algo>/<ENV>_1/<ENV>.zip`, `<ENV>/config.yml`, `vecnormalize.pkl`.

Published agents were saved with the legacy `gym` package: their config is read with a
YAML loader that only understands rl-zoo's OrderedDict tag, and their VecNormalize
statistics through `safe_pickle`, so neither `gym` nor a stranger's code is needed.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from stable_baselines3.common.vec_env import VecEnv, VecNormalize

from policykd.errors import PolicykdError
from policykd.teachers.safe_pickle import safe_load

ZOO_ENV_VAR = "POLICYKD_ZOO_FOLDER"
DEFAULT_ZOO_FOLDER = Path.home() / ".cache" / "policykd" / "rl-zoo"


class _ZooLoader(yaml.SafeLoader):
    """SafeLoader plus rl-zoo's `!!python/object/apply:collections.OrderedDict` (a list of pairs)."""


_ZooLoader.add_constructor(
    "tag:yaml.org,2002:python/object/apply:collections.OrderedDict",
    lambda loader, node: dict(loader.construct_sequence(node.value[0], deep=True)),
)


def read_zoo_config(path: Path) -> dict[str, Any]:
    try:
        with open(path) as handle:
            config = yaml.load(handle, Loader=_ZooLoader)
    except yaml.YAMLError as err:
        raise PolicykdError(f"{path} is not a readable rl-zoo config.yml: {str(err).splitlines()[0]}") from None
    if not isinstance(config, dict):
        raise PolicykdError(f"{path} is not an rl-zoo config (expected a mapping)")
    return config


@dataclass(frozen=True)
class ZooRun:
    """One rl-zoo run folder, resolved."""

    folder: Path
    env_name: str
    zip_path: Path
    config: dict[str, Any]
    vecnormalize: Path | None


def is_zoo_folder(folder: Path) -> bool:
    env_name = folder.name.rsplit("_", 1)[0]
    return (folder / env_name).is_dir() or (folder / f"{env_name}.zip").is_file()


def read_zoo_run(folder: Path) -> ZooRun:
    env_name = folder.name.rsplit("_", 1)[0]
    candidates = [folder / f"{env_name}.zip", folder / "best_model.zip"]
    zip_path = next((p for p in candidates if p.is_file()), None)
    if zip_path is None:
        raise PolicykdError(f"rl-zoo folder {folder} has no {env_name}.zip (nor best_model.zip)")
    config_path = folder / env_name / "config.yml"
    config = read_zoo_config(config_path) if config_path.is_file() else {}
    vecnorm = folder / env_name / "vecnormalize.pkl"
    return ZooRun(folder, env_name, zip_path, config, vecnorm if vecnorm.is_file() else None)


def zoo_folder(explicit: str | Path | None = None) -> Path:
    return Path(explicit or os.environ.get(ZOO_ENV_VAR) or DEFAULT_ZOO_FOLDER).expanduser()


def resolve_zoo_spec(spec: str, folder: str | Path | None = None) -> Path:
    """`zoo:<algo>/<ENV>` -> its run folder, downloaded from the hub if it is not on disk."""
    algo, _, env_name = spec.removeprefix("zoo:").partition("/")
    if not algo or not env_name:
        raise PolicykdError(f"teacher spec {spec!r} should look like zoo:<algo>/<ENV>, e.g. zoo:ppo/CartPole-v1")
    root = zoo_folder(folder)
    run = root / algo.lower() / f"{env_name}_1"
    if (run / f"{env_name}.zip").is_file():
        return run
    return download_zoo_run(algo.lower(), env_name, run)


def download_zoo_run(algo: str, env_name: str, dest: Path) -> Path:
    """Fetch `sb3/<algo>-<ENV>` from the Hugging Face hub into rl-zoo layout at `dest`."""
    import socket

    from huggingface_hub import hf_hub_download
    from huggingface_hub.utils import logging as hub_logging

    repo = f"sb3/{algo}-{env_name}"
    try:  # offline: fail in one line at once, not after the client's retries
        socket.getaddrinfo("huggingface.co", 443)
    except OSError as err:
        raise PolicykdError(
            f"cannot download zoo:{algo}/{env_name} from the Hugging Face hub (offline: {err.strerror or err}); "
            f"put the rl-zoo run folder under --zoo-folder or ${ZOO_ENV_VAR}"
        ) from None
    hub_logging.set_verbosity_error()
    try:
        model = hf_hub_download(repo, f"{algo}-{env_name}.zip")
        config = hf_hub_download(repo, "config.yml")
    except Exception as err:  # the hub client raises many types when offline
        reason = str(err).splitlines()[0][:120] if str(err) else type(err).__name__
        raise PolicykdError(
            f"cannot download zoo:{algo}/{env_name} from the Hugging Face hub ({reason}); "
            f"offline? put the rl-zoo run folder under --zoo-folder or ${ZOO_ENV_VAR}"
        ) from None
    (dest / env_name).mkdir(parents=True, exist_ok=True)
    shutil.copyfile(model, dest / f"{env_name}.zip")
    shutil.copyfile(config, dest / env_name / "config.yml")
    try:
        shutil.copyfile(hf_hub_download(repo, "vec_normalize.pkl"), dest / env_name / "vecnormalize.pkl")
    except Exception:  # most agents have no VecNormalize
        pass
    return dest


def load_vecnormalize(path: Path, venv: VecEnv) -> VecNormalize:
    """A frozen VecNormalize over `venv` carrying the statistics saved at `path` (any SB3/gym era)."""
    saved = safe_load(path)
    obs_rms = getattr(saved, "obs_rms", None)
    if obs_rms is None:
        raise PolicykdError(f"{path} holds no observation statistics (obs_rms)")
    shape = getattr(obs_rms, "mean", None)
    if shape is None or tuple(shape.shape) != tuple(venv.observation_space.shape):
        raise PolicykdError(
            f"{path}: statistics of shape {None if shape is None else shape.shape} do not match "
            f"the env's observations {venv.observation_space.shape}"
        )
    normalizer = VecNormalize(
        venv,
        training=False,
        norm_obs=bool(getattr(saved, "norm_obs", True)),
        norm_reward=False,
        clip_obs=float(getattr(saved, "clip_obs", 10.0)),
        gamma=float(getattr(saved, "gamma", 0.99)),
        epsilon=float(getattr(saved, "epsilon", 1e-8)),
    )
    normalizer.obs_rms = obs_rms
    if getattr(saved, "ret_rms", None) is not None:
        normalizer.ret_rms = saved.ret_rms
    return normalizer
