"""The env a command makes, declared once for every command that makes one (distill, evaluate, record,
train-teacher): its id, keyword arguments, the user's wrappers and, for Atari, which env stack steps it.

A command's settings extend `EnvFields`, so these fields come first in its `--help` and in its config.json, and a
new env option is one field here for all four commands.
"""

from __future__ import annotations

from dataclasses import dataclass

from policykd.constants import AtariStack
from policykd.fields import CLASS_PATHS, KEY_VALUES, opt


@dataclass(frozen=True)
class EnvFields:
    env_id: str = opt(flag="--env")
    """Gymnasium env id, e.g. CartPole-v1, HalfCheetah-v5, ALE/Pong-v5, or module:EnvId for an env your module registers
    when imported (docs/own-env.md)."""
    env_kwargs: tuple[str, ...] = opt((), flag="--env-kwargs", rule=KEY_VALUES)
    """Keyword arguments of the env, KEY=VALUE, repeatable: gym.make(env, KEY=VALUE, ...), VALUE read as YAML (3, true,
    [1, 2], text); they add to, or override, those of a teacher's rl-zoo config (train-teacher records them in its
    args.yml)."""
    env_wrappers: tuple[str, ...] = opt((), flag="--env-wrapper", rule=CLASS_PATHS)
    """Your own gymnasium wrapper class, module:Class, repeatable, applied in order around the env (after a teacher's
    rl-zoo env_wrapper); it must be importable where the env runs."""
    atari_stack: AtariStack = "sb3"
    """Atari: sb3 steps SB3's make_atari_env stack (the shipped teacher's); native steps ale-py's own vector env in C++
    threads (2.4x the agent steps/s on Pong) where it plays the game as SB3's stack does (no lives, no unmapped
    --env-kwargs, no --env-wrapper, no ram view): its Pong students scored lower (docs/results.md)."""
