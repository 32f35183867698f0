"""The output folder: student.zip, vecnormalize.pkl, summary.json, and an rl-zoo layout copy.

Every file is written to a temporary name and renamed into place, so an interrupted
run never leaves a half-written student or summary.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import yaml
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.vec_env import VecNormalize

from policykd.errors import PolicykdError
from policykd.models import uses_images


DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)  # no space, quota, file-size limit


@contextmanager
def disk_full_is_one_line(folder: Path, what: str) -> Iterator[None]:
    """A full disk while writing `what` stops the run with one line; what was written before
    (the last complete checkpoint, earlier episodes) stays, so the same command resumes."""
    try:
        yield
    except OSError as err:
        try:
            free = shutil.disk_usage(folder).free
        except OSError:
            free = -1
        if err.errno not in DISK_FULL and not 0 <= free < 1 << 20:  # numpy's short writes carry no errno
            raise
        reason = err.strerror or str(err)
        raise PolicykdError(f"the disk is full: cannot write {what} in {folder} ({reason}); what was written "
                            "before is kept: free some space and re-run the same command to resume") from None


def check_out(out: Path, overwrite: bool) -> None:
    """Refuse, before any work, an output folder that would be overwritten without `overwrite`."""
    if out.exists() and not out.is_dir():
        raise PolicykdError(f"output path {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise PolicykdError(f"output folder {out} already exists; pass --overwrite to replace it")


def prepare_out(out: Path, overwrite: bool) -> None:
    """Create `out` (emptied first when `overwrite`) and check it is writable."""
    check_out(out, overwrite)
    if out.is_dir() and any(out.iterdir()):
        shutil.rmtree(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise PolicykdError(f"cannot write to output folder {out}: {err.strerror}") from None


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def save_model(model: BaseAlgorithm, path: Path) -> None:
    """`model.save` to a temporary zip, then rename."""
    tmp = path.with_name(f".{path.stem}.tmp.zip")
    model.save(tmp)
    os.replace(tmp, path)


def save_normalizer(normalizer: VecNormalize, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    normalizer.save(str(tmp))
    os.replace(tmp, path)


def zoo_env_name(env_id: str) -> str:
    return env_id.replace("/", "-")


def write_student(
    out: Path,
    model: BaseAlgorithm,
    *,
    algo: str,
    env_id: str,
    normalizer: VecNormalize | None,
    env_wrapper: Any,
    env_steps: int,
) -> Path:
    """student.zip (+ vecnormalize.pkl) in `out`, and the same in rl-zoo layout for `rl_zoo3.enjoy`."""
    student = out / "student.zip"
    save_model(model, student)
    if normalizer is not None:
        save_normalizer(normalizer, out / "vecnormalize.pkl")
    name = zoo_env_name(env_id)
    run = out / algo / f"{name}_1"
    (run / name).mkdir(parents=True, exist_ok=True)
    shutil.copyfile(student, run / f".{name}.zip.tmp")
    os.replace(run / f".{name}.zip.tmp", run / f"{name}.zip")
    config = {
        "policy": "CnnPolicy" if uses_images(model.observation_space) else "MlpPolicy",
        "policy_kwargs": repr(model.policy_kwargs),
        "n_timesteps": env_steps,
        "normalize": normalizer is not None,
    }
    if env_wrapper:
        config["env_wrapper"] = env_wrapper
    atomic_write_text(run / name / "config.yml", yaml.safe_dump(config, sort_keys=True))
    atomic_write_text(run / name / "args.yml", yaml.safe_dump({"algo": algo, "env": env_id}, sort_keys=True))
    if normalizer is not None:
        shutil.copyfile(out / "vecnormalize.pkl", run / name / "vecnormalize.pkl")
    return student


def write_summary(out: Path, summary: dict[str, Any]) -> Path:
    path = out / "summary.json"
    atomic_write_text(path, json.dumps(summary, indent=2, sort_keys=False) + "\n")
    return path
