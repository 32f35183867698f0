"""policykd: distil a strong, heavy RL policy into a small, fast Stable-Baselines3 student.

    import policykd
    result = policykd.distill("CartPole-v1")          # the shipped teacher, the env's preset
    print(result.summary.student_return_mean, result.out / "student.zip")

Commands (each also takes a settings object: `distill_with(DistillSettings(...))`):
    distill, distill_tasks (one student, several envs), evaluate, record, train_teacher, export, prune,
    sweep (Ray Tune: pip install 'policykd[ray]')
Teachers:
    load_teacher, load_teachers
Settings and results:
    DistillSettings, EvaluateSettings, ExportSettings, PruneSettings, RecordSettings, SweepSettings, TrainTeacherSettings,
    MultiTaskSettings, DistillResult, TasksResult, RunSummary
Errors:
    PolicykdError (bad input: one line)

Importing this package is light; torch, SB3 and gymnasium load on first use.
"""

from __future__ import annotations

from typing import Any

from policykd.api import (
    DistillResult,
    TasksResult,
    distill,
    distill_tasks,
    distill_tasks_with,
    distill_with,
    evaluate,
    evaluate_with,
    export,
    export_with,
    prune,
    prune_with,
    record,
    record_with,
    sweep,
    sweep_with,
    train_teacher,
    train_teacher_with,
)
from policykd.errors import PolicykdError
from policykd.settings import (
    DistillSettings,
    EvaluateSettings,
    ExportSettings,
    PruneSettings,
    RecordSettings,
    SweepSettings,
    TrainTeacherSettings,
)
from policykd.settings.tasks import MultiTaskSettings

__all__ = [
    # commands
    "distill",
    "distill_with",
    "distill_tasks",
    "distill_tasks_with",
    "evaluate",
    "evaluate_with",
    "record",
    "record_with",
    "train_teacher",
    "train_teacher_with",
    "export",
    "export_with",
    "prune",
    "prune_with",
    "sweep",
    "sweep_with",
    # teachers
    "load_teacher",
    "load_teachers",
    # settings and results
    "DistillSettings",
    "EvaluateSettings",
    "ExportSettings",
    "PruneSettings",
    "RecordSettings",
    "SweepSettings",
    "TrainTeacherSettings",
    "MultiTaskSettings",
    "DistillResult",
    "TasksResult",
    "RunSummary",
    # errors
    "PolicykdError",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """Teachers and the summary type import torch and SB3: loaded when first asked for."""
    if name in ("load_teacher", "load_teachers"):
        from policykd import teachers

        return getattr(teachers, name)
    if name == "RunSummary":
        from policykd.run.summary import RunSummary

        return RunSummary
    raise AttributeError(f"module 'policykd' has no attribute {name!r}")
