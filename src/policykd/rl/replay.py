"""SB3's replay buffer with Atari frame stacks stored once, for off-policy RL on frames (a DQN student on Pong).

SB3's `ReplayBuffer` keeps every observation and every next observation as a whole 4-frame stack: 8 frames
(56 KB at 84x84) per transition, of which 7 are copies of frames it already holds. Here each transition holds ring
slots into one `FrameStackStore` (the distillation buffer's frames-once store): its observation is the previous
step's next observation again, and its next observation adds the one new frame, so a transition costs one frame
(7 KB) and 64 bytes of slots. Samples are SB3's `ReplayBufferSamples`, rebuilt exactly; SB3 trains on them
unchanged. Only RL runs use it (`replay_buffer_class` at load): `student.zip` names SB3's own buffer.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.buffers import BaseBuffer, ReplayBuffer
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.type_aliases import ReplayBufferSamples
from stable_baselines3.common.vec_env import VecNormalize

from policykd.data.frames import FrameStackStore


def frames_once(observation_space: spaces.Space) -> bool:
    """Channel-first uint8 frame stacks (k, H, W), k in 2..16: what policykd's Atari env stack gives."""
    shape: tuple[int, ...] = getattr(observation_space, "shape", None) or ()
    return (
        isinstance(observation_space, spaces.Box)
        and observation_space.dtype == np.uint8
        and len(shape) == 3
        and 1 < shape[0] <= 16
    )


@contextmanager
def plain_sb3(model: BaseAlgorithm) -> Iterator[None]:
    """While saving a model for plain SB3 (student.zip): its `replay_buffer_class` is SB3's own, so that `DQN.load`
    without policykd installed does not have to unpickle this one."""
    if not (isinstance(model, OffPolicyAlgorithm) and model.replay_buffer_class is FramesOnceReplayBuffer):
        yield
        return
    model.replay_buffer_class = ReplayBuffer
    try:
        yield
    finally:
        model.replay_buffer_class = FramesOnceReplayBuffer


class FramesOnceReplayBuffer(ReplayBuffer):
    """`ReplayBuffer` whose observations and next observations share one ring of frames (see the module)."""

    def __init__(
        self,
        buffer_size: int,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        device: th.device | str = "auto",
        n_envs: int = 1,
        optimize_memory_usage: bool = False,
        handle_timeout_termination: bool = True,
    ) -> None:
        BaseBuffer.__init__(self, buffer_size, observation_space, action_space, device, n_envs=n_envs)
        self.buffer_size = max(buffer_size // n_envs, 1)
        self.optimize_memory_usage = False  # nothing left to optimise: next observations cost one frame
        self.handle_timeout_termination = handle_timeout_termination
        shape, transitions = (self.buffer_size, n_envs), self.buffer_size * n_envs
        # a frame per transition, and one more per episode: the distillation buffer's slack covers those
        self.store = self._ring(transitions + max(64 * n_envs, transitions // 200))
        k = self.obs_shape[0]
        self.obs_ring = np.zeros((*shape, k), dtype=np.int32)
        self.next_ring = np.zeros((*shape, k), dtype=np.int32)
        self.oldest = np.full(shape, -1, dtype=np.int64)  # serial of each transition's oldest frame
        self.actions = np.zeros((*shape, self.action_dim), dtype=self._maybe_cast_dtype(action_space.dtype))
        self.rewards = np.zeros(shape, dtype=np.float32)
        self.dones = np.zeros(shape, dtype=np.float32)
        self.timeouts = np.zeros(shape, dtype=np.float32)

    def add(
        self,
        obs: np.ndarray,
        next_obs: np.ndarray,
        action: np.ndarray,
        reward: np.ndarray,
        done: np.ndarray,
        infos: list[dict[str, Any]],
    ) -> None:
        for env in range(self.n_envs):
            ring = self.store.stack_slots(env, obs[env])
            after = self.store.stack_slots(env, next_obs[env])
            self.obs_ring[self.pos, env], self.next_ring[self.pos, env] = ring, after
            self.oldest[self.pos, env] = self.store.oldest_serial(ring)
        self.actions[self.pos] = np.asarray(action).reshape((self.n_envs, self.action_dim))
        self.rewards[self.pos] = reward
        self.dones[self.pos] = done
        if self.handle_timeout_termination:
            self.timeouts[self.pos] = [info.get("TimeLimit.truncated", False) for info in infos]
        self.pos += 1
        if self.pos == self.buffer_size:
            self.full, self.pos = True, 0

    def sample(self, batch_size: int, env: VecNormalize | None = None) -> ReplayBufferSamples:
        """Uniform over the stored transitions whose frames are all still in the ring (SB3 samples uniformly too;
        a few of the oldest may have lost a frame to the ring), with numpy's global RNG as SB3 uses it.

        Rejection sampling: a draw that hit such a transition is drawn again, which keeps the draw uniform over the
        readable ones at O(batch) per call, where listing them first would scan the whole buffer every step."""
        filled = (self.buffer_size if self.full else self.pos) * self.n_envs
        oldest = self.oldest.reshape(-1)  # row-major: flat index = row * n_envs + env
        flat = np.random.randint(0, filled, size=batch_size)
        for _ in range(32):
            dead = ~self.store.alive(oldest[flat])
            if not dead.any():
                break
            flat[dead] = np.random.randint(0, filled, size=int(dead.sum()))
        else:  # nearly nothing readable (a tiny ring): list the readable ones once
            valid = np.flatnonzero(self.store.alive(oldest[:filled]))
            flat = valid[np.random.randint(0, len(valid), size=batch_size)]
        return self.samples(flat // self.n_envs, flat % self.n_envs, env)

    def samples(self, rows: np.ndarray, envs: np.ndarray, env: VecNormalize | None = None) -> ReplayBufferSamples:
        """The transitions at (`rows`, `envs`) as SB3's `ReplayBuffer._get_samples` gives them."""
        data = (
            self._normalize_obs(self.store.read(self.obs_ring[rows, envs]), env),
            self.actions[rows, envs],
            self._normalize_obs(self.store.read(self.next_ring[rows, envs]), env),
            (self.dones[rows, envs] * (1 - self.timeouts[rows, envs])).reshape(-1, 1),
            self._normalize_reward(self.rewards[rows, envs].reshape(-1, 1), env),
        )
        return ReplayBufferSamples(*tuple(map(self.to_torch, data)))

    @property
    def nbytes(self) -> int:
        arrays = (self.obs_ring, self.next_ring, self.oldest, self.actions, self.rewards, self.dones, self.timeouts)
        return self.store.nbytes + sum(a.nbytes for a in arrays)

    def __getstate__(self) -> dict[str, object]:
        """SB3's `save_replay_buffer` pickles the buffer: only the frames written so far go into the file."""
        state = dict(self.__dict__)
        state["store"] = self.store.state(0)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        saved = state.pop("store")
        self.__dict__.update(state)
        self.store = self._ring(int(saved["frame_capacity"]))
        self.store.restore(saved)

    def _ring(self, frames: int) -> FrameStackStore:
        """A frames-once store used as a ring of `frames` frames only (the transitions' slots are kept here)."""
        return FrameStackStore(0, np.zeros((self.n_envs, *self.obs_shape), dtype=np.uint8), slack=frames)
