"""A person plays through the keyboard, for `policykd record --human`.

The person acts on exactly the env stack distillation uses (`EnvFactory`, with RGB rendering
switched on so the emulator's frame can be shown), and `policykd.data.record` stores the episodes
as it stores a teacher's: actions only here, so distilling from them is behaviour cloning.
Key handling, the key→action table and drawing come from `gymnasium.utils.play`
(`PlayableGame`, `display_arr`, the env's own `get_keys_to_action()`), not re-invented.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper
from stable_baselines3.common.vec_env.base_vec_env import VecEnvObs, VecEnvStepReturn

from policykd.data.record import PolicyFn
from policykd.envs import EnvFactory, check_env_id
from policykd.errors import PolicykdError, option
from policykd.fields import spelled

if TYPE_CHECKING:
    from gymnasium.utils.play import PlayableGame
    from pygame.time import Clock

KeySource = Callable[[int], Iterable[int | str]]
"""Agent-step call index -> keys held at that step (pygame key codes or characters): scripted play."""

DEFAULT_FPS = 15.0
"""Agent steps per second: with Atari's 4-frame skip, the emulator's own 60 frames/s."""


def require_display() -> ModuleType:
    """Fail before any work, in one line, where no window can be shown; returns the pygame module."""
    headless = sys.platform.startswith(("linux", "freebsd", "openbsd"))  # elsewhere the OS has the display
    if headless and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY") or os.environ.get("SDL_VIDEODRIVER")
    ):
        raise PolicykdError(
            f"recording with {option('human')} needs a display to show the game (no $DISPLAY or $WAYLAND_DISPLAY); "
            "run it in a desktop session, or set SDL_VIDEODRIVER (e.g. dummy) for scripted play"
        )
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")  # pygame greets on stdout otherwise
    try:
        import pygame
    except ImportError:
        raise PolicykdError(
            f"recording with {option('human')} needs pygame to show the game and read the keyboard: pip install pygame"
        ) from None
    return pygame


def _play_utils() -> ModuleType:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # gymnasium warns at import when matplotlib (for PlayPlot) is absent
        from gymnasium.utils import play
    return play


def key_table(env_id: str, env_kwargs: dict | None = None) -> tuple[dict[tuple[int, ...], int], str]:
    """The env's own keyboard mapping as {sorted key codes: action} (as `gymnasium.utils.play.play` builds
    it), and the same as a person reads it: 'd RIGHT, a LEFT, ...'."""
    import gymnasium as gym

    check_env_id(env_id)
    env = gym.make(env_id, **{k: v for k, v in (env_kwargs or {}).items() if k != "render_mode"})
    try:
        if not env.has_wrapper_attr("get_keys_to_action"):
            raise PolicykdError(
                f"{env_id} has no keyboard mapping (get_keys_to_action); recording with "
                f"{option('human')} plays "
                "envs that define one, such as the Atari (ALE) games"
            )
        raw = env.get_wrapper_attr("get_keys_to_action")()
        names = env.unwrapped.get_action_meanings() if hasattr(env.unwrapped, "get_action_meanings") else None
    finally:
        env.close()
    table = {_codes(combo if isinstance(combo, tuple) else (combo,)): int(action) for combo, action in raw.items()}
    label = {32: "space"}
    legend = ", ".join(
        f"{'+'.join(label.get(c, chr(c)) for c in combo)} {names[a] if names else a}" for combo, a in table.items()
    )
    return table, legend


def _codes(keys: Iterable[int | str]) -> tuple[int, ...]:
    """pygame key codes of letters and space are their code points, which is what ALE's table names."""
    return tuple(sorted({ord(k) if isinstance(k, str) else int(k) for k in keys}))


