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
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

from policykd.files import atomic_write_text, field_defaults, prepare_or_resume
from policykd.report.output import copy_student
from policykd.settings import DistillSettings, stage_archs

STAGES_FILE = "stages.json"


def stage_settings(settings: DistillSettings, k: int, archs: list[tuple[int, ...]]) -> DistillSettings:
    """Stage k (1-based): the run's settings with this stage's arch, teacher and folder."""
    last = k == len(archs)
    teacher = {} if k == 1 else {"teachers": (str(Path(settings.out) / f"stage-{k - 1}" / "student.zip"),),
                                 "teacher_weights": (), "dataset": None}
    rl = {} if last else {"rl_steps": 0, "baseline_scratch": False, "rl_start": "distilled"}
    return replace(settings, stages=None, student_arch=archs[k - 1], out=str(Path(settings.out) / f"stage-{k}"),
                   overwrite=False, resume=False, prune_to=None, **teacher, **rl)


def _prepare(out: Path, settings: DistillSettings) -> None:
    """Create the output folder, or find this very multi-stage run unfinished there."""
    identity = json.loads(json.dumps(settings.identity()))
    prepare_or_resume(out, identity, STAGES_FILE, settings.overwrite, "multi-stage run", field_defaults(settings))


def run_stages(settings: DistillSettings, distill: Callable[[DistillSettings], Any]) -> tuple[Any, dict[str, Any]]:
    """Every stage in order (finished ones read back); returns the last stage's result and the summary written to
    `<out>/summary.json`: the last stage's, with a row per stage. `distill`: the library's `distill_with`."""
    archs = stage_archs(settings.stages)
    out = Path(settings.out)
    _prepare(out, settings)
    rows, result = [], None
    for k in range(1, len(archs) + 1):
        stage = stage_settings(settings, k, archs)
        done = Path(stage.out) / "summary.json"
        result = None if done.is_file() else distill(stage)  # a finished stage is read back
        rows.append(_row(k, json.loads(done.read_text())))
    summary = json.loads(done.read_text())
    first = json.loads((out / "stage-1" / "summary.json").read_text())
    teacher = first["teacher_return_mean"]
    for row in rows:
        row["return_ratio_to_teacher"] = row["student_return_mean"] / teacher if teacher else float("nan")
    summary.update({key: first[key] for key in ("teachers", "teacher_algo", "teacher_params", "teacher_return_mean",
                                                 "teacher_return_std", "teacher_returns")})
    summary.update(stages=rows, params_ratio=summary["student_params"] / first["teacher_params"],
                   return_ratio=rows[-1]["return_ratio_to_teacher"], config=settings.to_dict(),
                   student_path=str(out / "student.zip"))
    copy_student(done.parent, out, summary["student_algo"])
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    return result, summary


def _row(k: int, summary: dict[str, Any]) -> dict[str, Any]:
    keys = ("student_arch", "student_params", "teacher_params", "teacher_return_mean", "student_return_mean",
            "student_return_std", "return_ratio", "action_agreement", "env_steps", "wall_seconds")
    return {"stage": k, "teacher": summary["teachers"][0] if summary["teachers"] else None,
            **{key: summary[key] for key in keys}}

