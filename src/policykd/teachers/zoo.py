"""rl-baselines3-zoo run folders: `<algo>/<ENV>_1/<ENV>.zip`, `<ENV>/config.yml`, `<ENV>/args.yml`,
`<ENV>/vecnormalize.pkl`: read (teachers), downloaded (`zoo:` specs) and written (`write_zoo_run`,
for students and trained teachers, so `python -m rl_zoo3.enjoy` plays them).

Published agents were saved with the legacy `gym` package: their config is read with a
YAML loader that only understands rl-zoo's OrderedDict tag, and their VecNormalize
statistics through `safe_pickle`, so neither `gym` nor a stranger's code is needed.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import yaml
from stable_baselines3.common.vec_env import VecEnv, VecNormalize

from policykd.envs import folder_name, is_atari
from policykd.errors import PolicykdError
from policykd.fields import spelled
from policykd.hub import hub_access
from policykd.storage import atomic_write, atomic_write_text
from policykd.teachers.safe_pickle import safe_load

if TYPE_CHECKING:
    from stable_baselines3.common.base_class import BaseAlgorithm

ZOO_ENV_VAR = "POLICYKD_ZOO_FOLDER"
DEFAULT_ZOO_FOLDER = Path.home() / ".cache" / "policykd" / "rl-zoo"


class _ZooLoader(yaml.SafeLoader):
    """SafeLoader plus rl-zoo's `!!python/object/apply:collections.OrderedDict` (a list of pairs)."""


_ZooLoader.add_constructor(
    "tag:yaml.org,2002:python/object/apply:collections.OrderedDict",
    lambda loader, node: dict(loader.construct_sequence(node.value[0], deep=True)),
)


def read_zoo_config(path: Path) -> dict[str, object]:
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
    config: dict[str, object]
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
    """Fetch `sb3/<algo>-<ENV>` from the Hugging Face hub into rl-zoo layout at `dest`; the zip is
    copied in last, and atomically, because its presence is what marks the folder complete."""
    from huggingface_hub import hf_hub_download

    repo = f"sb3/{algo}-{env_name}"
    where = f"put the rl-zoo run folder under {spelled('zoo_folder')} or ${ZOO_ENV_VAR}"

    def offline(why: str) -> str:
        return f"cannot download zoo:{algo}/{env_name} from the Hugging Face hub (offline: {why}); {where}"

    with hub_access(offline):
        try:
            model = hf_hub_download(repo, f"{algo}-{env_name}.zip")
            config = hf_hub_download(repo, "config.yml")
        except Exception as err:  # the hub client raises many types when offline
            reason = str(err).splitlines()[0][:120] if str(err) else type(err).__name__
            raise PolicykdError(
                f"cannot download zoo:{algo}/{env_name} from the Hugging Face hub ({reason}); offline? {where}"
            ) from None
        try:
            vecnormalize = hf_hub_download(repo, "vec_normalize.pkl")
        except Exception:  # most agents have no VecNormalize
            vecnormalize = None
    (dest / env_name).mkdir(parents=True, exist_ok=True)
    copies = [(config, dest / env_name / "config.yml"), (model, dest / f"{env_name}.zip")]
    if vecnormalize is not None:
        copies.insert(0, (vecnormalize, dest / env_name / "vecnormalize.pkl"))
    for source, target in copies:
        atomic_write(target, partial(shutil.copyfile, source))
    return dest


def load_vecnormalize(path: Path, venv: VecEnv) -> VecNormalize:
    """A frozen VecNormalize over `venv` carrying the statistics saved at `path` (any SB3/gym era)."""
    saved = safe_load(path)
    obs_rms = getattr(saved, "obs_rms", None)
    if obs_rms is None:
        raise PolicykdError(f"{path} holds no observation statistics (obs_rms)")
    shape = getattr(obs_rms, "mean", None)
    if shape is None or tuple(shape.shape) != venv.observation_space.shape:
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


# --- writing: what `python -m rl_zoo3.enjoy` loads ---------------------------------------------

