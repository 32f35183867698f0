"""Demonstration datasets: Minari datasets that keep the teacher's action distribution.

A dataset is a plain Minari dataset (`minari.load_dataset` reads it) plus `policykd.json`
beside its `data/` folder. Per step it stores, in Minari's `infos`, the teacher's
distribution parameters (`teacher_logits`, or `teacher_mean` and `teacher_log_std`) and
value (`teacher_value`), aligned with the observations: `infos[k][t]` labels
`observations[t]`, for t = 0..T (the final observation is labelled too). Human play and
other action-only datasets have no such keys: the student learns from the actions (BC).

Atari observations are stored one frame per step, not one 4-frame stack per step, in
whole-frame gzip chunks (157 B per step for Pong instead of 28 KB); stacks are rebuilt per
episode exactly as SB3's VecFrameStack builds them, zero frames before the episode's first.

This module opens and reads datasets; `policykd.data.dataset_writer` writes them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch as th
from gymnasium import spaces

from policykd.constants import DIST_FIELDS
from policykd.distributions import CATEGORICAL, DETERMINISTIC, ActionDist
from policykd.errors import PolicykdError
from policykd.hub import hub_access
from policykd.sb3_models import describe_space

if TYPE_CHECKING:
    from minari import MinariDataset

META_FILE = "policykd.json"
NORMALIZER_FILE = "vecnormalize.pkl"
LABEL_KEYS = {k: f"teacher_{k}" for k in DIST_FIELDS}  # distribution field -> Minari infos key
VALUE_KEY = "teacher_value"
ONE_HOT_MARGIN = 10.0


@dataclass(frozen=True)
class DatasetMeta:
    """What policykd needs to know beyond Minari's own metadata."""

    env_id: str
    frame_stack: int = 0
    """0: observations stored as the policy sees them; k: single frames, k-stacks rebuilt per episode."""
    label_kind: str | None = None
    """categorical, gaussian or deterministic; None when only actions were recorded."""
    squashed: bool = False
    q_values: bool = False
    source: str = "teacher"
    """teacher or human."""
    teacher: str | None = None
    teacher_algo: str | None = None
    teacher_params: int | None = None
    episode_returns: list[float] = field(default_factory=list)
    """Raw (Monitor) score of each episode, e.g. unclipped Atari scores."""


def stored_observation_space(space: spaces.Space, frame_stack: int) -> spaces.Space:
    """The dataset's observation space: one frame of a (k, H, W) stack when frames are stored once."""
    if frame_stack:
        assert space.shape is not None  # stacked frames: a Box of images
        return spaces.Box(0, 255, space.shape[1:], dtype=np.uint8)
    return space


def restack(frames: np.ndarray, k: int) -> np.ndarray:
    """(T, H, W) frames of one episode -> (T, k, H, W) stacks, as VecFrameStack builds them."""
    padded = np.concatenate([np.zeros((k - 1, *frames.shape[1:]), dtype=frames.dtype), frames])
    index = np.arange(len(frames))[:, None] + np.arange(k)[None, :]
    return padded[index]


def folder_bytes(folder: Path) -> int:
    """Bytes on disk of everything under `folder`."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def dataset_root() -> Path:
    from minari.storage.datasets_root_dir import get_dataset_path

    return Path(get_dataset_path())


def _looks_like_path(spec: str) -> bool:
    return spec.startswith((".", "/", "~")) or Path(spec).expanduser().is_dir()


def dataset_folder(spec: str) -> Path:
    """The folder of a dataset given by local Minari id (honours MINARI_DATASETS_PATH) or by path."""
    if _looks_like_path(spec):
        return Path(spec).expanduser()
    return dataset_root() / spec


@dataclass
class Dataset:
    """A dataset opened and checked against the env it will be distilled on."""

    name: str
    folder: Path
    meta: DatasetMeta
    minari: MinariDataset
    total_steps: int
    total_episodes: int

    @property
    def action_space(self) -> spaces.Space:
        return self.minari.action_space

    @property
    def has_distributions(self) -> bool:
        return self.meta.label_kind is not None

    @property
    def normalizer_path(self) -> Path | None:
        path = self.folder / NORMALIZER_FILE
        return path if path.is_file() else None

    def episode_returns(self) -> list[float]:
        """Raw scores as recorded (policykd datasets), else the sums of the stored rewards."""
        if self.meta.episode_returns:
            return list(self.meta.episode_returns)
        return [float(np.sum(ep.rewards)) for ep in self.minari.iterate_episodes()]

    @property
    def bytes_on_disk(self) -> int:
        return folder_bytes(self.folder)

    def episodes(self) -> Iterator[tuple[np.ndarray, np.ndarray, dict[str, np.ndarray], np.ndarray | None]]:
        """Per episode: policy observations (T, ...), actions (T, ...), labels (T, ...), values (T,)."""
        k = self.meta.frame_stack
        for ep in self.minari.iterate_episodes():
            obs = ep.observations[:-1]
            obs = restack(obs, k) if k else obs
            labels = {
                name: np.asarray(ep.infos[key][:-1], dtype=np.float32)
                for name, key in LABEL_KEYS.items()
                if key in ep.infos
            }
            values = np.asarray(ep.infos[VALUE_KEY][:-1], dtype=np.float32) if VALUE_KEY in ep.infos else None
            yield obs, np.asarray(ep.actions), labels, values


def _open_minari(spec: str, folder: Path) -> MinariDataset:
    """The Minari dataset, local or downloaded, with its first and last episodes read once:
    that finds truncated or corrupt files and missing actions before any work."""
    from minari.dataset.minari_dataset import MinariDataset

    data = folder / "data"
    if not (data / "metadata.json").is_file() and _looks_like_path(spec):
        raise PolicykdError(f"dataset not found: {spec} (no data/metadata.json there)")
    try:
        dataset = MinariDataset(str(data)) if (data / "metadata.json").is_file() else _download(spec)
        steps = int(dataset.total_steps)
        for episode in dataset.iterate_episodes(episode_indices=[0, dataset.total_episodes - 1]):
            if episode.actions is None or len(np.asarray(episode.actions)) != len(episode.rewards):
                raise PolicykdError(f"dataset {spec} has no actions")
    except PolicykdError:
        raise
    except KeyError as err:
        if "'actions'" in str(err):
            raise PolicykdError(f"dataset {spec} has no actions") from None
        raise PolicykdError(f"dataset {spec} is corrupt or truncated (missing {err})") from None
    except Exception as err:  # h5py, json and Minari raise many types for damaged files
        raise PolicykdError(
            f"dataset {spec} is corrupt or truncated ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})"
        ) from None
    if steps <= 0:
        raise PolicykdError(f"dataset {spec} holds no steps")
    return dataset


def _download(spec: str) -> MinariDataset:
    """Remote Minari datasets (e.g. mujoco/halfcheetah/expert-v0) through Minari's own download."""
    import minari

    hint = "record it with `policykd record` or pass a dataset folder"
    remote = os.environ.get("MINARI_REMOTE", "hf://farama-minari")

    def offline(why: str) -> str:
        return f"dataset {spec} is not in {dataset_root()} and Minari cannot download it (offline: {why}); {hint}"

    try:
        with hub_access(offline, check=remote.startswith("hf://") and "://" not in spec):
            return minari.load_dataset(spec, download=True)
    except PolicykdError:
        raise
    except Exception as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise PolicykdError(
            f"dataset {spec} is not in {dataset_root()} and could not be downloaded with Minari "
            f"({type(err).__name__}: {reason[:160]}); {hint}"
        ) from None


