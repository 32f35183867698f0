"""What the user sees while a run works: TensorBoard scalars (through SB3's Logger), a progress bar, a summary table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from stable_baselines3.common.logger import Logger, TensorBoardOutputFormat, configure

# One chart with both curves: TensorBoard's custom-scalars plugin reads this layout.
RETURNS_LAYOUT = {
    "policykd": {
        "eval return: teacher vs student": ["Multiline", ["eval/teacher_return", "eval/student_return"]],
        "distillation loss": ["Multiline", ["train/loss", "train/policy_loss", "train/value_loss"]],
        "agreement": ["Multiline", ["train/action_agreement", "eval/action_agreement"]],
        "RL return vs RL env steps: teacher, student (kick), from scratch":
            ["Multiline", ["rl/teacher_return", "rl/student_return", "rl/scratch_return"]],
        "RL kick: lambda and distillation loss": ["Multiline", ["rl/kick_weight", "rl/kick_loss"]],
    }
}


def tensorboard_logger(folder: Path) -> Logger:
    """SB3's Logger writing to `folder`, with the teacher-vs-student custom-scalars layout."""
    logger = configure(str(folder), ["tensorboard"])
    for fmt in logger.output_formats:
        if isinstance(fmt, TensorBoardOutputFormat):
            fmt.writer.add_custom_scalars(RETURNS_LAYOUT)
            fmt.writer.flush()
    return logger


def progress_bar(console: Console | None = None, disable: bool = False) -> Progress:
    """Env steps, samples/s, loss, KL and the last teacher and student returns."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[sps]:>6.0f} steps/s"),
        TextColumn("loss {task.fields[loss]:.4f}  KL {task.fields[kl]:.4f}"),
        TextColumn("teacher {task.fields[teacher]}  student {task.fields[student]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=disable,
    )


SUMMARY_ROWS = (
    ("env", "env_id"),
    ("teacher", "teachers"),
    ("dataset", "dataset"),
    ("teacher algo / params", ("teacher_algo", "teacher_params")),
    ("student algo / params", ("student_algo", "student_params")),
    ("params ratio", "params_ratio"),
    ("teacher return", ("teacher_return_mean", "teacher_return_std")),
    ("student return", ("student_return_mean", "student_return_std")),
    ("return ratio", "return_ratio"),
    ("action agreement", "action_agreement"),
    ("env steps", "env_steps"),
    ("gradient steps", "gradient_steps"),
    ("wall-clock", "wall_seconds"),
)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 10 else f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, dict) and "name" in value:  # the dataset
        return f"{value['name']}: {value['episodes']} episodes, {value['steps']:,} steps"
    if value is None:
        return "-"
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value))
    return str(value)


def summary_table(summary: dict[str, Any], title: str = "policykd distill") -> Table:
    table = Table(title=title, show_header=False)
    for label, key in SUMMARY_ROWS:
        if isinstance(key, tuple):
            a, b = (summary.get(k) for k in key)
            joiner = " ± " if "return" in key[0] else " / "
            text = f"{_fmt(a)}{joiner}{_fmt(b)}"
        else:
            text = _fmt(summary.get(key))
        table.add_row(label, text)
    rl = summary.get("rl")
    if rl:
        scratch = f"; from scratch {_fmt(rl['scratch_return'])}" if rl.get("scratch_return") is not None else ""
        table.add_row("RL (+ kick)", f"{rl['rl_steps']:,} env steps: {_fmt(rl['return_before_rl'])} -> "
                                      f"{_fmt(rl['return_after_rl'])}{scratch}")
    return table
