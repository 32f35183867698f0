"""Writing demonstration datasets: the episode files a recording leaves, and the Minari dataset made from them.

The format (what `policykd.json` and Minari's `infos` hold, frames stored once) and reading it are
`policykd.data.datasets`; this is the recording side only. The two meet only at that format: writing keeps
episode files a killed recording resumes from, has Minari create the dataset and rewrites its frames in whole-frame
gzip chunks, while distillation only opens and reads.
"""

from __future__ import annotations

import json
import shutil
import warnings
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from policykd.data.datasets import LABEL_KEYS, META_FILE, NORMALIZER_FILE, VALUE_KEY, DatasetMeta, dataset_root
from policykd.envs import split_env_id
from policykd.errors import PolicykdError, option
from policykd.storage import atomic_write, atomic_write_text

if TYPE_CHECKING:
    from stable_baselines3.common.vec_env import VecNormalize


@dataclass
class Episode:
    """One recorded episode, observations in stored form (frames for Atari)."""

    observations: np.ndarray  # (T+1, ...)
    actions: np.ndarray  # (T, ...)
    rewards: np.ndarray  # (T,)
    terminations: np.ndarray  # (T,) bool
    truncations: np.ndarray  # (T,) bool
    labels: dict[str, np.ndarray]  # distribution parameter name -> (T+1, ...); empty for actions only
    values: np.ndarray | None  # (T+1,) teacher value, or None
    seed: int
    score: float  # the Monitor's raw episode return

    def save(self, path: Path) -> None:
        """One .npz, written atomically and durably (a kill or power cut leaves it whole or absent):
        a resumed recording trusts every episode file it finds."""
        arrays = {
            "observations": self.observations,
            "actions": self.actions,
            "rewards": self.rewards,
            "terminations": self.terminations,
            "truncations": self.truncations,
            "seed": np.array(self.seed),
            "score": np.array(self.score),
        }
        arrays.update({f"label.{k}": v for k, v in self.labels.items()})
        if self.values is not None:
            arrays["values"] = self.values
        # numpy's stub lets `**arrays` fill `allow_pickle`, which these names never do
        atomic_write(path, lambda tmp: np.savez_compressed(tmp, **arrays), fsync=True)  # type: ignore[arg-type]

    @classmethod
    def load(cls, path: Path) -> Episode:
        with np.load(path, allow_pickle=False) as data:
            labels = {k.removeprefix("label."): data[k] for k in data.files if k.startswith("label.")}
            return cls(
                data["observations"],
                data["actions"],
                data["rewards"],
                data["terminations"],
                data["truncations"],
                labels,
                data["values"] if "values" in data.files else None,
                int(data["seed"]),
                float(data["score"]),
            )


def episode_score_and_steps(path: Path) -> tuple[float, int]:
    """An episode file's return and length, without reading its observations (npz members load lazily)."""
    with np.load(path, allow_pickle=False) as data:
        return float(data["score"]), len(data["rewards"])


def frames_of(obs: np.ndarray, frame_stack: int) -> np.ndarray:
    """What is stored of a batch of policy observations: the newest frame of each stack."""
    return obs[:, -1] if frame_stack else obs


def write_dataset(
    dataset_id: str,
    episodes: Iterable[Episode],
    meta: DatasetMeta,
    *,
    observation_space: spaces.Space,
    action_space: spaces.Space,
    normalizer: VecNormalize | None = None,
    overwrite: bool = False,
    env_kwargs: Mapping[str, object] | None = None,
) -> Path:
    """A Minari dataset under its root, with `policykd.json` (and the teacher's VecNormalize) beside it.

    `episodes` is consumed one at a time (a generator keeps one episode in memory, not the dataset).
    """
    from minari import create_dataset_from_buffers
    from minari.data_collector import EpisodeBuffer

    folder = dataset_root() / dataset_id
    if folder.exists():
        if not overwrite:
            raise PolicykdError(
                f"dataset {dataset_id} already exists at {folder}; pass {option('overwrite')} to replace it"
            )
        shutil.rmtree(folder)

    def buffers() -> Iterator[EpisodeBuffer]:
        for i, ep in enumerate(episodes):
            infos = {LABEL_KEYS[k]: v for k, v in ep.labels.items()}
            if ep.values is not None:
                infos[VALUE_KEY] = ep.values
            yield EpisodeBuffer(
                id=i,
                seed=ep.seed,
                observations=ep.observations,
                actions=ep.actions,
                rewards=ep.rewards,
                terminations=ep.terminations,
                truncations=ep.truncations,
                infos=infos,
            )

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Minari warns about unset author, permalink, eval env
        create_dataset_from_buffers(
            dataset_id,
            buffers(),
            env=_env_spec(meta.env_id, env_kwargs or {}),
            observation_space=observation_space,
            action_space=action_space,
            algorithm_name=f"policykd record ({meta.source}: {meta.teacher or 'human'})",
            description="Recorded with policykd; teacher distributions in infos (see policykd.json).",
            jpeg_encoding=False,  # lossless: the student must see what the teacher saw
        )
    if meta.frame_stack:
        compact_frames(folder / "data")
    if normalizer is not None:
        atomic_write(folder / NORMALIZER_FILE, lambda tmp: normalizer.save(str(tmp)))
    atomic_write_text(folder / META_FILE, json.dumps(asdict(meta), indent=2))
    return folder


def _env_spec(env_id: str, env_kwargs: Mapping[str, object]) -> gym.envs.registration.EnvSpec:
    """The env as Minari stores it, as JSON, to remake it (`recover_environment`): gymnasium's spec with the command's
    --env-kwargs, and an entry point registered as a class or function written as its `module:name`."""
    spec = gym.spec(split_env_id(env_id)[1])
    entry, name = spec.entry_point, getattr(spec.entry_point, "__qualname__", None)
    if callable(entry) and name:
        entry = f"{entry.__module__}:{name}"
    return replace(spec, entry_point=entry, kwargs={**spec.kwargs, **env_kwargs})


def compact_frames(data: Path, rows: int = 64) -> None:
    """Rewrite Minari's image observations in whole-frame chunks, gzip-compressed (lossless).

    Minari lets h5py guess chunks, which for 84x84 frames are 11x11 tiles padding each frame
    to 88x88 (+10 % on disk); whole-frame chunks waste nothing, and gzip shrinks Atari frames
    several-fold. Any h5py reads the result (gzip is a standard HDF5 filter). The file is
    written beside the old one and renamed over it.
    """
    import h5py
    from minari.dataset.minari_storage import MinariStorage

    path = data / "main_data.hdf5"

    def rewrite(tmp: Path) -> None:
        with h5py.File(path, "r") as src, h5py.File(tmp, "w", track_order=True) as dst:
            dst.attrs.update(src.attrs)
            for name, group in src.items():
                out = dst.create_group(name, track_order=True)
                out.attrs.update(group.attrs)
                for key, item in group.items():
                    if key != "observations":
                        src.copy(item, out, name=key)
                        continue
                    frames = item[()]
                    out.create_dataset(
                        key,
                        data=frames,
                        chunks=(min(rows, len(frames)), *frames.shape[1:]),
                        maxshape=(None, *frames.shape[1:]),
                        compression="gzip",
                        compression_opts=1,
                    )

    atomic_write(path, rewrite)
    storage = MinariStorage.read(data)
    storage.update_metadata({"dataset_size": storage.get_size()})
