"""The output folder: student.zip, vecnormalize.pkl, summary.json, and an rl-zoo layout copy.

Every file is written atomically (`policykd.files`), so an interrupted run never leaves a
half-written student or summary. The output-folder checks and the full-disk error live in
`policykd.files`; they are imported here too because the run loop imports them from here.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.vec_env import VecNormalize

from policykd.files import atomic_write, atomic_write_text
from policykd.models import uses_images
from policykd.teachers.zoo import write_zoo_run, zoo_policy_kwargs


def write_student(
    out: Path,
    model: BaseAlgorithm,
    *,
    algo: str,
    env_id: str,
    normalizer: VecNormalize | None,
    env_wrapper: Any,
    env_steps: int,
    frame_stack: int = 4,
) -> Path:
    """student.zip (+ vecnormalize.pkl) in `out`, and the same in rl-zoo layout for `rl_zoo3.enjoy`
    (`frame_stack`: the env factory's, for Atari)."""
    student = atomic_write(out / "student.zip", model.save)
    if normalizer is not None:
        atomic_write(out / "vecnormalize.pkl", normalizer.save)
    config: dict[str, Any] = {
        "policy": "CnnPolicy" if uses_images(model.observation_space) else "MlpPolicy",
        "policy_kwargs": zoo_policy_kwargs(model.policy_kwargs),
        "n_timesteps": env_steps,
    }
    if env_wrapper:
        config["env_wrapper"] = env_wrapper
    write_zoo_run(out, model, algo=algo, env_id=env_id, config=config, args={"n_timesteps": env_steps},
                  normalizer=normalizer, frame_stack=frame_stack)
    return student


def write_summary(out: Path, summary: dict[str, Any]) -> Path:
    path = out / "summary.json"
    atomic_write_text(path, json.dumps(summary, indent=2, sort_keys=False) + "\n")
    return path


def copy_student(run_dir: Path, out: Path, algo: str) -> None:
    """A finished run's student (student.zip, vecnormalize.pkl, its rl-zoo layout) copied into `out`: how prune and
    multi-stage runs put their last run's student at the top of their folder."""
    for name in ("student.zip", "vecnormalize.pkl"):
        if (run_dir / name).is_file():
            atomic_write(out / name, lambda path, name=name: shutil.copyfile(run_dir / name, path))
    if (run_dir / algo).is_dir():
        shutil.copytree(run_dir / algo, out / algo, dirs_exist_ok=True)
