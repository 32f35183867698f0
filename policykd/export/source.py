"""What an export starts from: a run folder or a student.zip, loaded as the SB3 model that acts,
with the frozen VecNormalize beside it and what the run's summary.json says about it.

Loading goes through `load_teacher`, so a student is read the way every zip is (safe mode, spaces
checked against the live env) and the env id, wrapper stack and statistics are found by themselves.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gymnasium import spaces

from policykd.envs import EnvFactory
from policykd.errors import PolicykdError
from policykd.models import acting_params, describe_space, uses_images
from policykd.teachers.zoo import zoo_env_name


@dataclass(frozen=True)
class ExportSource:
    """The student to export, as SB3 loaded it, and the facts its metadata carries."""

    path: Path
    algo: str
    model: Any  # stable_baselines3 BaseAlgorithm
    normalizer: Any  # VecNormalize | None
    env_id: str
    factory: EnvFactory
    """The env stack the student acts in (the wrapper and frame stack its run used), as loading built it."""
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def observation_space(self) -> spaces.Space:
        return self.model.observation_space

    @property
    def action_space(self) -> spaces.Space:
        return self.model.action_space

    def metadata(self) -> dict[str, Any]:
        """Everything a user of the file (and `policykd evaluate`) needs to know about it, JSON-ready."""
        obs = self.observation_space
        layout = ("uint8 channel-first image stack, scaled by 1/255 inside" if uses_images(obs)
                  else f"{obs.dtype} raw env observations" + (", normalised inside" if self.normalizer is not None else ""))
        meta = {
            "producer": "policykd", "env_id": self.env_id, "algo": self.algo, "env_wrapper": self.factory.env_wrapper,
            "frame_stack": self.factory.frame_stack, "observation_space": describe_space(obs),
            "observation_layout": f"[batch, {', '.join(map(str, obs.shape))}] {layout}",
            "action_space": _action_space(self.action_space), "vecnormalize": self.normalizer is not None,
            "source": str(self.path), "acting_params": acting_params(self.model.policy),
        }
        for key in ("teachers", "teacher_algo", "teacher_return_mean", "teacher_return_std", "student_return_mean",
                    "student_return_std", "student_returns", "eval_seed", "eval_episodes", "env_steps"):
            if key in self.summary:
                meta[key] = self.summary[key]
        return meta


def _action_space(space: spaces.Space) -> str:
    if isinstance(space, spaces.Box):
        return f"{describe_space(space)} low={space.low.tolist()} high={space.high.tolist()}"
    return describe_space(space)


def _summary(folder: Path) -> dict[str, Any]:
    path = folder / "summary.json"
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, OSError) as err:
        raise PolicykdError(f"{path} is not readable JSON: {err}") from None


def _spec(source: Path, env_id: str, algo_hint: str | None) -> str:
    """The rl-zoo copy of a run (it names the env wrapper and holds vecnormalize.pkl), else the zip itself."""
    folder = source.parent
    algo = algo_hint or ""
    zoo_copy = folder / algo / f"{zoo_env_name(env_id)}_1"
    return str(zoo_copy) if algo and (zoo_copy / f"{zoo_env_name(env_id)}.zip").is_file() else str(source)


def load_source(source: str | Path, env_id: str | None = None) -> ExportSource:
    """A run folder (its student.zip) or a student.zip, loaded with its VecNormalize; env id from summary.json
    unless given."""
    from policykd.teachers import load_teacher

    path = Path(source).expanduser()
    if path.is_dir():
        if not (path / "student.zip").is_file():
            raise PolicykdError(f"{path} holds no student.zip: pass a run folder written by distill, or a student.zip")
        path = path / "student.zip"
    elif not path.is_file():
        raise PolicykdError(f"export source not found: {path}")
    summary = _summary(path.parent)
    env_id = env_id or summary.get("env_id")
    if not env_id:
        raise PolicykdError(f"{path}: no summary.json beside it says which env it acts in: pass --env")
    teacher = load_teacher(_spec(path, env_id, summary.get("student_algo")), env_id=env_id)
    return ExportSource(path, teacher.algo, teacher.model, teacher.normalizer, env_id, teacher.factory, summary)
