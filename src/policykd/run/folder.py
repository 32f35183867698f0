"""A run folder: what a distillation writes (student.zip, vecnormalize.pkl, summary.json, config.json, an rl-zoo layout
copy) and the one way to read it back (`RunFolder`), for the commands that start from a finished run (export,
prune, plot, multi-stage, sweeps).

Every file is written atomically (`policykd.storage`), so an interrupted run never leaves a half-written student or
summary.
"""

from __future__ import annotations

import functools
import json
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.vec_env import VecNormalize

from policykd.envs import EnvFactory, EnvOptions
from policykd.errors import PolicykdError
from policykd.fields import spelled
from policykd.rl.replay import plain_sb3
from policykd.sb3_models import uses_images
from policykd.storage import atomic_write, atomic_write_text
from policykd.students.averaging import averaged_weights
from policykd.students.folding import folded
from policykd.teachers import SB3Teacher, load_teacher
from policykd.teachers.zoo import write_zoo_run, zoo_policy_kwargs

if TYPE_CHECKING:
    from policykd.run.build import Run
    from policykd.run.state import RunState

SUMMARY, CONFIG, STUDENT = "summary.json", "config.json", "student.zip"


@dataclass(frozen=True)
class FinishedRun:
    """A finished run's student, loaded as every zip is (model, frozen VecNormalize, env stack), and its summary:
    what export and prune start from."""

    zip_path: Path
    student: SB3Teacher
    summary: dict[str, Any]

    @property
    def model(self) -> BaseAlgorithm:
        return self.student.model

    @property
    def algo(self) -> str:
        return self.student.algo

    @property
    def env_id(self) -> str:
        return self.student.factory.env_id

    @property
    def factory(self) -> EnvFactory:
        return self.student.factory

    @property
    def normalizer(self) -> VecNormalize | None:
        return self.student.normalizer


def _summary_beside(model: str | Path) -> dict[str, Any]:
    """The summary.json of a run folder, or of the folder a zip lies in: {} if there is none."""
    path = Path(model).expanduser()
    folder = path if path.is_dir() else path.parent  # a teacher spec (zoo:..., a shipped name) has none
    return RunFolder(folder).summary() if (folder / SUMMARY).is_file() else {}


def saved_view(model: str | Path) -> tuple[str, ...]:
    """The student view (`--student-obs`) its run's summary.json names for a run folder or a zip in one: () if none."""
    return tuple(_summary_beside(model).get("student_obs") or ())


def saved_env_options(model: str | Path) -> EnvOptions:
    """The env options (`--env-kwargs`, `--env-wrapper`) its run's summary.json names for a run folder or a zip in
    one: none if there is no summary."""
    return _env_options(_summary_beside(model))


def _env_options(summary: Mapping[str, Any]) -> EnvOptions:
    return EnvOptions(summary.get("env_kwargs") or {}, tuple(summary.get("env_wrappers") or ()))


def load_finished(source: str | Path, env_id: str | None = None) -> FinishedRun:
    """A run folder (its student.zip) or any student zip (its folder's summary.json, if there is one, says the env)."""
    path = Path(source).expanduser()
    if path.is_dir():
        return RunFolder(path).load_student(env_id)
    if not path.is_file():
        raise PolicykdError(f"not found: {path} (pass a run folder written by distill, or a student.zip)")
    return RunFolder(path.parent).load_student(env_id, path)


