"""What the user sees while a run works: TensorBoard scalars (through SB3's Logger), a progress bar, a summary table."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, TypeGuard

from rich.console import Console
from rich.measure import Measurement
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.segment import Segments
from rich.table import Table
from rich.text import Text
from stable_baselines3.common.logger import Logger, TensorBoardOutputFormat, configure

# One chart with both curves: TensorBoard's custom-scalars plugin reads this layout.
RETURNS_LAYOUT = {
    "policykd": {
        "eval return: teacher vs student": ["Multiline", ["eval/teacher_return", "eval/student_return"]],
        "distillation loss": ["Multiline", ["train/loss", "train/policy_loss", "train/value_loss"]],
        "agreement": ["Multiline", ["train/action_agreement", "eval/action_agreement"]],
        "RL return vs RL env steps: teacher, student (kick), from scratch": [
            "Multiline",
            ["rl/teacher_return", "rl/student_return", "rl/scratch_return"],
        ],
        "RL kick: lambda and distillation loss": ["Multiline", ["rl/kick_weight", "rl/kick_loss"]],
    }
}


def tensorboard_logger(folder: Path, student_obs: tuple[str, ...] = ()) -> Logger:
    """SB3's Logger writing to `folder`, with the teacher-vs-student custom-scalars layout (and, for a student that
    sees less than its teacher, its view as the text `student_obs`)."""
    logger = configure(str(folder), ["tensorboard"])
    for fmt in logger.output_formats:
        if isinstance(fmt, TensorBoardOutputFormat):
            fmt.writer.add_custom_scalars(RETURNS_LAYOUT)
            if student_obs:
                fmt.writer.add_text("student_obs", " ".join(student_obs) + " (the teacher sees the full observation)")
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
    ("student size", "student_size"),
    ("student sees", "student_obs"),
    ("params ratio", "params_ratio"),
    ("teacher return", ("teacher_return_mean", "teacher_return_std")),
    ("student return", ("student_return_mean", "student_return_std")),
    ("return ratio", "return_ratio"),
    ("collapsed / episodes", ("collapsed_episodes", "eval_episodes")),
    ("action agreement", "action_agreement"),
    ("env steps", "env_steps"),
    ("gradient steps", "gradient_steps"),
    ("wall-clock", "wall_seconds"),
)


def _fmt(value: object) -> str:
    if isinstance(value, float):
        if not math.isfinite(value):  # not measured (an agreement without the teacher's view of the state)
            return "-"
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


def _finite(value: object) -> TypeGuard[float]:
    return isinstance(value, (int, float)) and math.isfinite(value)


def plus_minus(mean: float | None, std: float | None) -> str:
    """mean ± std, both at the mean's precision (500.0 ± 0.0, -0.53 ± 0.12, 1.2e+05 ± 3.4e+03): one number's digits
    say how precise both are; "-" without a mean."""
    if not _finite(mean):
        return "-"
    spec = ".3g" if abs(mean) >= 1e5 else ",.1f" if abs(mean) >= 10 else ".2f"
    return f"{mean:{spec}} ± {std:{spec}}" if _finite(std) else f"{mean:{spec}}"


def duration(seconds: float | None) -> str:
    """Wall-clock in seconds at one decimal, always with its unit (a log read later has no other clue); minutes
    and hours beside it once it is long enough that seconds are hard to read."""
    if not _finite(seconds):
        return "-"
    whole = round(seconds)
    if whole < 60:
        return f"{seconds:,.1f} s"
    hours, rest = divmod(whole, 3600)
    clock = f"{hours} h {rest // 60:02d} min" if hours else f"{rest // 60} min {rest % 60:02d} s"
    return f"{seconds:,.1f} s ({clock})"


def _row_text(summary: dict[str, Any], key: str | tuple[str, str]) -> str:
    if isinstance(key, tuple):
        a, b = (summary.get(k) for k in key)
        return plus_minus(a, b) if key[0].endswith("_return_mean") else f"{_fmt(a)} / {_fmt(b)}"
    if key == "student_obs":  # the view, in the order its stages apply
        return " ".join(summary.get(key) or ()) or "the teacher's observation"
    return duration(summary.get(key)) if key == "wall_seconds" else _fmt(summary.get(key))


def summary_table(summary: dict[str, Any], title: str = "policykd distill") -> Table:
    """The run's summary as label / value rows; a value too long for the terminal folds onto the next line (a
    teacher's path is never cut with an ellipsis)."""
    table = Table(title=title, show_header=False)
    table.add_column("what", no_wrap=True)
    table.add_column("value", overflow="fold")
    for label, key in SUMMARY_ROWS:
        table.add_row(label, Text(_row_text(summary, key)))  # Text: a path's `[8,8]` is not markup
    rl = summary.get("rl")
    if rl:
        scratch = f"; from scratch {_fmt(rl['scratch_return'])}" if rl.get("scratch_return") is not None else ""
        table.add_row(
            "RL (+ kick)",
            f"{rl['rl_steps']:,} env steps: {_fmt(rl['return_before_rl'])} -> {_fmt(rl['return_after_rl'])}{scratch}",
        )
    return table


def print_line(console: Console, text: str) -> None:
    """One line as written, never wrapped or cropped, whatever the console's width (a path or a command in a CI log
    stays whole and can be copied), and no rich markup or highlighting read into it (a path may hold `[8,8]`)."""
    console.print(text, soft_wrap=True, markup=False, highlight=False)


def print_table(console: Console, table: Table) -> None:
    """On a terminal, folded to its width; elsewhere (a file, a CI log: no width to keep to) rendered as wide as its
    rows, so that no value is split across lines."""
    if console.is_terminal:
        console.print(table)
        return
    unbounded = console.options.update_width(1_000_000)
    width = max(console.width, Measurement.get(console, unbounded, table).maximum)
    lines = console.render_lines(table, console.options.update_width(width), new_lines=True)
    console.print(Segments([segment for line in lines for segment in line]), soft_wrap=True)


def print_summary(console: Console, summary: dict[str, Any], out: Path) -> None:
    """The summary table, then where the student is and the TensorBoard command, each whole on its own line."""
    print_table(console, summary_table(summary))
    print_line(console, f"student: {summary['student_path']}")
    print_line(console, f"TensorBoard: tensorboard --logdir {out / 'tb'}")


def resuming_line(out: Path, env_steps: int, gradient_steps: int) -> str:
    """What a resumed run says first: that it continues, and from where (an offline run has no env steps)."""
    where = f"{env_steps:,} env steps" if env_steps else f"{gradient_steps:,} gradient steps"
    return f"resuming {out} from its checkpoint at {where}"
