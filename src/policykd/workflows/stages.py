"""Multi-stage distillation: teacher -> assistant(s) -> student, in one command and one output folder.

A student far smaller than its teacher can fail to follow it directly; a teacher assistant of intermediate size
bridges the gap (Mirzadeh et al. 2020, "Improved Knowledge Distillation via Teacher Assistant"). Each stage here is
an ordinary distillation whose teacher is the previous stage's student.zip (the first stage's is the run's teacher),
in `<out>/stage-<k>/`, with the run's own settings and that stage's hidden sizes. RL continuation, if asked for,
applies to the last stage only. Each stage is a run folder, so an interrupted multi-stage run resumes like any run:
finished stages are kept, the unfinished one continues from its checkpoint.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

from policykd.errors import PolicykdError, option
from policykd.fields import spelled, stage_archs
from policykd.rollouts import return_ratio
from policykd.run.folder import RunFolder, copy_student
from policykd.settings import DistillSettings
from policykd.storage import field_defaults, prepare_or_resume

STAGES_FILE = "stages.json"
R = TypeVar("R")


def stage_settings(settings: DistillSettings, k: int, archs: list[tuple[int, ...]]) -> DistillSettings:
    """Stage k (1-based): the run's settings with this stage's arch, teacher and folder; the first stage learns from
    the run's teacher, each later one from the stage before it, and only the last continues with RL."""
    out = settings.out_path
    stage = replace(
        settings,
        stages=None,
        student_arch=archs[k - 1],
        out=str(out / f"stage-{k}"),
        overwrite=False,
        resume=False,
        prune_to=None,
    )
    if k > 1:
        stage = replace(
            stage, teachers=(str(out / f"stage-{k - 1}" / "student.zip"),), teacher_weights=(), dataset=None
        )
    if k < len(archs):
        stage = replace(stage, rl_steps=0, baseline_scratch=False, rl_start="distilled")
    return stage


def _prepare(out: Path, settings: DistillSettings) -> None:
    """Create the output folder, or find this very multi-stage run unfinished there (`resume`: it must be there)."""
    if settings.resume and (not (out / STAGES_FILE).is_file() or RunFolder(out).finished):
        raise PolicykdError(f"{option('resume')}: no unfinished multi-stage run in {out}")
    identity = json.loads(json.dumps(settings.identity()))
    prepare_or_resume(out, identity, STAGES_FILE, settings.overwrite, "multi-stage run", field_defaults(settings))


def run_stages(settings: DistillSettings, distill: Callable[[DistillSettings], R]) -> tuple[R | None, dict[str, Any]]:
    """Every stage in order (finished ones read back); returns the last stage's result and the summary written to
    `<out>/summary.json`: the last stage's, with a row per stage. `distill`: the library's `distill_with`."""
    archs = stage_archs(settings.stages or "")
    if not archs:
        raise PolicykdError(
            f"{spelled('stages')} {settings.stages!r} is not a chain of shrinking archs, like 44,44:16,16"
        )
    out = settings.out_path
    _prepare(out, settings)
    rows, result = [], None
    for k in range(1, len(archs) + 1):
        stage = stage_settings(settings, k, archs)
        folder = RunFolder(stage.out_path)
        result = None if folder.finished else distill(stage)  # a finished stage is read back
        rows.append(_row(k, folder.summary()))
    summary = folder.summary()
    first = RunFolder(out / "stage-1").summary()
    teacher = first["teacher_return_mean"]
    for row in rows:
        row["return_ratio"] = return_ratio(row["student_return_mean"], teacher)
    summary.update(
        {
            key: first[key]
            for key in (
                "teachers",
                "teacher_algo",
                "teacher_params",
                "teacher_return_mean",
                "teacher_return_std",
                "teacher_returns",
            )
        }
    )
    summary.update(
        stages=rows,
        params_ratio=summary["student_params"] / first["teacher_params"],
        return_ratio=rows[-1]["return_ratio"],
        config=settings.to_dict(),
        student_path=str(out / "student.zip"),
    )
    copy_student(folder.path, out, summary["student_algo"])
    RunFolder(out).write_summary(summary)
    return result, summary


def _row(k: int, summary: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "student_arch",
        "student_params",
        "teacher_params",
        "teacher_return_mean",
        "student_return_mean",
        "student_return_std",
        "action_agreement",
        "env_steps",
        "wall_seconds",
    )
    return {
        "stage": k,
        "teacher": summary["teachers"][0] if summary["teachers"] else None,
        **{key: summary[key] for key in keys},
    }
