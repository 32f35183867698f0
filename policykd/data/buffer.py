"""The distillation buffer: observations with the teacher's full action distribution.

Unlike behaviour cloning buffers (imitation's `Transitions`), it keeps the teacher's
logits / mean and log-std and value, not only its action. It aggregates across DAgger
rounds up to `capacity`, then overwrites the oldest entries.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch as th

from policykd.constants import DIST_FIELDS
from policykd.distributions import ActionDist
from policykd.data.frames import ArrayStore, FrameStackStore, make_store


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
        for key in DIST_FIELDS:
            tensor = getattr(dist, key)
            if tensor is not None:
                self.labels[key] = np.zeros((self.capacity, *tensor.shape[1:]), dtype=np.float32)
        self.template = dist._replace(logits=None, mean=None, log_std=None)

    def add(self, obs: np.ndarray, dist: ActionDist, value: th.Tensor | None, *, sequential: bool = False) -> None:
        """Store a batch of labelled observations: one row per env, or with `sequential`
        consecutive steps of one episode (a dataset), whose frame stacks share frames."""
        if self.obs is None:  # a dataset's run of steps is one env, however many rows it brings
            self._allocate(obs[:1] if sequential else obs, dist)
        n = len(obs)
        idx = (self.pos + np.arange(n)) % self.capacity
        self.obs.put(idx, obs, sequential=sequential)
        for key, array in self.labels.items():
            array[idx] = getattr(dist, key).cpu().numpy()
        self.value[idx] = np.nan if value is None else value.cpu().numpy()
        self.full = self.full or self.pos + n >= self.capacity
        self.pos = int((self.pos + n) % self.capacity)

    def end_sequence(self) -> None:
        """The sequential episode being added has ended: its next stack starts afresh."""
        if self.obs is not None:
            self.obs.end_sequence()

    def get(self, idx: np.ndarray) -> Batch:
        labels = {key: th.as_tensor(array[idx]) for key, array in self.labels.items()}
        return Batch(self.obs.get(idx), self.template._replace(**labels), th.as_tensor(self.value[idx]))

    def valid_indices(self) -> np.ndarray:
        """Slots that can be sampled (all of them, except Atari stacks whose frames were recycled)."""
        return np.arange(0) if self.obs is None else self.obs.valid(len(self))

    def state(self) -> dict[str, np.ndarray]:
        """Everything needed to rebuild the buffer exactly (for checkpoints), as named arrays."""
        if self.obs is None:
            return {}
        meta = np.array([self.pos, int(self.full), int(self.template.squashed), int(self.template.q_values)])
        n = len(self)  # only the filled part: an early checkpoint of a large buffer stays small
        arrays = {"meta": meta, "kind": np.array(self.template.kind), "value": self.value[:n]}
        arrays.update({f"label.{k}": v[:n] for k, v in self.labels.items()})
        arrays.update({f"obs.{k}": v for k, v in self.obs.state(n).items()})
        arrays["obs.example"] = np.zeros((1, *self._obs_shape()), dtype=self._obs_dtype())
        return arrays

    def restore(self, arrays: dict[str, np.ndarray]) -> None:
        if not arrays:
            return
        pos, full, squashed, q_values = (int(x) for x in arrays["meta"])
        labels = {k.removeprefix("label."): th.as_tensor(v[:1]) for k, v in arrays.items() if k.startswith("label.")}
        example = arrays["obs.example"]
        if example.ndim == 4 and "obs.frame_serial" in arrays:  # a frame store was saved: rebuild one
            example = np.zeros((max(len(arrays["obs.last_envs"]), 1), *example.shape[1:]), dtype=example.dtype)
        self._allocate(example, ActionDist(str(arrays["kind"]), squashed=bool(squashed), q_values=bool(q_values), **labels))
        self.obs.restore({k.removeprefix("obs."): v for k, v in arrays.items() if k.startswith("obs.") and k != "obs.example"})
        for key in self.labels:
            self.labels[key][: len(arrays[f"label.{key}"])] = arrays[f"label.{key}"]
        self.value[: len(arrays["value"])] = arrays["value"]
        self.pos, self.full = pos, bool(full)

    def _obs_shape(self) -> tuple[int, ...]:
        if isinstance(self.obs, ArrayStore):
            return self.obs.data.shape[1:]
        return (self.obs.k, *self.obs.frames.shape[1:])

    def _obs_dtype(self) -> np.dtype:
        return self.obs.data.dtype if isinstance(self.obs, ArrayStore) else self.obs.frames.dtype

    def nbytes(self) -> int:
        """Memory held by the stored arrays (observations and labels)."""
        if self.obs is None:
            return 0
        return self.obs.nbytes + self.value.nbytes + sum(a.nbytes for a in self.labels.values())
