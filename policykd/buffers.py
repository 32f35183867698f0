"""The distillation buffer: observations with the teacher's full action distribution.

Unlike behaviour cloning buffers (imitation's `Transitions`), it keeps the teacher's
logits / mean and log-std and value, not only its action. It aggregates across DAgger
rounds up to `capacity`, then overwrites the oldest entries.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch as th

from policykd.distributions import ActionDist
from policykd.frames import ArrayStore, FrameStackStore, make_store

_LABELS = ("logits", "mean", "log_std")


class Batch(NamedTuple):
    """A minibatch: raw observations, teacher distribution, teacher value (NaN where unknown)."""

    obs: np.ndarray
    teacher: ActionDist
    value: th.Tensor


class DistillationBuffer:
    """Ring buffer of (observation, teacher distribution, teacher value)."""

    def __init__(self, capacity: int) -> None:
        if capacity <= 0:
            raise ValueError("buffer capacity must be positive")
        self.capacity = capacity
        self.obs: ArrayStore | FrameStackStore | None = None  # Atari stacks: frames stored once
        self.labels: dict[str, np.ndarray] = {}
        self.value = np.full(capacity, np.nan, dtype=np.float32)
        self.template: ActionDist | None = None  # kind and flags of the stored distributions
        self.pos = 0
        self.full = False

    def __len__(self) -> int:
        return self.capacity if self.full else self.pos

    def _allocate(self, obs: np.ndarray, dist: ActionDist) -> None:
        self.obs = make_store(self.capacity, obs)
        for key in _LABELS:
            tensor = getattr(dist, key)
            if tensor is not None:
                self.labels[key] = np.zeros((self.capacity, *tensor.shape[1:]), dtype=np.float32)
        self.template = dist._replace(logits=None, mean=None, log_std=None)

    def add(self, obs: np.ndarray, dist: ActionDist, value: th.Tensor | None) -> None:
        """Store a batch of labelled observations (one row per env)."""
        if self.obs is None:
            self._allocate(obs, dist)
        n = len(obs)
        idx = (self.pos + np.arange(n)) % self.capacity
        self.obs.put(idx, obs)
        for key, array in self.labels.items():
            array[idx] = getattr(dist, key).cpu().numpy()
        self.value[idx] = np.nan if value is None else value.cpu().numpy()
        self.full = self.full or self.pos + n >= self.capacity
        self.pos = int((self.pos + n) % self.capacity)

    def get(self, idx: np.ndarray) -> Batch:
        labels = {key: th.as_tensor(array[idx]) for key, array in self.labels.items()}
        return Batch(self.obs.get(idx), self.template._replace(**labels), th.as_tensor(self.value[idx]))

    def valid_indices(self) -> np.ndarray:
        """Slots that can be sampled (all of them, except Atari stacks whose frames were recycled)."""
        return np.arange(0) if self.obs is None else self.obs.valid(len(self))

    def nbytes(self) -> int:
        """Memory held by the stored arrays (observations and labels)."""
        if self.obs is None:
            return 0
        return self.obs.nbytes + self.value.nbytes + sum(a.nbytes for a in self.labels.values())
