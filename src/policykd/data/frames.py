"""Observation storage for the distillation buffer, including Atari frame stacks stored once.

An 84x84x4 Atari stack shares three of its frames with the previous step's stack, so
storing every stack costs 4x the memory. `FrameStackStore` keeps each frame once in a
ring and each transition as four indices into it; stacks are rebuilt exactly on read.
"""

from __future__ import annotations

import numpy as np

_ZERO = -1  # VecFrameStack pads new episodes with zero frames
_SEQUENCE = -1  # the `last` key of episodes added step by step (datasets), beside env rows 0..n-1


class ArrayStore:
    """Plain observations, one row per transition."""

    def __init__(self, capacity: int, example: np.ndarray) -> None:
        self.data = np.zeros((capacity, *example.shape[1:]), dtype=example.dtype)

    def put(self, slots: np.ndarray, obs: np.ndarray, sequential: bool = False) -> None:
        self.data[slots] = obs

    def end_sequence(self) -> None:
        pass

    def get(self, slots: np.ndarray) -> np.ndarray:
        return self.data[slots]

    def valid(self, n: int) -> np.ndarray:
        return np.arange(n)

    @property
    def nbytes(self) -> int:
        return self.data.nbytes

    def state(self, n: int) -> dict[str, np.ndarray]:
        return {"data": self.data[:n]}

    def restore(self, state: dict[str, np.ndarray]) -> None:
        self.data[: len(state["data"])] = state["data"]


