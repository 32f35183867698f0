"""curves.png: one run's figure, drawn from what its folder already holds, and the pieces every figure of runs uses.

A figure is made only from `summary.json` and the TensorBoard event files, never from live
objects, so the same code draws a run that just finished, an old run, or a benchmark's runs.
Matplotlib is used through `Figure` + the Agg canvas directly: no pyplot, no global backend
switch, nothing that a notebook or another library in the same process would notice.
Figures of several runs side by side (`plot_runs`, `plot_benchmark`) are `policykd.report.compare`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import EngFormatter, MaxNLocator, NullLocator

from policykd.constants import AGREEMENT_TOLERANCE
from policykd.envs import folder_name
from policykd.errors import PolicykdError
from policykd.rollouts import return_ratio
from policykd.run.console import plus_minus
from policykd.run.folder import SUMMARY, RunFolder
from policykd.sb3_models import read_zip_data, saved_space
from policykd.storage import atomic_write

DPI = 100
CURVES_SIZE = (8.0, 8.0)  # inches: 800 x 800 px
REQUIRED = (
    "env_id",
    "env_steps",
    "gradient_steps",
    "evals",
    "teacher_return_mean",
    "teacher_return_std",
    "student_return_mean",
    "student_return_std",
)


class Series(NamedTuple):
    """One TensorBoard scalar: steps (the run's x-axis) and values, sorted by step."""

    steps: np.ndarray
    values: np.ndarray


@dataclass(frozen=True)
class RunCurves:
    """What a figure needs from one run folder, read once.

    `x` is env steps, or gradient steps for an offline run (no env steps): the same axis the
    run logged to TensorBoard, so evaluations and training scalars line up.
    """

    folder: Path
    summary: dict[str, Any]
    x: np.ndarray  # per evaluation
    gradient_steps: np.ndarray  # per evaluation
    mean: np.ndarray
    std: np.ndarray  # nan where the run did not record it
    scalars: dict[str, Series] = field(repr=False)
    steps_pairs: Series = field(repr=False)  # (env steps, gradient steps) the run really passed through
    continuous: bool | None = None  # the student's actions: a Box (None: no student.zip to tell)

    @property
    def offline(self) -> bool:
        return not self.summary["env_steps"]

    @property
    def x_label(self) -> str:
        return "gradient steps (offline: no env steps)" if self.offline else "env steps"


def read_scalars(run_dir: Path) -> dict[str, Series]:
    """Every scalar the distillation logged, merged across its files (a resumed run writes a second file; the later
    value of a repeated step wins). Only tb/ itself: RL continuation's SB3 models log to tb/rl and tb/scratch on
    their own env steps, with their own train/loss; mixed in, they would stretch the x-axis past the distillation."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    merged: dict[str, dict[int, float]] = {}
    tb = Path(run_dir) / "tb"
    files = tb.glob("events.out.tfevents.*") if tb.is_dir() else []
    for path in sorted(files, key=lambda p: (p.stat().st_mtime, p.name)):
        acc = EventAccumulator(str(path), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            merged.setdefault(tag, {}).update((e.step, e.value) for e in acc.Scalars(tag))
    return {tag: Series(*np.array(sorted(pts.items()), dtype=float).reshape(-1, 2).T) for tag, pts in merged.items()}


def _read_summary(run_dir: Path) -> dict[str, Any]:
    """summary.json through `RunFolder` (absent or unreadable: refused in one line), and the keys a figure needs."""
    summary = RunFolder(run_dir).summary()
    missing = [key for key in REQUIRED if key not in summary]
    if missing:
        raise PolicykdError(f"{run_dir / SUMMARY} lacks {', '.join(missing)}: not written by this version of policykd")
    return summary


def _continuous(run_dir: Path) -> bool | None:
    """Whether the run's student acts in a Box, read from student.zip's JSON (nothing unpickled); None without one."""
    try:
        return saved_space(read_zip_data(RunFolder(run_dir).student_zip), "action_space").startswith("Box")
    except PolicykdError:
        return None


def _steps_pairs(scalars: dict[str, Series], env_steps: np.ndarray, gradient_steps: np.ndarray) -> Series:
    """Gradient steps done by each env step count the run reached, as it logged them: every round's
    `time/gradient_steps`, else the evaluations'. Starts at (0, 0)."""
    logged = scalars.get("time/gradient_steps")
    x, y = (logged.steps, logged.values) if logged is not None and len(logged.steps) else (env_steps, gradient_steps)
    known = np.isfinite(x) & np.isfinite(y) & (x > 0)
    return Series(np.concatenate([[0.0], x[known]]), np.concatenate([[0.0], y[known]]))


def load_run(run_dir: Path) -> RunCurves:
    """The run's evaluations (std from the summary's entries, else from TensorBoard) and scalars."""
    run_dir = Path(run_dir)
    summary = _read_summary(run_dir)
    scalars = read_scalars(run_dir)
    evals = summary["evals"] or []
    axis = "gradient_steps" if not summary["env_steps"] else "env_steps"
    if not evals and _finite(summary["student_return_mean"]):  # evaluated only at the end
        evals = [{key: summary[key] for key in (axis, "gradient_steps", "student_return_mean", "student_return_std")}]
    logged_std = dict(zip(*scalars.get("eval/student_return_std", ((), ()))))
    evals = [{"student_return_std": logged_std.get(e.get(axis), np.nan), **e} for e in evals]

    def column(key: str) -> np.ndarray:
        return np.array([e.get(key, np.nan) for e in evals], dtype=float)

    x, gradient_steps = column(axis), column("gradient_steps")
    return RunCurves(
        folder=run_dir,
        summary=summary,
        x=x,
        gradient_steps=gradient_steps,
        mean=column("student_return_mean"),
        std=column("student_return_std"),
        scalars=scalars,
        steps_pairs=_steps_pairs(scalars, x, gradient_steps),
        continuous=_continuous(run_dir),
    )


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _pm(mean: float | None, std: float | None) -> str:
    """mean ± std as the summary table writes it (`plus_minus`); "n/a" in a legend without a mean."""
    return plus_minus(mean, std) if _finite(mean) else "n/a"


def _params(summary: dict[str, Any], who: str) -> str:
    value = summary.get(f"{who}_params")
    return f"{value:,} params" if isinstance(value, int) else "params unknown"


def _teacher_label(summary: dict[str, Any]) -> str:
    source = " (dataset episodes)" if summary.get("teacher_return_source") == "dataset episodes" else ""
    full = " (full state)" if summary.get("student_obs") else ""
    return (
        f"teacher{source}{full}: {_pm(summary['teacher_return_mean'], summary['teacher_return_std'])}"
        f" ({_params(summary, 'teacher')})"
    )


def _student_label(summary: dict[str, Any], name: str = "student") -> str:
    arch = ",".join(map(str, summary.get("student_arch") or ()))
    arch = f" [{arch}]" if arch and arch != name else ""  # not "8,8 [8,8]"
    view = f" (sees {' '.join(summary['student_obs'])})" if summary.get("student_obs") else ""
    return (
        f"{name}{arch}{view}: {_pm(summary['student_return_mean'], summary['student_return_std'])}"
        f" ({_params(summary, 'student')})"
    )


def _draw_teacher(ax: Axes, summary: dict[str, Any], color: str, label: str | None) -> None:
    """The teacher is evaluated once: a horizontal line at its mean and a band of ± one std."""
    mean, std = summary["teacher_return_mean"], summary["teacher_return_std"]
    if _finite(mean):
        ax.axhline(mean, color=color, linestyle="--", linewidth=1.5, label=label)
    if _finite(mean) and _finite(std) and std > 0:
        ax.axhspan(mean - std, mean + std, color=color, alpha=0.12, linewidth=0)


def _draw_student(ax: Axes, run: RunCurves, color: str, label: str) -> None:
    """Evaluation returns with markers (one evaluation is still visible) and a ± std band."""
    ax.plot(run.x, run.mean, color=color, marker="o", markersize=4, linewidth=1.8, label=label)
    known = np.isfinite(run.std)
    if known.any():
        ax.fill_between(
            run.x[known], (run.mean - run.std)[known], (run.mean + run.std)[known], color=color, alpha=0.2, linewidth=0
        )
        if known.sum() == 1:  # a band of one point is invisible: an error bar instead
            ax.errorbar(run.x[known], run.mean[known], yerr=run.std[known], color=color, capsize=4, linewidth=1)


def _count(n: float) -> str:
    """A step count as a tick label: exact below 100k (391, 12,000), short above (1.2M)."""
    return f"{n:,.0f}" if n < 1e5 else EngFormatter(places=1, sep="")(n)


def gradient_ticks(pairs: Series, most: int = 6) -> Series:
    """Where the top axis marks gradient steps: at env step counts the run really reached, labelled with the
    gradient steps it had done there (at most `most`, first and last kept). Gradient steps grow with the buffer,
    not with env steps, so a scale drawn between these points would be invented."""
    chosen = np.unique(np.round(np.linspace(0, len(pairs.steps) - 1, min(len(pairs.steps), most))).astype(int))
    return Series(pairs.steps[chosen], pairs.values[chosen])


def _gradient_axis(ax: Axes, run: RunCurves) -> None:
    """Gradient steps on a top axis, ticked only where the run logged how many it had done; none for an offline run
    (its x already is gradient steps)."""
    if run.offline or len(run.steps_pairs.steps) < 2:
        return
    ticks = gradient_ticks(run.steps_pairs)
    top = ax.secondary_xaxis("top")
    top.set_xticks(ticks.steps, labels=[_count(n) for n in ticks.values])
    top.xaxis.set_minor_locator(NullLocator())
    top.set_xlabel("gradient steps done by then")


def _draw_scalars(
    ax: Axes, scalars: dict[str, Series], tags: Sequence[str], color: str | None = None, label: str | None = None
) -> list[str]:
    """Plot the tags the run logged (each with its own colour unless `color`); returns the ones found."""
    found = [tag for tag in tags if tag in scalars and len(scalars[tag].steps)]
    for tag in found:
        steps, values = scalars[tag]
        ax.plot(
            steps,
            values,
            marker="o",
            markersize=3,
            linewidth=1.4,
            color=color,
            label=label if label is not None else tag,
        )
    return found


def _step_ticks(ax: Axes) -> None:
    """From step 0 (one evaluation is not lost in a sliver of axis), with few, short labels
    (800, 1.6k, 2M): the narrow lower panels share this axis. Call after drawing."""
    ax.set_xlim(left=0)
    ax.xaxis.set_major_locator(MaxNLocator(nbins=5, integer=True))
    ax.xaxis.set_major_formatter(EngFormatter(sep=""))


def _legend_above(ax: Axes, handles: list) -> None:
    """One row above a short panel, where it can never hide a curve."""
    ax.legend(
        handles,
        [h.get_label() for h in handles],
        loc="lower left",
        bbox_to_anchor=(0, 1),
        ncol=len(handles),
        fontsize=8,
        frameon=False,
        borderaxespad=0.2,
    )


def _no_data(ax: Axes, what: str) -> None:
    ax.text(0.5, 0.5, f"no {what} in the run's TensorBoard files", transform=ax.transAxes, ha="center", color="0.4")


def _logged(scalars: dict[str, Series], tag: str) -> bool:
    return tag in scalars and len(scalars[tag].steps) > 0


def _same_series(a: Series, b: Series) -> bool:
    return a.steps.shape == b.steps.shape and np.array_equal(a.steps, b.steps) and np.allclose(a.values, b.values)


def _loss_panel(ax: Axes, run: RunCurves) -> None:
    """The distillation loss and its parts; log scale when positive (the value loss dwarfs the KL). A part that is
    all zeros (no value term, e.g. a SAC student) is left out, and a total equal to its one part is drawn once and
    says so: otherwise the total would hide under the policy loss. The total is dashed, on top."""
    scalars = run.scalars
    parts = [t for t in ("train/policy_loss", "train/value_loss") if _logged(scalars, t) and np.any(scalars[t].values)]
    total = "train/loss" if _logged(scalars, "train/loss") else None
    label = total
    if total and parts == ["train/policy_loss"] and _same_series(scalars[total], scalars["train/policy_loss"]):
        parts, label = [], "train/loss (= train/policy_loss: no value term)"
    _draw_scalars(ax, scalars, parts)
    if total:
        _draw_scalars(ax, scalars, (total,), color="black", label=label)
        ax.get_lines()[-1].set(linestyle="--", zorder=3)
    if not (parts or total):
        _no_data(ax, "train/loss")
        return
    if all(np.all(scalars[tag].values > 0) for tag in [*parts, *([total] if total else [])]):
        ax.set_yscale("log")
    ax.set_ylabel("loss")
    _legend_above(ax, ax.get_lines())


def _kl_agreement_panel(ax: Axes, run: RunCurves) -> None:
    """KL (left axis) and action agreement with the teacher (right axis, 0..1)."""
    kl = _draw_scalars(ax, run.scalars, ("train/kl",), color="tab:purple", label="train/kl")
    ax.set_ylabel("KL (teacher ‖ student)")
    right = ax.twinx()
    agree = _draw_scalars(right, run.scalars, ("train/action_agreement", "eval/action_agreement"))
    for line, evaluated in zip(right.get_lines(), (False, True)):  # train solid, eval dotted
        line.set_linestyle(":" if evaluated else "-")
        line.set_color("tab:green")
    right.set_ylim(-0.02, 1.02)
    right.set_ylabel(agreement_label(run.continuous), fontsize=8)
    if not kl and not agree:
        _no_data(ax, "train/kl or action agreement")
        return
    _legend_above(ax, ax.get_lines() + right.get_lines())


def agreement_label(continuous: bool | None) -> str:
    """The agreement axis's label, with what it counts (`policykd.distributions.same_actions`): for continuous
    actions a tolerance, not equality, which a reader cannot guess. Three short lines: the panel is short."""
    within = f"every dim within\n{100 * AGREEMENT_TOLERANCE:g} % of its range"
    if continuous is None:
        return f"action agreement\n(same action, or {within})"
    return f"action agreement\n({within})" if continuous else "action agreement\n(the same action)"


def _save(fig: Figure, out: Path) -> Path:
    """Render with Agg into a temporary name renamed into place, so a reader never sees half a PNG."""
    out = Path(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(out, lambda tmp: FigureCanvasAgg(fig).print_png(str(tmp)))
    except OSError as err:
        raise PolicykdError(f"cannot write {out}: {err.strerror}") from None
    return out


def run_title(summary: dict[str, Any], folder: Path) -> str:
    """The figure's title: the run's folder, the env before it unless the folder's name already says it (runs/<env>
    is the default folder), what was done, and the return ratio."""
    env, name = summary["env_id"], folder.name
    said = folder_name(env) in name or env.rsplit("/", 1)[-1] in name
    ratio = return_ratio(summary["student_return_mean"], summary["teacher_return_mean"])
    done = f"{summary['env_steps']:,} env steps, {summary['gradient_steps']:,} gradient steps"
    return (
        f"{name if said else f'{env}: {name}'}  ({done}"
        + (f"; return ratio {100 * ratio:.1f} %" if _finite(ratio) else "")
        + ")"
    )


def curves_figure(run: RunCurves) -> Figure:
    """curves.png's figure: returns on top, training below.

    Top: the teacher's return (line at its mean, band ± std) and the student's evaluation returns against env steps
    (± std bands), gradient steps on the top axis; the legend gives the final mean ± std and params of both. Below:
    loss, KL and action agreement from TensorBoard.
    """
    s = run.summary
    fig = Figure(figsize=CURVES_SIZE, dpi=DPI, layout="constrained")
    top, loss, kl = fig.subplots(3, 1, sharex=True, height_ratios=(2.2, 1, 1))
    _draw_teacher(top, s, "black", _teacher_label(s))
    _draw_student(top, run, "tab:blue", _student_label(s))
    top.set_ylabel("episode return")
    top.legend(loc="best", fontsize=9)
    top.grid(alpha=0.3)
    fig.suptitle(run_title(s, run.folder), fontsize=11)
    _loss_panel(loss, run)
    _kl_agreement_panel(kl, run)
    loss.grid(alpha=0.3)
    kl.grid(alpha=0.3)
    kl.set_xlabel(run.x_label)
    _step_ticks(kl)
    _gradient_axis(top, run)  # after the x limits are set: its ticks are fixed, not located
    return fig


def write_curves(run_dir: Path, out: Path | None = None) -> Path:
    """curves.png of one run (`curves_figure`), in the run folder unless `out`."""
    run = load_run(Path(run_dir))
    return _save(curves_figure(run), Path(out) if out is not None else run.folder / "curves.png")
