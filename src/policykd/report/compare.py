"""Comparison figures: several runs of one env on one picture, and a benchmark's figures (one per env).

Separate from `policykd.report.plots`, which reads one run folder and draws its curves.png: these figures only
arrange runs side by side (a colour each, the shared teacher drawn once, final return against student size), and
reuse that module's reading and drawing pieces so a run looks the same alone and among others.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, NullLocator

from policykd.errors import PolicykdError
from policykd.report.plots import (
    DPI,
    RunCurves,
    _draw_scalars,
    _draw_student,
    _draw_teacher,
    _finite,
    _read_summary,
    _save,
    _step_ticks,
    _student_label,
    _teacher_label,
    agreement_label,
    load_run,
)
from policykd.rollouts import return_ratio

RUNS_SIZE, RUNS_SIZE_WITH_PARAMS = (10.0, 8.0), (12.0, 8.0)  # 1000 x 800 px; 1200 x 800 with the size panel


def _colors(n: int) -> list:
    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def _shared_teacher(runs: Sequence[RunCurves]) -> bool:
    """True when every run has the same teacher measured the same way: draw it once."""
    keys = {
        (tuple(r.summary.get("teachers") or ()), r.summary["teacher_return_mean"], r.summary["teacher_return_std"])
        for r in runs
    }
    return len(keys) == 1


def _size_panel(ax: Axes, runs: Sequence[RunCurves], names: Sequence[str], colors: list) -> None:
    """Final return ratio (`1 + (s - t)/|t|`, %) against student params, the runs' teachers at 100 %; raw returns
    where a run has no finite teacher return."""
    ratio = all(_finite(r.summary["teacher_return_mean"]) and r.summary["teacher_return_mean"] != 0 for r in runs)
    for run, color in zip(runs, colors):
        s = run.summary
        teacher = s["teacher_return_mean"]
        y = 100 * return_ratio(s["student_return_mean"], teacher) if ratio else s["student_return_mean"]
        err = s["student_return_std"] * (100 / abs(teacher) if ratio else 1.0)
        ax.errorbar(
            s.get("student_params", np.nan), y, color=color, marker="o", yerr=err if _finite(err) else None, capsize=3
        )
    if ratio:
        ax.axhline(100, color="black", linestyle="--", linewidth=1)
    ax.set_xscale("log")
    params = sorted({r.summary["student_params"] for r in runs if isinstance(r.summary.get("student_params"), int)})
    if params:  # a tick at each size, not log decades the sizes rarely reach
        ax.set_xlim(params[0] / 1.5, params[-1] * 1.5)
        ax.set_xticks(params)
        ax.xaxis.set_minor_locator(NullLocator())
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
    ax.set_xlabel("student params")
    ax.set_ylabel("return ratio to teacher (%)" if ratio else "final student return")
    ax.set_title("final return vs size", fontsize=10)
    ax.grid(alpha=0.3)


def plot_runs(run_dirs: Sequence[Path], out: Path, labels: Sequence[str] | None = None) -> Path:
    """Several runs of one env on one figure (e.g. a benchmark's student sizes), one colour each.

    Top: each student's evaluation returns (± std) and its teacher as a dashed line (one black
    line when all runs share it). Below: KL and action agreement per run, and, when the
    students differ in size, the final return relative to the teacher against student params.
    """
    if not run_dirs:
        raise PolicykdError("no run folders to plot")
    names = [str(x) for x in labels] if labels is not None else [Path(d).name for d in run_dirs]
    if len(names) != len(run_dirs):
        raise PolicykdError(f"{len(names)} labels for {len(run_dirs)} run folders: give one label per run")
    runs = [load_run(Path(d)) for d in run_dirs]
    envs = sorted({r.summary["env_id"] for r in runs})
    if len(envs) > 1:
        raise PolicykdError(f"the runs are of different envs ({', '.join(envs)}): plot each env on its own figure")
    sizes = len({r.summary.get("student_params") for r in runs}) > 1
    fig = Figure(figsize=RUNS_SIZE_WITH_PARAMS if sizes else RUNS_SIZE, dpi=DPI, layout="constrained")
    grid = fig.add_gridspec(2, 3 if sizes else 2, height_ratios=(1.6, 1))
    top = fig.add_subplot(grid[0, :])
    kl, agree = fig.add_subplot(grid[1, 0], sharex=top), fig.add_subplot(grid[1, 1], sharex=top)
    colors, shared = _colors(len(runs)), _shared_teacher(runs)
    if shared:
        _draw_teacher(top, runs[0].summary, "black", _teacher_label(runs[0].summary))
    for run, name, color in zip(runs, names, colors):
        if not shared:
            _draw_teacher(top, run.summary, color, None)
        _draw_student(top, run, color, _student_label(run.summary, name))
        _draw_scalars(kl, run.scalars, ("train/kl",), color=color, label=name)
        _draw_scalars(agree, run.scalars, ("train/action_agreement",), color=color, label=name)
    handles, texts = top.get_legend_handles_labels()
    if not shared:
        handles.append(Line2D([], [], color="0.3", linestyle="--"))
        texts.append("teacher of the run of the same colour (± std band)")
    top.legend(handles, texts, loc="best", fontsize=8 if len(runs) <= 6 else 7, ncol=1 if len(runs) <= 6 else 2)
    top.set_ylabel("episode return")
    top.set_title(f"{envs[0]}: teacher vs student evaluation returns", fontsize=11)
    kl.set_ylabel("train/kl")
    agree.set_ylabel(agreement_label(runs[0].continuous), fontsize=8)  # one env: one action space
    agree.set_ylim(-0.02, 1.02)
    mixed = len({r.offline for r in runs}) > 1
    for ax in (top, kl, agree):
        ax.grid(alpha=0.3)
        ax.set_xlabel("env steps (gradient steps for offline runs)" if mixed else runs[0].x_label)
    _step_ticks(top)
    if sizes:
        _size_panel(fig.add_subplot(grid[1, 2]), runs, names, colors)
    return _save(fig, Path(out))


def plot_benchmark(
    run_dirs: Sequence[Path], out_dir: Path, name: str, labels: Sequence[str] | None = None
) -> list[Path]:
    """A benchmark's figures: its finished runs (folders with summary.json; failed rows are
    skipped) grouped by env, one `plot_runs` figure per env: `<name>.png`, or `<name>-<env>.png`
    when the benchmark covers several envs. `labels` (one per folder) default to folder names."""
    names = list(labels) if labels is not None else [Path(d).name for d in run_dirs]
    by_env: dict[str, list[tuple[Path, str]]] = {}
    for folder, label in zip(map(Path, run_dirs), names):
        if (folder / "summary.json").is_file():
            by_env.setdefault(_read_summary(folder)["env_id"], []).append((folder, label))
    stem = {env: name if len(by_env) == 1 else f"{name}-{env.replace('/', '-')}" for env in by_env}
    return [
        plot_runs([f for f, _ in rows], Path(out_dir) / f"{stem[env]}.png", labels=[label for _, label in rows])
        for env, rows in by_env.items()
    ]
