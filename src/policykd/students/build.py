"""Students are real SB3 models with small networks, built through SB3 itself.

Nothing here hand-writes a zip: the student is `PPO(...)`, `DQN(...)`, `SAC(...)` or
`TD3(...)` with a small `net_arch`, trained on its `policy` and saved with `.save()`,
so `PPO.load("student.zip")` works in a process that never imports policykd.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import cloudpickle
import torch as th
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.vec_env import VecEnv

from policykd import networks as cnn
from policykd.errors import PolicykdError
from policykd.fields import spelled
from policykd.registry import STUDENT_FAMILIES
from policykd.sb3_models import acting_params, uses_images
from policykd.settings import DistillSettings
from policykd.students.families import Family

MAX_WIDTH, WIDTH_STEP = 256, 4  # default MLP students: widths 4, 8, ..., 256
# Image students: (conv1, conv2, conv3 channels, features), largest first.
_CNN_SIZES = (
    (32, 64, 64, 256),
    (32, 64, 64, 128),
    (32, 32, 32, 64),
    (16, 32, 32, 64),
    (16, 32, 32, 32),
    (16, 16, 16, 32),
    (16, 16, 16, 16),
    (8, 16, 16, 16),
    (8, 8, 8, 16),
    (8, 8, 8, 8),
)

# The CNN class travels inside the zip, so loading a student never needs policykd.
cloudpickle.register_pickle_by_value(sys.modules[cnn.__name__])


def default_student_algo(teacher_algo: str, action_space: spaces.Space) -> str:
    """PPO for actor-critic teachers, DQN for Q-learners, SAC for SAC/TQC, TD3 for deterministic actors."""
    if teacher_algo in ("dqn", "qrdqn"):
        return "dqn"
    if teacher_algo in ("sac", "tqc"):
        return "sac"
    if teacher_algo in ("td3", "ddpg") or (teacher_algo == "ars" and isinstance(action_space, spaces.Box)):
        return "td3"
    return "ppo"


def check_family_fits(settings: DistillSettings) -> None:
    """Refuse, before any work, the settings the asked-for student family cannot be distilled with."""
    if settings.student_algo is None:
        return
    family: Family = STUDENT_FAMILIES.load(settings.student_algo)
    for name in family.unsupported:
        if getattr(settings, name):
            raise PolicykdError(
                f"a {settings.student_algo} student cannot be distilled with {spelled(name)} (not supported)"
            )


def _image_kwargs(arch: Sequence[int]) -> dict:
    if len(arch) != 4:
        raise PolicykdError(f"an image student's arch is conv1,conv2,conv3,features (4 numbers), got {list(arch)}")
    return {
        "features_extractor_class": cnn.SmallCNN,
        "features_extractor_kwargs": {"channels": tuple(arch[:3]), "features_dim": int(arch[3])},
    }


def build_student(
    algo: str,
    venv: VecEnv,
    arch: Sequence[int],
    *,
    seed: int,
    learning_rate: float = 3e-4,
    device: th.device | str = "cpu",
) -> BaseAlgorithm:
    """A fresh SB3 model of the student family `algo` (`policykd.registry.STUDENT_FAMILIES`) with hidden layers
    `arch` on `venv`'s spaces, its networks on `device`."""
    family: Family = STUDENT_FAMILIES.load(algo)
    if family.action_space is not None and not isinstance(venv.action_space, family.action_space):
        kind = "a discrete" if family.action_space is spaces.Discrete else "a continuous (Box)"
        raise PolicykdError(f"a {algo.upper()} student needs {kind} action space")
    images = uses_images(venv.observation_space)
    if images and not family.images:
        raise PolicykdError(
            f"a {algo} student reads flat observations, not images: pass another {spelled('student_algo')}"
        )
    kwargs = family.kwargs([] if images else list(arch), learning_rate, _image_kwargs(arch) if images else {})
    if images and family.image_buffer_size is not None:
        kwargs["buffer_size"] = family.image_buffer_size
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return family.algo(_policy_name(family, images), venv, seed=seed, device=device, verbose=0, **kwargs)


