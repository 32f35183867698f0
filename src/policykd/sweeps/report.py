"""A sweep's results: sweep.csv (one row per trial), sweep.md (the table and the search's evidence), pareto.png.

A finished trial's row comes from its run folder's summary.json (params, returns after RL where the
trial has RL, env steps of distillation and RL together, wall-clock); a stopped or failed one from
the last report Tune kept. The ratio is the project's one return ratio (`policykd.rollouts.return_ratio`).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict, cast

import numpy as np

from policykd.rollouts import return_ratio
from policykd.run.folder import RunFolder
from policykd.storage import atomic_write_text
from policykd.sweeps.search import Search
from policykd.sweeps.trial import env_steps_of

if TYPE_CHECKING:
    from policykd.sweeps.tuner import TrialRecord

COLUMNS = [
    "trial",
    "settings",
    "seed",
    "status",
    "student_arch",
    "student_params",
    "teacher_params",
    "params_percent",
    "student_return",
    "teacher_return",
    "return_ratio",
    "env_steps",
    "wall_seconds",
    "starts",
    "folder",
]


class TrialRow(TypedDict):
    """One trial as sweep.csv and sweep.md show it (None: not known, as for a trial that failed early)."""

    trial: str
    settings: str
    seed: int
    status: str
    student_arch: str | None
    student_params: int | None
    teacher_params: int | None
    params_percent: float | None
    student_return: float | None
    teacher_return: float | None
    return_ratio: float | None
    env_steps: int | None
    wall_seconds: float | None
    starts: int
    folder: str


def trial_row(record: TrialRecord, label: str) -> TrialRow:
    """One trial as a table row; `label` is its combination without the seed."""
    config, metrics = record.config, record.metrics
    folder = Path(config["out"])
    row: dict[str, object] = {
        "trial": folder.name,
        "settings": label,
        "seed": config["seed"],
        "status": record.status,
        "starts": record.starts,
        "folder": str(folder),
        "student_return": metrics.get("student_return"),
        "teacher_return": metrics.get("teacher_return"),
        "return_ratio": metrics.get("return_ratio"),
        "env_steps": metrics.get("env_steps"),
    }
    run = RunFolder(folder)
    if record.status == "finished" and run.finished:
        s = run.summary()
        row.update(
            student_arch="x".join(map(str, s["student_arch"])),
            student_params=s["student_params"],
            teacher_params=s["teacher_params"],
            params_percent=100 * s["student_params"] / s["teacher_params"],
            student_return=s["student_return_mean"],
            teacher_return=s["teacher_return_mean"],
            return_ratio=return_ratio(s["student_return_mean"], s["teacher_return_mean"]),
            env_steps=env_steps_of(s),
            wall_seconds=s["wall_seconds"],
        )
    elif "student_arch" in config["values"]:
        row["student_arch"] = "x".join(map(str, cast("list[int]", config["values"]["student_arch"])))
    return cast(TrialRow, {c: row.get(c) for c in COLUMNS})


def write_reports(out: Path, rows: list[TrialRow], search: Search | None) -> list[Path]:
    """sweep.csv, sweep.md and pareto.png in `out`; returns their paths."""
    with open(out / "sweep.csv.tmp", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    (out / "sweep.csv.tmp").replace(out / "sweep.csv")
    atomic_write_text(out / "sweep.md", markdown(rows, search))
    pareto = plot_pareto(rows, out / "pareto.png", search.target if search else None)
    return [out / "sweep.csv", out / "sweep.md", pareto]


def markdown(rows: list[TrialRow], search: Search | None) -> str:
    lines = [
        "| trial | status | params (% of teacher) | student | teacher | ratio | env steps | wall-clock | starts |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        params = f"{r['student_params']:,} ({r['params_percent']:.2f} %)" if r["student_params"] else "-"
        wall = f"{r['wall_seconds']:.0f} s" if r["wall_seconds"] is not None else "-"
        lines.append(
            f"| {r['trial']} | {r['status']} | {params} | {_num(r['student_return'])} | {_num(r['teacher_return'])} "
            f"| {_num(r['return_ratio'], 3)} | {r['env_steps'] or '-'} | {wall} | {r['starts']} |"
        )
    if search is not None:
        lines += ["", *search_lines(search)]
    return "\n".join(lines) + "\n"


def search_lines(search: Search) -> list[str]:
    found = "x".join(map(str, search.answer)) if search.answer else "none of the candidates"
    lines = [
        f"Smallest student at ≥ {search.target:g} × the teacher's return (mean over {search.seeds} seed(s)): "
        f"**{found}**, found with {search.trials} trials.",
        "",
        "| probe | size | seeds run | return ratios | mean | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for i, p in enumerate(search.probes, 1):
        ratios = ", ".join(f"{r:.3f}" for _, r in sorted(p.ratios.items()))
        verdict = "pass" if p.mean >= search.target else "fail"
        lines.append(f"| {i} | {'x'.join(map(str, p.arch))} | {len(p.ratios)} | {ratios} | {p.mean:.3f} | {verdict} |")
    return lines


def plot_pareto(rows: list[TrialRow], path: Path, target: float | None) -> Path:
    """Acting params (log) against return ratio: mean and spread over seeds per size, one series per other setting."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    done = [r for r in rows if r["status"] == "finished"]
    for series in sorted({_without_size(r["settings"]) for r in done}):
        points: dict[int, list[float]] = {}
        for r in done:
            if _without_size(r["settings"]) == series:
                points.setdefault(cast(int, r["student_params"]), []).append(cast(float, r["return_ratio"]))
        xs = sorted(points)
        means = [float(np.mean(points[x])) for x in xs]
        spread = [float(np.std(points[x])) for x in xs]
        ax.errorbar(xs, means, yerr=spread, marker="o", capsize=3, label=series or "student")
    ax.axhline(1.0, color="black", lw=1, label="teacher")
    if target is not None:
        ax.axhline(target, color="gray", ls="--", lw=1, label=f"target {target:g}")
    ax.set_xscale("log")
    ax.set_xlabel("student acting parameters")
    ax.set_ylabel("return / teacher's (mean ± std over seeds)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _without_size(label: str) -> str:
    return ",".join(part for part in label.split(",") if not part.startswith("student_arch=") and part != "default")


def _num(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"
