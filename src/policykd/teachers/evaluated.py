"""A teacher's returns on fixed seeds, played once and kept: every run with the same teacher, env stack and seeds
plays the same games (Pong's 20 took 17 % of a default run), so they are replayed only when something that changes
play differs.

The key is what decides the games: the teacher's weights and frozen observation statistics (hashed, so a copy or
a renamed file hits), its algorithm, the env stack (`EnvFactory`, with the Atari stack resolved), the episodes and
seed, torch's thread count (a convolution may sum in another order on more threads) and the versions of the
libraries that step the env or run the network (`libraries`). Entries live in the user's cache
(`$POLICYKD_CACHE`, else `$XDG_CACHE_HOME/policykd`, else `~/.cache/policykd`) under `teacher-returns/`; a
shipped agent may carry entries for its default seeds in its folder (`returns/`, package data), which a first run
on a fresh machine reads. Only single SB3 teachers are kept: an ensemble's play depends on weights chosen per run.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import cast

import numpy as np
import torch as th
from stable_baselines3.common.running_mean_std import RunningMeanStd

from policykd.envs import is_atari
from policykd.rollouts import Returns, run_episodes, teacher_actor
from policykd.storage import atomic_write_text
from policykd.teachers.base import SB3Teacher, Teacher
from policykd.teachers.shipped import AGENTS_DIR, find_agent

FORMAT = 1
"""Raised when policykd changes how a teacher plays (actor, stepping), which the key cannot see."""
_NETWORK_AND_WRAPPERS = ("torch", "stable-baselines3", "sb3-contrib", "gymnasium")
_ATARI = ("ale-py", "opencv-python-headless")  # the emulator, and OpenCV, which resizes SB3's Atari frames


@dataclass(frozen=True)
class TeacherReturns:
    returns: Returns
    source: str
    """Where the figures came from: "played", or the file of the cache or shipped agent that held them."""


def cache_dir() -> Path:
    """The user's cache folder for policykd (`$POLICYKD_CACHE`, else `$XDG_CACHE_HOME/policykd`, else ~/.cache)."""
    if os.environ.get("POLICYKD_CACHE"):
        return Path(os.environ["POLICYKD_CACHE"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "policykd"


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "-"


def libraries(env_id: str) -> tuple[str, ...]:
    """The packages whose version can change a teacher's games on `env_id`: the network's and the wrappers' always,
    the emulator's (and OpenCV's) for Atari, MuJoCo's for any other env (its own, and a user's that may step it).
    Not numpy, which computes neither the network nor the physics, and not MuJoCo for Pong: a MuJoCo upgrade
    (4.0.0 to 4.0.1) once made the shipped Pong agent's kept games unreadable for nothing."""
    return _NETWORK_AND_WRAPPERS + (_ATARI if is_atari(env_id) else ("mujoco",))


def key_facts(teacher: SB3Teacher, episodes: int, seed: int) -> list[object]:
    """What, besides the weights, decides the teacher's games; written into each entry, so a miss can be explained."""
    factory = teacher.factory
    threads = th.get_num_threads()  # the order of a convolution's float sums may depend on it
    facts: list[object] = [FORMAT, teacher.algo, repr(factory), factory.native, episodes, seed, threads]
    return facts + [f"{lib}=={_version(lib)}" for lib in libraries(factory.env_id)]


def play_key(teacher: SB3Teacher, episodes: int, seed: int) -> str:
    """The hash of everything that decides the teacher's games (see the module's docstring)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(teacher.model.policy.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().numpy().tobytes())
    norm = teacher.normalizer
    if norm is not None and norm.norm_obs:
        rms = cast("RunningMeanStd", norm.obs_rms)  # a dict only for Dict observation spaces, which policykd refuses
        for part in (rms.mean, rms.var, np.array([norm.clip_obs, norm.epsilon])):
            digest.update(np.asarray(part, dtype=np.float64).tobytes())
    digest.update(json.dumps(key_facts(teacher, episodes, seed), default=str).encode())
    return digest.hexdigest()[:32]


def entry_record(teacher: SB3Teacher, played: Returns, episodes: int, seed: int) -> dict[str, object]:
    """A kept entry: the games, and the facts its key hashes (besides the weights)."""
    facts = key_facts(teacher, episodes, seed)
    return {
        "returns": played.returns.tolist(),
        "lengths": played.lengths.tolist(),
        "teacher": teacher.name,
        "key": facts,
    }


def _entry(path: Path) -> Returns | None:
    try:
        data = json.loads(path.read_text())
        return Returns(np.array(data["returns"], dtype=float), np.array(data["lengths"], dtype=np.int64))
    except (OSError, ValueError, KeyError, TypeError):
        return None  # absent or unreadable: played again, and written anew


def _places(teacher: SB3Teacher, key: str) -> list[Path]:
    """Where kept games are looked for, the user's cache last (the one written)."""
    shipped = [AGENTS_DIR / teacher.name / "returns" / f"{key}.json"] if find_agent(teacher.name) else []
    return [*shipped, cache_dir() / "teacher-returns" / f"{key}.json"]


def teacher_returns(teacher: Teacher, episodes: int, seed: int, *, cache: bool = True) -> TeacherReturns:
    """The teacher's greedy returns on episodes seeded `seed`, `seed + 1`, ...: kept ones where the key matches,
    else played (and kept in the user's cache). `cache=False` always plays and keeps nothing."""
    if not cache or not isinstance(teacher, SB3Teacher):
        return TeacherReturns(run_episodes(teacher_actor(teacher), teacher.factory, episodes, seed), "played")
    key = play_key(teacher, episodes, seed)
    for path in _places(teacher, key):
        kept = _entry(path)
        if kept is not None and len(kept.returns) == episodes:
            return TeacherReturns(kept, str(path))
    played = run_episodes(teacher_actor(teacher), teacher.factory, episodes, seed)
    record = entry_record(teacher, played, episodes, seed)
    path = _places(teacher, key)[-1]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(record) + "\n")
    except OSError:
        pass  # a read-only home: the figures are still right, only not kept
    return TeacherReturns(played, "played")