def open_dataset(spec: str, env_id: str, observation_space: spaces.Space, action_space: spaces.Space) -> Dataset:
    """Open `spec` (local id, path or remote Minari id) and check it fits `env_id`: one line if not."""
    folder = dataset_folder(spec)
    dataset = _open_minari(spec, folder)
    folder = Path(dataset.spec.data_path).parent
    meta = _read_meta(folder, dataset, spec)
    recorded_on = meta.env_id
    if recorded_on != env_id:
        raise PolicykdError(f"dataset {spec} was recorded on {recorded_on}, not {env_id}")
    expected_obs = stored_observation_space(observation_space, meta.frame_stack)
    if dataset.observation_space.shape != expected_obs.shape or dataset.observation_space.dtype != expected_obs.dtype:
        raise PolicykdError(
            f"dataset {spec}: its observation space {describe_space(dataset.observation_space)} "
            f"does not match {env_id}'s {describe_space(expected_obs)}"
        )
    if dataset.action_space != action_space:
        raise PolicykdError(
            f"dataset {spec}: its action space {describe_space(dataset.action_space)} "
            f"does not match {env_id}'s {describe_space(action_space)}"
        )
    return Dataset(spec, folder, meta, dataset, int(dataset.total_steps), int(dataset.total_episodes))


def _read_meta(folder: Path, dataset: MinariDataset, spec: str) -> DatasetMeta:
    path = folder / META_FILE
    if path.is_file():
        try:
            return DatasetMeta(**json.loads(path.read_text()))
        except (json.JSONDecodeError, TypeError) as err:
            raise PolicykdError(f"dataset {spec}: {path} is unreadable ({err})") from None
    env_spec = dataset.spec.env_spec  # a dataset policykd did not record: actions only
    if env_spec is None:
        raise PolicykdError(f"dataset {spec} does not say which env it was recorded on")
    return DatasetMeta(env_id=env_spec.id, source="minari")


def action_labels(actions: np.ndarray, action_space: spaces.Space, *, squashed: bool) -> ActionDist:
    """Recorded actions as a distribution the hard-label losses read (behaviour cloning).

    Discrete: logits `ONE_HOT_MARGIN` higher for the action than for the others (argmax is
    the action; softmax is one-hot within e^-10, so the logged KL is close to the CE).
    Continuous: a deterministic distribution at the action, rescaled to [-1, 1] for
    tanh-squashed students.
    """
    if isinstance(action_space, spaces.Discrete):
        logits = th.nn.functional.one_hot(th.as_tensor(actions, dtype=th.long).flatten(), int(action_space.n))
        return ActionDist(CATEGORICAL, logits=ONE_HOT_MARGIN * logits.float())
    mean = np.asarray(actions, dtype=np.float32).reshape(len(actions), -1)
    if squashed:
        assert isinstance(action_space, spaces.Box)  # squashed (SAC, TD3) students act in Box spaces
        low, high = action_space.low, action_space.high
        mean = 2.0 * (mean - low) / (high - low) - 1.0
    return ActionDist(DETERMINISTIC, mean=th.as_tensor(mean, dtype=th.float32), squashed=squashed)


def stored_labels(meta: DatasetMeta, labels: dict[str, np.ndarray]) -> ActionDist:
    """The teacher's recorded distribution for a run of steps."""
    if meta.label_kind is None:
        raise PolicykdError("the dataset holds actions only, no distributions")
    tensors = {k: th.as_tensor(v) for k, v in labels.items()}
    return ActionDist(
        meta.label_kind,
        logits=tensors.get("logits"),
        mean=tensors.get("mean"),
        log_std=tensors.get("log_std"),
        squashed=meta.squashed,
        q_values=meta.q_values,
    )
