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
from policykd.data.frames import ArrayStore, FrameStackStore, make_store
from policykd.distributions import ActionDist


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

    def _stored(self) -> tuple[ArrayStore | FrameStackStore, ActionDist]:
        """The observation store and the distributions' template, which the first `add` (or `restore`) allocates."""
        if self.obs is None or self.template is None:
            raise ValueError("the buffer holds nothing yet")
        return self.obs, self.template

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
        self._stored()[0].put(idx, obs, sequential=sequential)
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
        store, template = self._stored()
        labels = {key: th.as_tensor(array[idx]) for key, array in self.labels.items()}
        teacher = template._replace(logits=labels.get("logits"), mean=labels.get("mean"), log_std=labels.get("log_std"))
        return Batch(store.get(idx), teacher, th.as_tensor(self.value[idx]))

    def valid_indices(self) -> np.ndarray:
        """Slots that can be sampled (all of them, except Atari stacks whose frames were recycled)."""
        return np.arange(0) if self.obs is None else self.obs.valid(len(self))

    def state(self) -> dict[str, np.ndarray]:
        """Everything needed to rebuild the buffer exactly (for checkpoints), as named arrays."""
        if self.obs is None:
            return {}
        store, template = self._stored()
        meta = np.array([self.pos, int(self.full), int(template.squashed), int(template.q_values)])
        n = len(self)  # only the filled part: an early checkpoint of a large buffer stays small
        arrays = {"meta": meta, "kind": np.array(template.kind), "value": self.value[:n]}
        arrays.update({f"label.{k}": v[:n] for k, v in self.labels.items()})
        arrays.update({f"obs.{k}": v for k, v in store.state(n).items()})
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
        self._allocate(
            example,
            ActionDist(
                str(arrays["kind"]),
                logits=labels.get("logits"),
                mean=labels.get("mean"),
                log_std=labels.get("log_std"),
                squashed=bool(squashed),
                q_values=bool(q_values),
            ),
        )
        self._stored()[0].restore(
            {k.removeprefix("obs."): v for k, v in arrays.items() if k.startswith("obs.") and k != "obs.example"}
        )
        for key in self.labels:
            self.labels[key][: len(arrays[f"label.{key}"])] = arrays[f"label.{key}"]
        self.value[: len(arrays["value"])] = arrays["value"]
        self.pos, self.full = pos, bool(full)

    def _obs_shape(self) -> tuple[int, ...]:
        store = self._stored()[0]
        if isinstance(store, ArrayStore):
            return store.data.shape[1:]
        return (store.k, *store.frames.shape[1:])

    def _obs_dtype(self) -> np.dtype:
        store = self._stored()[0]
        return store.data.dtype if isinstance(store, ArrayStore) else store.frames.dtype

    def nbytes(self) -> int:
        """Memory held by the stored arrays (observations and labels)."""
        if self.obs is None:
            return 0
        return self.obs.nbytes + self.value.nbytes + sum(a.nbytes for a in self.labels.values())