class _Window(VecEnvWrapper):
    """The recorder's env, unchanged; closing it (as `record` does, interrupted or not) closes the window."""

    def __init__(self, venv: VecEnv, on_close: Callable[[], None]) -> None:
        super().__init__(venv)
        self._on_close = on_close

    def reset(self) -> VecEnvObs:
        return self.venv.reset()

    def step_wait(self) -> VecEnvStepReturn:
        return self.venv.step_wait()

    def close(self) -> None:
        self._on_close()
        super().close()


@dataclass(frozen=True)
class HumanEnvFactory(EnvFactory):
    """`EnvFactory` that renders RGB frames and hands each env it makes to the player's window."""

    on_make: Callable[[VecEnv], VecEnv] | None = field(default=None, compare=False, repr=False)

    def make(self, n_envs: int, seed: int) -> VecEnv:
        venv = super().make(n_envs, seed)
        return self.on_make(venv) if self.on_make is not None else venv


@dataclass
class _Player:
    """What lives between agent steps: the window (a `PlayableGame`), its clock, the step count."""

    pygame: ModuleType
    play: ModuleType  # gymnasium.utils.play
    table: dict[tuple[int, ...], int]
    title: str
    fps: float
    zoom: float
    keys: KeySource | None
    noop: int = 0
    venv: VecEnv | None = None
    game: PlayableGame | None = None
    clock: Clock | None = None
    calls: int = 0

    def attach(self, venv: VecEnv) -> VecEnv:
        self.close()
        self.venv = venv
        return _Window(venv, self.close)

    def _open(self) -> tuple[PlayableGame, Clock]:
        """The window, sized from the first frame (ALE renders only after the recorder's first reset)."""
        self.pygame.display.init()
        self.pygame.display.set_caption(self.title)
        self.clock = clock = self.pygame.time.Clock()
        self.game = game = self.play.PlayableGame(self.venv, self.table, self.zoom)  # reads render_mode and frame size
        return game, clock

    def close(self) -> None:
        if self.game is not None:
            self.pygame.display.quit()
        self.game, self.venv = None, None

    def __call__(self, obs: np.ndarray) -> tuple[np.ndarray, None, None]:
        if self.venv is None:
            raise RuntimeError("the human policy acts only on envs made by the factory human_policy returned")
        game, clock = (self.game, self.clock) if self.game is not None and self.clock is not None else self._open()
        # show the state the action is for, give the person one tick to react, then read the keys
        self.play.display_arr(game.screen, self.venv.render(), video_size=game.video_size, transpose=True)
        self.pygame.display.flip()
        if self.fps > 0:
            clock.tick(self.fps)
        for event in self.pygame.event.get():  # also keeps the window responsive
            game.process_event(event)
        if not game.running:  # window closed or Esc: stop as Ctrl-C does, so the recorder can resume
            raise KeyboardInterrupt
        held = game.pressed_keys if self.keys is None else self.keys(self.calls)
        self.calls += 1
        action = self.table.get(_codes(held), self.noop)
        return np.array([action]), None, None


def human_policy(
    factory: EnvFactory, *, fps: float = DEFAULT_FPS, zoom: float = 3.0, keys: KeySource | None = None
) -> tuple[HumanEnvFactory, PolicyFn]:
    """The factory to record with and the person's policy; raises PolicykdError before any work.

    `fps`: agent steps per second (0: as fast as the machine goes, for scripted play).
    `keys`: None reads the keyboard through pygame events; a `KeySource` scripts the keys held.
    """
    if fps < 0:
        raise PolicykdError(f"{spelled('fps')} must be 0 (no pacing) or positive, got {fps}")
    pygame = require_display()
    table, legend = key_table(factory.env_id, factory.env_kwargs)
    title = f"{factory.env_id}: {legend}; Esc stops"
    player = _Player(pygame, _play_utils(), table, title, fps, zoom, keys)
    human_factory = HumanEnvFactory(
        factory.env_id,
        factory.env_wrapper,
        {**factory.env_kwargs, "render_mode": "rgb_array"},
        factory.frame_stack,
        wrappers=factory.wrappers,
        on_make=player.attach,
    )
    return human_factory, player