@dataclass(frozen=True)
class RunFolder:
    """A folder written by `distill` (or by prune and multi-stage runs, which write the same files at its top).

    Reading goes through here so that a missing or half-written file is refused in one line, the same way for
    every command."""

    path: Path

    @property
    def student_zip(self) -> Path:
        return self.path / STUDENT

    @property
    def finished(self) -> bool:
        """summary.json is written last, once the student is saved."""
        return (self.path / SUMMARY).is_file()

    def summary(self, *, required: bool = True) -> dict[str, Any]:
        """summary.json; `required=False`: {} when there is none (a bare student.zip's folder)."""
        if not self.path.is_dir():
            raise PolicykdError(f"{self.path} is not a folder (expected a policykd run folder)")
        return self._json(SUMMARY, required, "summary.json, written when a run finishes")

    def config(self) -> dict[str, Any]:
        """config.json: the settings the run was made with (DistillSettings' fields)."""
        return self._json(CONFIG, True, "config.json")

    def load_student(
        self, env_id: str | None = None, zip_path: Path | None = None, options: EnvOptions | None = None
    ) -> FinishedRun:
        """The run's student loaded as a teacher is (its VecNormalize and env stack with it), with the summary: a zip
        in a run folder is played with the run's rl-zoo config (`policykd.teachers.formats`: env wrapper, frame stack).
        `env_id` defaults to the summary's; `zip_path`: another zip in this folder than student.zip; `options`: env
        options instead of the run's own (summary.json's)."""
        zip_path = zip_path or self.student_zip
        if not zip_path.is_file():
            raise PolicykdError(
                f"{self.path} holds no {STUDENT}: pass a run folder written by distill, or a student.zip"
            )
        summary = self.summary(required=False)
        env_id = env_id or summary.get("env_id")
        if not env_id:
            raise PolicykdError(
                f"{zip_path}: no summary.json beside it says which env it acts in: pass {spelled('env_id', '--env')}"
            )
        view = tuple(summary.get("student_obs") or ())
        options = options.with_saved(_env_options(summary)) if options is not None else _env_options(summary)
        loaded = load_teacher(zip_path, env_id=env_id, view=view, options=options)  # with the run's rl-zoo config
        return FinishedRun(zip_path, loaded, summary)

    def write_summary(self, summary: Mapping[str, object]) -> Path:
        return write_summary(self.path, summary)

    def _json(self, name: str, required: bool, what: str) -> dict[str, Any]:
        path = self.path / name
        if not path.is_file():
            if required:
                raise PolicykdError(f"{self.path} is not a finished policykd run folder (no {what})")
            return {}
        try:
            value = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise PolicykdError(
                f"{path} is not valid JSON ({err.msg}, line {err.lineno}): "
                "the run was interrupted while writing it, or it was edited"
            ) from None
        if not isinstance(value, dict):
            raise PolicykdError(f"{path} is not a policykd {name} (not a JSON object)")
        return value


def write_student(
    out: Path,
    model: BaseAlgorithm,
    *,
    algo: str,
    env_id: str,
    normalizer: VecNormalize | None,
    env_wrapper: object,
    env_steps: int,
    frame_stack: int = 4,
) -> Path:
    """student.zip (+ vecnormalize.pkl) in `out`, and the same in rl-zoo layout for `rl_zoo3.enjoy`
    (`frame_stack`: the env factory's, for Atari)."""
    student = atomic_write(out / "student.zip", model.save)
    if normalizer is not None:
        atomic_write(out / "vecnormalize.pkl", lambda tmp: normalizer.save(str(tmp)))
    config: dict[str, object] = {
        "policy": "CnnPolicy" if uses_images(model.observation_space) else "MlpPolicy",
        "policy_kwargs": zoo_policy_kwargs(model.policy_kwargs),
        "n_timesteps": env_steps,
    }
    if env_wrapper:
        config["env_wrapper"] = env_wrapper
    write_zoo_run(
        out,
        model,
        algo=algo,
        env_id=env_id,
        config=config,
        args={"n_timesteps": env_steps},
        normalizer=normalizer,
        frame_stack=frame_stack,
    )
    return student


def write_summary(out: Path, summary: Mapping[str, object]) -> Path:
    path = out / SUMMARY
    atomic_write_text(path, json.dumps(summary, indent=2, sort_keys=False) + "\n")
    return path


def copy_student(run_dir: Path, out: Path, algo: str) -> None:
    """A finished run's student (student.zip, vecnormalize.pkl, its rl-zoo layout) copied into `out`: how prune and
    multi-stage runs put their last run's student at the top of their folder."""
    for name in ("student.zip", "vecnormalize.pkl"):
        if (run_dir / name).is_file():
            atomic_write(out / name, functools.partial(shutil.copyfile, run_dir / name))
    if (run_dir / algo).is_dir():
        shutil.copytree(run_dir / algo, out / algo, dirs_exist_ok=True)


def save_student(run: Run, state: RunState) -> Path:
    """student.zip (+ vecnormalize.pkl, rl-zoo layout) as the run's student is now (plain SB3's, after RL too)."""
    with plain_sb3(run.student):
        return write_student(
            run.out,
            run.student,
            algo=run.student_algo,
            env_id=run.settings.env_id,
            normalizer=run.normalizer,
            env_wrapper=run.factory.env_wrapper,
            env_steps=state.env_steps,
            frame_stack=run.factory.frame_stack,
        )


def save_student_so_far(run: Run, state: RunState) -> None:
    """On an interrupt: the averaged, folded student as it would be saved at the end."""
    with averaged_weights(run.student.policy, run.average), folded(run.student, run.obs_stats):
        save_student(run, state)
