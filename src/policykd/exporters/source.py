"""What an export starts from: a run folder or a student.zip, loaded as the SB3 model that acts,
with the frozen VecNormalize beside it and what the run's summary.json says about it.

Loading goes through `load_teacher`, so a student is read the way every zip is (safe mode, spaces
checked against the live env) and the env id, wrapper stack and statistics are found by themselves.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from gymnasium import spaces
from stable_baselines3.common.running_mean_std import RunningMeanStd

from policykd.envs import is_atari
from policykd.errors import PolicykdError
from policykd.run.folder import load_finished
from policykd.sb3_models import describe_space, uses_images
from policykd.teachers.base import SB3Teacher
from policykd.views import View


@dataclass(frozen=True)
class ObsNormalization:
    """What VecNormalize's `normalize_obs` does to an observation: clip((obs - mean) / std, -clip, clip)."""

    mean: np.ndarray
    std: np.ndarray
    """sqrt(var + epsilon)."""
    clip: float


@dataclass(frozen=True)
class ExportSource:
    """The student to export, loaded as every zip is (model, frozen VecNormalize, env stack), and its run's summary."""

    path: Path
    """The student.zip."""
    student: SB3Teacher
    """The loaded student: its algo, model, normalizer and the env stack (wrapper, frame stack) its run used."""
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def env_id(self) -> str:
        return self.student.factory.env_id

    @property
    def view(self) -> View | None:
        """The student's view of the env (its run's `--student-obs`), None when it sees the teacher's observation."""
        return self.student.factory.view

    @property
    def input_space(self) -> spaces.Space:
        """What the exported file is fed each step: the view's sensor reading without its trailing history (the file
        keeps that window), else the student's observation."""
        view = self.view
        return view.sensors().space if view is not None else self.student.observation_space

    @property
    def has_contract(self) -> bool:
        """A student with a view or an LSTM: its files take sensor readings and keep memory, which contract.json
        spells out (a plain student's files take the env's observation, as the metadata says)."""
        return self.view is not None or self.student.algo == "recurrent-ppo"

    def obs_normalization(self) -> ObsNormalization | None:
        """The student's frozen VecNormalize observation statistics, in float64 as numpy applies them (None: the
        observations go in as the env emits them)."""
        norm = self.student.normalizer
        if norm is None or not norm.norm_obs:
            return None
        rms = norm.obs_rms
        if not isinstance(rms, RunningMeanStd):
            raise PolicykdError("cannot export a VecNormalize of Dict observations: only Box observations")
        std = np.sqrt(np.asarray(rms.var, dtype=np.float64) + norm.epsilon)
        return ObsNormalization(np.asarray(rms.mean, dtype=np.float64), std, float(norm.clip_obs))

    def metadata(self, input_dtype: str | None = None, batched: bool = True) -> dict[str, object]:
        """Everything a user of the file (and `policykd evaluate`) needs to know about it, JSON-ready, and nothing of
        the machine it was made on (no absolute path: files and teachers by name).

        `input_dtype`: what the file takes, when not the env's own dtype (C takes `float`); `batched`: a leading
        batch dimension (ONNX), or one observation per call (C)."""
        student, obs = self.student, self.input_space
        factory = student.factory
        meta: dict[str, object] = {
            "producer": "policykd",
            "env_id": self.env_id,
            "algo": student.algo,
            "env_wrapper": factory.env_wrapper,
            "env_kwargs": dict(factory.env_kwargs),
            "env_wrappers": list(factory.wrappers),
            "frame_stack": factory.frame_stack if is_atari(self.env_id) else None,
            # which frames the student was trained on: ale-py's (native) or SB3's stack (docs/cli.md#atari-pong)
            "atari_stack": ("native" if factory.native else "sb3") if is_atari(self.env_id) else None,
            "observation_space": describe_space(obs),
            "observation_layout": _layout(
                obs, input_dtype or str(obs.dtype), batched, student.normalizer is not None, self.view is not None
            ),
            "action_space": _action_space(student.action_space),
            "vecnormalize": student.normalizer is not None,
            "source": self.path.name,
            "acting_params": student.acting_params,
        }
        meta["student_obs"] = list(self.view.specs) if self.view is not None else []
        meta["contract"] = "contract.json"
        for key in (
            "teacher_algo",
            "teacher_return_mean",
            "teacher_return_std",
            "student_return_mean",
            "student_return_std",
            "student_returns",
            "eval_seed",
            "eval_episodes",
            "env_steps",
        ):
            if key in self.summary:
                meta[key] = self.summary[key]
        if "teachers" in self.summary:
            meta["teachers"] = [shipped_name(spec) for spec in self.summary["teachers"]]
        return meta


def shipped_name(spec: str) -> str:
    """A teacher spec as a shipped file may name it: zoo:<algo>/<ENV> as is, a path by its last part (a run folder's
    or zip's name; the folders above it are the build machine's)."""
    return spec if spec.startswith("zoo:") else spec.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]


def _layout(obs: spaces.Space, dtype: str, batched: bool, normalised: bool, sensors: bool = False) -> str:
    shape = ", ".join(map(str, obs.shape or ()))
    if uses_images(obs):
        what = f"{dtype} channel-first image stack, scaled by 1/255 inside"
    else:
        cast = f" (cast from the env's {obs.dtype})" if dtype != str(obs.dtype) else ""
        read = "sensor readings of the student's view (contract.json)" if sensors else "raw env observations"
        what = f"{dtype} {read}{cast}" + (", normalised inside" if normalised else "")
    return f"[batch, {shape}] {what}" if batched else f"[{shape}] {what}"


def _action_space(space: spaces.Space) -> str:
    if isinstance(space, spaces.Box):
        return f"{describe_space(space)} low={space.low.tolist()} high={space.high.tolist()}"
    return describe_space(space)


def load_source(source: str | Path, env_id: str | None = None) -> ExportSource:
    """A run folder (its student.zip) or a student.zip, loaded with its VecNormalize; env id from summary.json
    unless given (`policykd.run.folder`: the one reader of a run folder)."""
    run = load_finished(source, env_id)
    return ExportSource(run.zip_path, run.student, run.summary)