def _policy_name(family: Family, images: bool) -> str:
    if family.recurrent:
        return "MlpLstmPolicy"
    return "CnnPolicy" if images else "MlpPolicy"


@dataclass(frozen=True)
class Sizing:
    """The default student's hidden sizes and, in words, why it has them (summary.json's `student_size`)."""

    arch: tuple[int, ...]
    reason: str


def default_size(
    algo: str, venv: VecEnv, teacher_params: int, fraction: float, *, min_width: int = WIDTH_STEP
) -> Sizing:
    """The default student for a teacher with `teacher_params` acting parameters: the largest within `fraction` of
    it, never narrower than `min_width` (a fraction of a small teacher is too few units to play), and never larger
    than the teacher itself, which the floor alone would make of a small one (a 64x64 actor, a linear policy).
    Images: the largest CNN of a fixed ladder within the fraction."""
    budget = int(fraction * teacher_params)
    if uses_images(venv.observation_space):
        return Sizing(
            auto_arch(algo, venv, budget), f"the largest CNN of the ladder within {100 * fraction:g} % of the teacher"
        )
    depth = STUDENT_FAMILIES.load(algo).depth
    widest = _widest(algo, venv, budget, depth)
    if widest >= min_width:
        return Sizing(
            (widest,) * depth,
            f"the widest within {100 * fraction:g} % of the teacher's {teacher_params:,} acting parameters",
        )
    short = f"{100 * fraction:g} % of the teacher is {budget:,} parameters, too few to play"
    if _params(algo, venv, (min_width,) * depth) <= teacher_params:
        return Sizing((min_width,) * depth, f"{short}: the width floor {min_width} ({spelled('student_min_width')})")
    capped = _widest(algo, venv, teacher_params, depth)
    if capped:
        return Sizing(
            (capped,) * depth,
            f"{short}, and the width floor {min_width} is larger than the teacher: the widest no larger than it",
        )
    if STUDENT_FAMILIES.load(algo).recurrent:  # an LSTM needs units: the narrowest one
        smallest = (WIDTH_STEP,) * depth
        return Sizing(smallest, f"the narrowest LSTM ({_params(algo, venv, smallest):,} parameters): none fits")
    linear = _params(algo, venv, ())
    over = f" ({linear:,} parameters: the smallest an SB3 {algo} builds)" if linear > teacher_params else ""
    return Sizing(
        (), f"a linear student: no hidden layer fits within the teacher's {teacher_params:,} parameters{over}"
    )


def _params(algo: str, venv: VecEnv, arch: tuple[int, ...]) -> int:
    return acting_params(build_student(algo, venv, arch, seed=0).policy)


def _widest(algo: str, venv: VecEnv, max_params: int, depth: int) -> int:
    """The widest `depth`-layer MLP (steps of 4, up to 256) with at most `max_params` acting parameters; 0 if none."""
    low, high = 0, MAX_WIDTH // WIDTH_STEP  # params grow with width: bisect on width / WIDTH_STEP
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (
            (middle, high) if _params(algo, venv, (middle * WIDTH_STEP,) * depth) <= max_params else (low, middle - 1)
        )
    return low * WIDTH_STEP


def auto_arch(
    algo: str, venv: VecEnv, max_params: int, *, depth: int | None = None, min_width: int = WIDTH_STEP
) -> tuple[int, ...]:
    """The largest student with at most `max_params` acting parameters: for vectors the widest
    `depth`-layer MLP (widths in steps of 4, up to 256) but never narrower than `min_width` (rounded up to a
    step), for images the largest CNN of a fixed ladder.
    `depth` (default: the family's) is how many equal widths: a recurrent student's default is 1, an LSTM of that
    many units whose heads read it directly (its 4 gates make it ~4x an MLP layer's parameters at the same width)."""
    depth = depth or STUDENT_FAMILIES.load(algo).depth
    if uses_images(venv.observation_space):
        for arch in _CNN_SIZES:
            if _params(algo, venv, arch) <= max_params:
                return arch
        return _CNN_SIZES[-1]
    floor = -(-min_width // WIDTH_STEP) * WIDTH_STEP
    return (max(floor, _widest(algo, venv, max_params, depth)),) * depth
