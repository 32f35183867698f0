"""rl.png: what RL continuation did, from summary.json alone.

Top: return against RL env steps for the teacher (a line), the student under RL with the kick and, when it was
trained, the same net from scratch (mean +- std over the evaluation episodes). Below: the kick's lambda and its
distillation loss. The distilled student's return sits at step 0, where RL began.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from policykd.errors import PolicykdError
from policykd.report.plots import DPI, _save
from policykd.run.folder import RunFolder

RL_SIZE = (8.0, 6.5)


def _curve(ax: Axes, evals: Sequence[Mapping[str, float]], start: float | None, color: str, label: str) -> None:
    steps = np.array([0] * (start is not None) + [e["env_steps"] for e in evals], dtype=float)
    mean = np.array([start] * (start is not None) + [e["return_mean"] for e in evals], dtype=float)
    std = np.array([0.0] * (start is not None) + [e["return_std"] for e in evals], dtype=float)
    ax.plot(steps, mean, color=color, marker="o", markersize=3, label=f"{label}: {mean[-1]:.1f}")
    ax.fill_between(steps, mean - std, mean + std, color=color, alpha=0.15)


def write_rl_curves(run_dir: Path, out: Path | None = None) -> Path:
    """rl.png in the run folder (unless `out`) of a run that had --rl-steps."""
    summary = RunFolder(Path(run_dir)).summary()
    rl = summary.get("rl")
    if not rl:
        raise PolicykdError(f"{run_dir} is a run without RL continuation (no rl_steps): it has no rl.png to draw")
    fig = Figure(figsize=RL_SIZE, dpi=DPI, layout="constrained")
    top, low = fig.subplots(2, 1, sharex=True, height_ratios=(2.2, 1))
    top.axhline(
        summary["teacher_return_mean"],
        color="black",
        linestyle="--",
        label=f"teacher: {summary['teacher_return_mean']:.1f}",
    )
    _curve(top, rl["evals"], rl["return_before_rl"], "tab:blue", f"student ({rl['start']}, RL + kick)")
    if rl["scratch_evals"]:
        _curve(top, rl["scratch_evals"], None, "tab:red", "same net from scratch (RL only)")
    top.set_ylabel("episode return")
    top.set_title(f"{summary['env_id']}: RL continuation, {rl['kick_schedule']} kick, lambda_0 = {rl['kick_weight']}")
    top.legend(loc="best", fontsize=9)
    top.grid(alpha=0.3)
    steps = [e["env_steps"] for e in rl["evals"]]
    weights = [e["kick_weight"] for e in rl["evals"]]
    low.step([0, *steps], [weights[0], *weights], where="pre", color="tab:green", label="lambda (per segment)")
    low.plot(steps, [e["kick_loss"] for e in rl["evals"]], color="tab:purple", marker=".", label="distillation loss")
    low.set_xlabel("RL env steps")
    low.legend(loc="best", fontsize=9)
    low.grid(alpha=0.3)
    return _save(fig, Path(out) if out else Path(run_dir) / "rl.png")
