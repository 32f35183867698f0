"""A multi-task run's summary.json (a row per task, the student's size against the teachers' together) and its
console table (a row per task)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from rich.table import Table

from policykd.rollouts import collapsed_episodes, return_ratio
from policykd.run.build import Run
from policykd.run.console import duration, plus_minus
from policykd.run.state import RunState
from policykd.sb3_models import acting_params
from policykd.students.sharing import trunk_params
from policykd.workflows.tasks.balance import task_weights
from policykd.workflows.tasks.build import TaskRuns


def tasks_summary(tasks: TaskRuns, states: list[RunState], joint: RunState) -> dict[str, object]:
    """The run as one record: a row per task (teacher and student on the same seeds), the shared student's size."""
    rows = [_row(run, state) for run, state in zip(tasks.runs, states)]
    ratios = [float(r["return_ratio"]) for r in rows]  # type: ignore[arg-type]  # floats, written just above
    seconds: dict[str, float] = dict(joint.seconds)
    for state in states:
        for kind, value in state.seconds.items():
            seconds[kind] = round(seconds.get(kind, 0.0) + value, 3)
    student, teachers = tasks.student_params, tasks.teacher_params
    return {
        "envs": tasks.settings.envs,
        "tasks": rows,
        "student_arch": list(tasks.sizing.arch),
        "student_size": tasks.sizing.reason,
        "student_params": student,
        "trunk_params": trunk_params(tasks.runs[0].student.policy),
        "teacher_params": teachers,
        "params_ratio": student / teachers if teachers else float("nan"),
        "return_ratio_geometric_mean": _geometric_mean(ratios),
        "return_ratio_min": min(ratios),
        "task_weights": task_weights(tasks.settings, states),
        "task_balance": tasks.settings.options.task_balance,
        "task_input": tasks.settings.options.task_input,
        "env_steps": sum(s.env_steps for s in states),
        "device": str(tasks.runs[0].student.device),  # the teachers label and the student trains there (--device)
        "gradient_steps": states[0].gradient_steps,
        "wall_seconds": round(joint.wall, 2),
        "seconds_by_phase": seconds,
        "config": tasks.settings.to_dict(),
    }


def _row(run: Run, state: RunState) -> dict[str, object]:
    teacher = np.array(state.teacher_returns)
    student = np.array(state.student_returns or [np.nan])
    return {
        "env_id": run.settings.env_id,
        "teachers": [m.name for m in getattr(run.teacher, "members", [run.teacher])],
        "teacher_algo": run.teacher_algo,
        "student_algo": run.student_algo,
        "teacher_params": run.teacher_params,
        "student_params": int(acting_params(run.student.policy)),
        "teacher_return_mean": float(teacher.mean()),
        "teacher_return_std": float(teacher.std()),
        "teacher_returns_source": state.teacher_returns_source,
        "student_return_mean": float(student.mean()),
        "student_return_std": float(student.std()),
        "return_ratio": return_ratio(float(student.mean()), float(teacher.mean())),
        "collapsed_episodes": collapsed_episodes(state.student_returns or [], float(teacher.mean())),
        "eval_episodes": run.settings.eval_episodes,
        "env_steps": state.env_steps,
        "student_path": str(run.out / "student.zip"),
    }


def _geometric_mean(ratios: list[float]) -> float:
    if not ratios or any(not math.isfinite(r) or r <= 0 for r in ratios):
        return float("nan")
    return math.exp(sum(math.log(r) for r in ratios) / len(ratios))


def tasks_table(summary: dict[str, Any]) -> Table:
    """A row per task: teacher and student returns on the same seeds, their ratio, collapsed episodes."""
    table = Table(
        title=f"policykd distill: one student for {len(summary['tasks'])} tasks, {summary['student_params']:,} "
        f"acting parameters ({100 * summary['params_ratio']:.1f} % of the teachers' {summary['teacher_params']:,}), "
        f"{duration(summary['wall_seconds'])}"
    )
    for column in ("env", "teacher", "student", "ratio", "collapsed", "student.zip"):
        table.add_column(column)
    for row in summary["tasks"]:
        table.add_row(
            row["env_id"],
            plus_minus(row["teacher_return_mean"], row["teacher_return_std"]),
            plus_minus(row["student_return_mean"], row["student_return_std"]),
            f"{row['return_ratio']:.3f}",
            f"{row['collapsed_episodes']}/{row['eval_episodes']}",
            row["student_path"],
        )
    return table
