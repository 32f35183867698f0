"""A recorded dataset as a source of labelled steps: its stored distributions (or actions) are the labels.

A dataset is not a teacher: it cannot label new states, so a run with only a dataset is
offline, the env stepped for evaluation alone. With a live teacher as well, the dataset fills
the buffer first (relabelled by the live teacher when it holds only actions) and DAgger rounds
follow.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.vec_env import VecNormalize

from policykd.data.buffer import DistillationBuffer
from policykd.data.datasets import Dataset, action_labels, open_dataset, stored_labels
from policykd.envs import EnvFactory, EnvOptions, env_factory
from policykd.teachers.base import Teacher
from policykd.teachers.zoo import load_vecnormalize

CHUNK = 4096  # steps labelled or stored at once


@dataclass
class DatasetSource:
    """An opened dataset checked against the env, with what it says of the teacher that made it."""

    dataset: Dataset
    factory: EnvFactory
    observation_space: spaces.Space
    action_space: spaces.Space
    normalizer: VecNormalize | None = None

    @property
    def teacher_algo(self) -> str:
        """The recording teacher's algorithm (a person's play: treated as an actor-critic's)."""
        return self.dataset.meta.teacher_algo or "ppo"

    @property
    def teacher_params(self) -> int:
        return int(self.dataset.meta.teacher_params or 0)


def open_source(spec: str, env_id: str, options: EnvOptions | None = None) -> DatasetSource:
    """Open and check a dataset against `env_id` with the command's env `options` (one line on any mismatch), with
    its VecNormalize."""
    factory = env_factory(env_id, options=options)
    obs_space, action_space = factory.spaces()
    dataset = open_dataset(spec, env_id, obs_space, action_space)
    normalizer = None
    if dataset.normalizer_path is not None:
        normalizer = load_vecnormalize(dataset.normalizer_path, factory.make(1, 0))
    return DatasetSource(dataset, factory, obs_space, action_space, normalizer)


def label_steps(
    dataset: Dataset,
    obs: np.ndarray,
    actions: np.ndarray,
    labels: dict[str, np.ndarray],
    values: np.ndarray | None,
    part: slice,
    *,
    live: Teacher | None,
    squashed: bool,
):
    """Labels for steps `part` of one episode: the `live` teacher's when one is given (to relabel),
    else the stored distributions, else the actions."""
    if live is not None:
        return live.label(obs[part])
    if dataset.has_distributions:
        dist = stored_labels(dataset.meta, {k: v[part] for k, v in labels.items()})
        return dist, None if values is None else th.as_tensor(values[part])
    return action_labels(actions[part], dataset.action_space, squashed=squashed), None


def needs_relabelling(dataset: Dataset, live: Teacher | None, live_dist) -> bool:
    """A live teacher relabels a dataset that holds only actions, or distributions of another
    kind than its own (they could not share one buffer, nor one loss)."""
    if live is None:
        return False
    meta = dataset.meta
    return not dataset.has_distributions or (meta.label_kind, meta.squashed) != (live_dist.kind, live_dist.squashed)


def fill_buffer(buffer: DistillationBuffer, dataset: Dataset, *, live: Teacher | None, squashed: bool) -> int:
    """Every dataset step into `buffer`, labelled by `label_steps` (`live`: the teacher that relabels
    them, or None to use what is stored); returns the steps stored."""
    steps = 0
    for obs, actions, labels, values in dataset.episodes():
        for start in range(0, len(obs), CHUNK):
            part = slice(start, start + CHUNK)
            dist, value = label_steps(dataset, obs, actions, labels, values, part, live=live, squashed=squashed)
            buffer.add(obs[part], dist, value, sequential=True)
            steps += len(obs[part])
        buffer.end_sequence()
    return steps
