"""A multi-task run's curves.png: a panel per task (its teacher and the shared student's evaluations on that task),
drawn from each task's folder as `curves.png` of a single run is (`policykd.report.plots`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from matplotlib.figure import Figure

from policykd.report.plots import DPI, _draw_student, _draw_teacher, _save, _student_label, _teacher_label, load_run


def write_task_curves(task_folders: Sequence[Path], out: Path) -> Path:
    """One panel per task folder, up to three across; written to `out`."""
    across = min(3, len(task_folders))
    down = math.ceil(len(task_folders) / across)
    fig = Figure(figsize=(4.5 * across, 3.8 * down), dpi=DPI, layout="constrained")
    axes = fig.subplots(down, across, squeeze=False).ravel()
    for ax, folder in zip(axes, task_folders):
        run = load_run(folder)
        s = run.summary
        _draw_teacher(ax, s, "black", _teacher_label(s))
        _draw_student(ax, run, "tab:blue", _student_label(s))
        ax.set_title(s["env_id"], fontsize=10)
        ax.set_xlabel(run.x_label)
        ax.set_ylabel("episode return")
        ax.legend(loc="best", fontsize=7)
        ax.grid(alpha=0.3)
    for ax in axes[len(task_folders) :]:
        ax.set_visible(False)
    fig.suptitle(f"one student, {len(task_folders)} tasks", fontsize=11)
    return _save(fig, out)
