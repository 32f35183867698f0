"""The distillation buffer: observations with the teacher's full action distribution.

Unlike behaviour cloning buffers (imitation's `Transitions`), it keeps the teacher's
logits / mean and log-std and value, not only its action. It aggregates across DAgger
rounds up to `capacity`, then overwrites the oldest entries. For a recurrent student it also
keeps each row's place in its env's stream of steps (`Streams`), so that training can cut
sequences of consecutive steps of one env out of the ring.
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
    starts: np.ndarray | None = None
    """Where an episode starts (a buffer that keeps `Streams`; None otherwise)."""


class Streams:
    """Each row's place in its env's stream of steps: the vector step it was added in (`tick`, -1: empty slot), its
    env's row within that step (`env`), how many rows that step added (`width`: the env's next step is that many rows
    on, modulo the ring), and whether an episode starts at it. A row's successor is its env's next step only if that
    slot still holds it (same env, the next tick): the ring's overwriting breaks a stream, and is seen here."""

    def __init__(self, capacity: int) -> None:
        self.tick = np.full(capacity, -1, dtype=np.int64)
        self.env = np.zeros(capacity, dtype=np.int32)
        self.width = np.ones(capacity, dtype=np.int32)
        self.start = np.zeros(capacity, dtype=bool)
        self.next_tick = 0

    def put(self, idx: np.ndarray, starts: np.ndarray) -> None:
        self.tick[idx], self.env[idx], self.width[idx] = self.next_tick, np.arange(len(idx)), len(idx)
        self.start[idx] = starts
        self.next_tick += 1

    def successors(self, rows: np.ndarray) -> np.ndarray:
        return (rows + self.width[rows]) % len(self.tick)

    def firsts(self, rows: np.ndarray, length: int) -> np.ndarray:
        """The rows among `rows` whose env's next `length - 1` steps are all still held."""
        ok, current = self.tick[rows] >= 0, rows
        for _ in range(length - 1):
            following = self.successors(current)
            ok &= (self.tick[following] == self.tick[current] + 1) & (self.env[following] == self.env[current])
            current = following
        return rows[ok]

    def sequences(self, firsts: np.ndarray, length: int) -> np.ndarray:
        """(len(firsts), length) rows: each first row and its env's next steps."""
        rows = [firsts]
        for _ in range(length - 1):
            rows.append(self.successors(rows[-1]))
        return np.stack(rows, axis=1)

    def state(self, n: int) -> dict[str, np.ndarray]:
        meta = np.array([self.next_tick])
        return {
            "tick": self.tick[:n],
            "env": self.env[:n],
            "width": self.width[:n],
            "start": self.start[:n],
            "meta": meta,
        }

    def restore(self, arrays: dict[str, np.ndarray]) -> None:
        for name in ("tick", "env", "width", "start"):
            getattr(self, name)[: len(arrays[name])] = arrays[name]
        self.next_tick = int(arrays["meta"][0])


class DistillationBuffer:
    """Ring buffer of (observation, teacher distribution, teacher value); with `sequences`, also each row's `Streams`
    place (recurrent students)."""

    def __init__(self, capacity: int, *, sequences: bool = False) -> None:
        if capacity <= 0:
            raise ValueError("buffer capacity must be positive")
        self.capacity = capacity
        self.streams = Streams(capacity) if sequences else None
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

    def add(
        self,
        obs: np.ndarray,
        dist: ActionDist,
        value: th.Tensor | None,
        *,
        sequential: bool = False,
        starts: np.ndarray | None = None,
    ) -> None:
        """Store a batch of labelled observations: one row per env, or with `sequential`
        consecutive steps of one episode (a dataset), whose frame stacks share frames.
        `starts`: where an episode starts (one per env; needed by a buffer that keeps sequences)."""
        if self.streams is not None and (sequential or starts is None):
            raise ValueError("a buffer of sequences takes one row per env and where episodes start")
        if self.obs is None:  # a dataset's run of steps is one env, however many rows it brings
            self._allocate(obs[:1] if sequential else obs, dist)
        n = len(obs)
        idx = (self.pos + np.arange(n)) % self.capacity
        self._stored()[0].put(idx, obs, sequential=sequential)
        for key, array in self.labels.items():
            array[idx] = getattr(dist, key).cpu().numpy()
        self.value[idx] = np.nan if value is None else value.cpu().numpy()
        if self.streams is not None and starts is not None:
            self.streams.put(idx, starts)
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
        starts = self.streams.start[idx] if self.streams is not None else None
        return Batch(store.get(idx), teacher, th.as_tensor(self.value[idx]), starts)

    def sequence_firsts(self, length: int) -> np.ndarray:
        """The first rows (the ring's slots) of every run of `length` consecutive steps of one env the buffer holds."""
        return self._streams().firsts(self.valid_indices(), length)

    def sequence_rows(self, firsts: np.ndarray, length: int) -> np.ndarray:
        """(len(firsts), length) rows: the runs of steps that start at `firsts`, sequence-major when flattened."""
        return self._streams().sequences(firsts, length)

    def _streams(self) -> Streams:
        if self.streams is None:
            raise ValueError("this buffer keeps no sequences")
        return self.streams

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
        if self.streams is not None:
            arrays.update({f"streams.{k}": v for k, v in self.streams.state(n).items()})
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
        if self.streams is not None and "streams.meta" in arrays:
            self.streams.restore({k.removeprefix("streams."): v for k, v in arrays.items() if k.startswith("streams.")})
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
        streams = self.streams
        kept = (
            0 if streams is None else sum(a.nbytes for a in (streams.tick, streams.env, streams.width, streams.start))
        )
        return self.obs.nbytes + self.value.nbytes + sum(a.nbytes for a in self.labels.values()) + kept