ZOO_TRAIN_ARGS: dict[str, object] = {
    "algo": "ppo",
    "conf_file": None,
    "device": "auto",
    "env": "CartPole-v1",
    "env_kwargs": None,
    "eval_env_kwargs": None,
    "eval_episodes": 5,
    "eval_freq": 25000,
    "gym_packages": [],
    "hyperparams": None,
    "log_folder": "logs",
    "log_interval": -1,
    "max_total_trials": None,
    "n_eval_envs": 1,
    "n_evaluations": None,
    "n_jobs": 1,
    "n_startup_trials": 10,
    "n_timesteps": -1,
    "n_trials": 500,
    "no_optim_plots": False,
    "num_threads": -1,
    "optimization_log_path": None,
    "optimize_hyperparameters": False,
    "progress": False,
    "pruner": "median",
    "sampler": "tpe",
    "save_freq": -1,
    "save_replay_buffer": False,
    "seed": -1,
    "storage": None,
    "study_name": None,
    "tensorboard_log": "",
    "track": False,
    "trained_agent": "",
    "trial_id": None,
    "truncate_last_trajectory": True,
    "uuid": False,
    "vec_env": "dummy",
    "verbose": 1,
    "wandb_entity": None,
    "wandb_group": None,
    "wandb_project_name": "sb3",
    "wandb_tags": [],
}
"""`python -m rl_zoo3.train`'s options with their defaults (rl_zoo3 2.9.2): the namespace rl-zoo saves as args.yml."""

ATARI_WRAPPER = "stable_baselines3.common.atari_wrappers.AtariWrapper"


def zoo_env_name(env_id: str) -> str:
    """rl-zoo's folder and file name for an env id (huggingface_sb3's EnvironmentName): ALE/Pong-v5 -> ALE-Pong-v5;
    mymod:Point-v0 -> Point-v0, as rl-zoo names it (its --gym-packages imports the module)."""
    return folder_name(env_id)


def zoo_policy_kwargs(kwargs: Mapping[str, object]) -> str:
    """policy_kwargs in rl-zoo's notation, the `dict(...)` string its config.yml holds (torch.nn classes as nn.X)."""

    def spell(value: object) -> str:
        if isinstance(value, type):
            module = value.__module__
            return f"nn.{value.__name__}" if module.startswith("torch.nn") else f"{module}.{value.__qualname__}"
        if isinstance(value, dict):
            if all(isinstance(k, str) and k.isidentifier() for k in value):
                return "dict(" + ", ".join(f"{k}={spell(v)}" for k, v in value.items()) + ")"
            return "{" + ", ".join(f"{k!r}: {spell(v)}" for k, v in value.items()) + "}"
        if isinstance(value, (list, tuple)):
            return "[" + ", ".join(spell(v) for v in value) + "]"
        return repr(value)

    return spell(dict(kwargs))


def write_zoo_run(
    root: Path,
    model: BaseAlgorithm,
    *,
    algo: str,
    env_id: str,
    config: Mapping[str, object],
    args: Mapping[str, object],
    normalizer: VecNormalize | None,
    frame_stack: int = 4,
) -> Path:
    """`root/<algo>/<ENV>_1/`, so `python -m rl_zoo3.enjoy --algo <algo> --env <env_id> -f <root>` plays `model`
    in the env policykd trained it in; returns the run folder.

    The files are those rl-zoo's ExperimentManager writes: `<ENV>.zip` (`model.save`),
    `<ENV>/config.yml` (the hyperparameters, keys sorted; `normalize` and, for Atari,
    `env_wrapper`/`frame_stack` rebuild the env), `<ENV>/args.yml` (every `rl_zoo3.train` option:
    enjoy reads `env_kwargs` from it), `<ENV>/vecnormalize.pkl` (`VecNormalize.save`). The YAML is a
    plain mapping rather than rl-zoo's `!!python/object/apply:collections.OrderedDict` dump: rl-zoo
    reads both alike, and only the plain one also opens with `yaml.safe_load`.
    """
    name = zoo_env_name(env_id)
    run = root / algo / f"{name}_1"
    (run / name).mkdir(parents=True, exist_ok=True)
    written: dict[str, object] = {
        **config,
        "normalize": (config.get("normalize") or True) if normalizer is not None else False,
    }
    env_kwargs = None
    if is_atari(env_id):  # policykd's Atari stack: make_atari_env (AtariWrapper) on frameskip=1, then frame stacking
        written.update(env_wrapper=ATARI_WRAPPER, frame_stack=frame_stack)
        env_kwargs = {"frameskip": 1}
    saved_args = {
        **ZOO_TRAIN_ARGS,
        "env_kwargs": env_kwargs,
        "log_folder": str(root),
        **args,
        "algo": algo,
        "env": env_id,
    }
    if normalizer is not None:
        atomic_write(run / name / "vecnormalize.pkl", lambda tmp: normalizer.save(str(tmp)))
    atomic_write_text(run / name / "config.yml", yaml.safe_dump(written, sort_keys=True))
    atomic_write_text(run / name / "args.yml", yaml.safe_dump(saved_args, sort_keys=True))
    atomic_write(run / f"{name}.zip", model.save)  # last: the zip is what marks the folder complete
    return run