class FrameStackStore:
    """Frame stacks (N, k, H, W) uint8 with frames stored once.

    Frames live in a ring of `capacity + slack` slots with a serial number each; a
    transition holds the ring slots of its k frames and the serial of its oldest one,
    and stays readable while that frame has not been overwritten.
    """

    def __init__(self, capacity: int, example: np.ndarray, slack: int | None = None) -> None:
        n_envs, self.k = example.shape[:2]
        # Each transition adds one frame (a fresh env adds up to k): a little slack keeps the
        # oldest transitions' earlier frames alive.
        self.frame_capacity = capacity + (slack if slack is not None else max(64 * n_envs, capacity // 200))
        self.frames = np.zeros((self.frame_capacity, *example.shape[2:]), dtype=example.dtype)
        self.frame_serial = np.full(self.frame_capacity, -1, dtype=np.int64)
        self.index = np.full((capacity, self.k), _ZERO, dtype=np.int32)
        self.oldest = np.zeros(capacity, dtype=np.int64)  # serial of the oldest real frame
        self.next_serial = 0
        self.last: dict[int, np.ndarray] = {}  # env row -> ring slots of its last stack

    def _store_frame(self, frame: np.ndarray) -> int:
        slot = self.next_serial % self.frame_capacity
        self.frames[slot] = frame
        self.frame_serial[slot] = self.next_serial
        self.next_serial += 1
        return slot

    def _alive(self, slot: int) -> bool:
        return slot == _ZERO or self.frame_serial[slot] > self.next_serial - self.frame_capacity

    def _stack_slots(self, env: int, stack: np.ndarray) -> np.ndarray:
        """Ring slots for one stack, reusing the env's previous frames when they match."""
        prev = self.last.get(env)
        if prev is not None and all(self._alive(s) for s in prev[1:]) and self._same(prev[1:], stack[:-1]):
            slots = np.append(prev[1:], self._store_frame(stack[-1]))
        else:  # first stack of this env, or a new episode: zero padding or fresh frames
            slots = np.array([_ZERO if not frame.any() else self._store_frame(frame) for frame in stack])
        self.last[env] = slots
        return slots

    def stack_slots(self, key: int, stack: np.ndarray) -> np.ndarray:
        """Ring slots for one stack under `key`, storing only its new frames: `key`'s last stack again when `stack`
        is that very stack (a replay buffer's observation, after the next observation of the step before)."""
        prev = self.last.get(key)
        if prev is not None and all(self._alive(s) for s in prev) and self._same(prev, stack):
            return prev
        return self._stack_slots(key, stack)

    def oldest_serial(self, ring: np.ndarray) -> int:
        """Serial of the oldest real frame of a stack's ring slots (the next serial for all-zero padding)."""
        real = [self.frame_serial[s] for s in ring if s != _ZERO]
        return min(real) if real else self.next_serial

    def alive(self, oldest: np.ndarray) -> np.ndarray:
        """Which stacks, by their oldest frame's serial, still have every frame in the ring."""
        return oldest > self.next_serial - self.frame_capacity

    def read(self, ring: np.ndarray) -> np.ndarray:
        """Stacks rebuilt from ring slots (..., k): zero frames where a slot is padding."""
        out = self.frames[np.where(ring == _ZERO, 0, ring)]
        out[ring == _ZERO] = 0
        return out

    def _same(self, slots: np.ndarray, frames: np.ndarray) -> bool:
        return all(
            (not frame.any()) if slot == _ZERO else np.array_equal(self.frames[slot], frame)
            for slot, frame in zip(slots, frames)
        )

    def put(self, slots: np.ndarray, obs: np.ndarray, sequential: bool = False) -> None:
        """Rows are envs, or with `sequential` consecutive steps of one episode."""
        for env, (slot, stack) in enumerate(zip(slots, obs)):
            ring = self._stack_slots(_SEQUENCE if sequential else env, stack)
            self.index[slot] = ring
            self.oldest[slot] = self.oldest_serial(ring)

    def end_sequence(self) -> None:
        self.last.pop(_SEQUENCE, None)

    def get(self, slots: np.ndarray) -> np.ndarray:
        return self.read(self.index[slots])

    def valid(self, n: int) -> np.ndarray:
        """Transitions whose frames are all still in the ring."""
        return np.flatnonzero(self.alive(self.oldest[:n]))

    @property
    def nbytes(self) -> int:
        return self.frames.nbytes + self.frame_serial.nbytes + self.index.nbytes + self.oldest.nbytes

    def state(self, n: int) -> dict[str, np.ndarray]:
        """The first `n` transitions and the frames written so far (the ring fills from slot 0)."""
        envs = sorted(self.last)
        used = min(self.next_serial, self.frame_capacity)
        return {
            "frames": self.frames[:used],
            "frame_serial": self.frame_serial[:used],
            "index": self.index[:n],
            "oldest": self.oldest[:n],
            "frame_capacity": np.array(self.frame_capacity),
            "next_serial": np.array(self.next_serial),
            "last_envs": np.array(envs, dtype=np.int64),
            "last_slots": np.array([self.last[e] for e in envs], dtype=np.int64).reshape(len(envs), self.k),
        }

    def restore(self, state: dict[str, np.ndarray]) -> None:
        # the ring's size as saved (checkpoints older than that field held the whole ring)
        self.frame_capacity = int(state["frame_capacity"]) if "frame_capacity" in state else len(state["frames"])
        self.frames = np.zeros((self.frame_capacity, *self.frames.shape[1:]), dtype=self.frames.dtype)
        self.frame_serial = np.full(self.frame_capacity, -1, dtype=np.int64)
        for key in ("frames", "frame_serial", "index", "oldest"):
            if key in state:  # a checkpoint's frames come as segments, which its reader puts in the ring itself
                getattr(self, key)[: len(state[key])] = state[key]
        self.next_serial = int(state["next_serial"])
        self.last = {int(e): slots.copy() for e, slots in zip(state["last_envs"], state["last_slots"])}


def is_frame_stack(example: np.ndarray) -> bool:
    """(n_envs, k, H, W) uint8 with k > 1: channel-first stacked grayscale frames."""
    return example.ndim == 4 and example.dtype == np.uint8 and 1 < example.shape[1] <= 16


def make_store(capacity: int, example: np.ndarray):
    return FrameStackStore(capacity, example) if is_frame_stack(example) else ArrayStore(capacity, example)
