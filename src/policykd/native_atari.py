"""ale-py's own vector env (`AtariVectorEnv`: frame-skip, max-pool, resize, grayscale and stacking in C++ threads)
as the SB3 VecEnv that the rest of policykd steps.

SB3's Atari stack (`make_atari_env`: noop reset, max-and-skip 4, episodic life, fire reset, 84x84 grayscale, then
`VecFrameStack` + `VecTransposeImage`) does the same work in Python, one env after another: ale-py's steps Pong 3.4x
as fast on 2 threads (docs/results.md). What the teacher sees differs by about 1 % of pixels (ALE's grayscale
palette and max-pooling on gray frames instead of colour); its return under both stacks is measured in
docs/results.md. The episode boundaries are the same only for games without lives: SB3's stack ends an episode
for the VecEnv at every life lost and fires again after it, ale-py's would restart the game, so `fits` keeps
games with lives on SB3's stack.

This adapter gives what SB3's stack gives: the same observation space (stack, 84, 84) uint8, clipped rewards,
Monitor's raw `episode` return per game, `terminal_observation` and `TimeLimit.truncated`, and env i seeded
`seed + i` at the first reset.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.vec_env import VecEnv
from stable_baselines3.common.vec_env.base_vec_env import VecEnvIndices, VecEnvObs, VecEnvStepReturn

_SPEC_KEYS = frozenset({"game", "repeat_action_probability", "full_action_space", "max_num_frames_per_episode"})
"""The `gym.make` keyword arguments of an ALE env that ale-py's vector env takes too (`frameskip` is its own)."""
FRAMESKIP = 4  # SB3's AtariWrapper's


def _ale_kwargs(env_id: str, env_kwargs: Mapping[str, object]) -> dict[str, Any] | None:
    """The vector env's arguments for `env_id` as gymnasium registers it with `env_kwargs` on top; None where a
    keyword has no counterpart there (`mode`, `difficulty`, `obs_type`, ...)."""
    kwargs = {**gym.spec(env_id).kwargs, **env_kwargs}
    if kwargs.pop("frameskip", 1) != 1:  # SB3's stack asks ALE for every frame and skips 4 itself, as the vector env
        return None
    if not set(kwargs) <= _SPEC_KEYS:
        return None
    return kwargs


@functools.cache
def _has_lives(game: str) -> bool:
    probe = _vector(game, 1, 1, 4, {})
    try:
        return bool(probe.reset(seed=0)[1]["lives"][0] > 0)
    finally:
        probe.close()


def fits(env_id: str, env_kwargs: Mapping[str, object]) -> bool:
    """Whether ale-py's vector env plays `env_id` as SB3's stack does: its keyword arguments map, and the game has
    no lives (see the module's docstring)."""
    kwargs = _ale_kwargs(env_id, env_kwargs)
    return kwargs is not None and not _has_lives(str(kwargs["game"]))


def _vector(game: str, n_envs: int, threads: int, frame_stack: int, kwargs: Mapping[str, Any]) -> Any:
    from ale_py.vector_env import AtariVectorEnv

    return AtariVectorEnv(
        game,
        n_envs,
        num_threads=threads,
        autoreset_mode="SameStep",  # SB3's VecEnv convention: the obs after a done is the next episode's first
        frameskip=FRAMESKIP,
        stack_num=frame_stack,
        reward_clipping=False,  # clipped here, after the raw score is added to the episode's return
        episodic_life=False,
        **kwargs,
    )


class NativeAtariVecEnv(VecEnv):
    """`n_envs` of ale-py's envs in `threads` C++ threads, as an SB3 VecEnv (see the module's docstring)."""

    def __init__(
        self, env_id: str, n_envs: int, seed: int, *, frame_stack: int, env_kwargs: Mapping[str, object], threads: int
    ) -> None:
        kwargs = _ale_kwargs(env_id, env_kwargs)
        assert kwargs is not None, "`fits` says which envs this adapter plays"
        game = str(kwargs.pop("game"))
        self.env_id, self.env_kwargs = env_id, dict[str, Any](env_kwargs)
        self._unstepped: gym.Env | None = None
        self.ale = _vector(game, n_envs, max(1, min(threads, n_envs)), frame_stack, kwargs)
        space = self.ale.single_observation_space
        super().__init__(n_envs, space, gym.spaces.Discrete(int(self.ale.single_action_space.n)))
        self._seeds: list[int | None] = [seed + i for i in range(n_envs)]
        self._returns = np.zeros(n_envs)
        self._frames = np.zeros(n_envs, dtype=np.int64)
        self._start = time.time()
        self._actions: np.ndarray | None = None

    def reset(self) -> VecEnvObs:
        seeds = self._seeds
        seed = None if any(s is None for s in seeds) else np.array(seeds, dtype=np.int64)
        obs, info = self.ale.reset(seed=seed)
        self._seeds = [None] * self.num_envs
        self._returns[:] = 0
        self._frames = np.asarray(info["episode_frame_number"], dtype=np.int64)
        return obs

    def seed(self, seed: int | None = None) -> Sequence[None | int]:
        self._seeds = [None if seed is None else seed + i for i in range(self.num_envs)]
        return self._seeds

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions, dtype=np.int64).reshape(self.num_envs)

    def step_wait(self) -> VecEnvStepReturn:
        assert self._actions is not None
        obs, rewards, terminated, truncated, info = self.ale.step(self._actions)
        self._returns += rewards
        dones = np.logical_or(terminated, truncated)
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        for i in np.flatnonzero(dones):
            infos[i] = {
                "terminal_observation": info["final_obs"][i],
                "TimeLimit.truncated": bool(truncated[i] and not terminated[i]),
                # Monitor counts ALE frames (it sits under SB3's frame skip): the last step's frames added
                "episode": {
                    "r": float(self._returns[i]),
                    "l": int(self._frames[i] + FRAMESKIP),
                    "t": round(time.time() - self._start, 6),
                },
            }
            self._returns[i] = 0
        self._frames = np.asarray(info["episode_frame_number"], dtype=np.int64)
        return obs, np.sign(rewards).astype(np.float32), dones, infos

    def close(self) -> None:
        self.ale.close()
        if self._unstepped is not None:
            self._unstepped.close()

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        """`render_mode` (None: these envs do not render) and `unwrapped`: an unstepped env of the same id per index,
        for what is read of an env without stepping it (its spec, its action meanings). Nothing that reads a running
        env's console gets one: a student view that does (`ram`) makes `EnvFactory` pick SB3's stack."""
        n = len(list(self._get_indices(indices)))
        if attr_name == "render_mode":
            return [None] * n
        if attr_name == "unwrapped":
            if self._unstepped is None:
                self._unstepped = gym.make(self.env_id, **self.env_kwargs).unwrapped
            return [self._unstepped] * n
        raise AttributeError(f"ale-py's vector env has no per-env {attr_name!r}: it runs its envs in C++")

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        raise AttributeError(f"ale-py's vector env has no per-env {attr_name!r} to set")

    def env_method(self, method_name: str, *args: Any, indices: VecEnvIndices = None, **kwargs: Any) -> list[Any]:
        raise AttributeError(f"ale-py's vector env has no per-env method {method_name!r}")

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None) -> list[bool]:
        return [False] * len(list(self._get_indices(indices)))
