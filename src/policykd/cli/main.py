"""`policykd distill | evaluate | record | teachers | train-teacher | plot | export | prune | sweep`.

Each command's options are generated from its settings dataclass (`policykd.settings`); the
handlers below only turn the given values into settings and call the library. Bad input is
one line on stderr and exit status 2; Ctrl-C and SIGTERM (what Slurm, Kubernetes and systemd
send before a kill) both stop a run the same way, its work so far written.
"""

from __future__ import annotations

import contextvars
import inspect
import json
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from types import FrameType
from typing import TYPE_CHECKING, cast

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from policykd.cli.generate import Command, Group, Handler, command_for, given_values, paragraphs
from policykd.errors import PolicykdError, use_cli_spelling
from policykd.fields import build, spelled
from policykd.run.console import print_table
from policykd.settings import (
    DistillSettings,
    EvaluateSettings,
    ExportSettings,
    PlotSettings,
    PruneSettings,
    RecordSettings,
    SweepSettings,
    TrainTeacherSettings,
)
from policykd.settings.tasks import TaskSettings

if TYPE_CHECKING:
    from signal import _HANDLER

app = typer.Typer(
    cls=Group, add_completion=False, no_args_is_help=True, help="Distil a heavy RL policy into a small SB3 student."
)
err_console = Console(stderr=True)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the run is so that it stops as on Ctrl-C (student written, checkpoint kept)."""


def _distill(values: dict[str, object]) -> None:
    """One --env: a distillation; several: one student for all of them (`policykd.api.distill_tasks_with`)."""
    from policykd.api import distill_tasks_with, distill_with
    from policykd.presets import resolve_distill, resolve_tasks

    envs = list(cast("list[str]", values.pop("env_id") or []))
    given = given_values(DistillSettings, values)
    tasks = given_values(TaskSettings, values)
    if len(envs) > 1:
        teachers = cast("tuple[str, ...]", given.pop("teachers", ()))
        distill_tasks_with(resolve_tasks(envs, teachers=teachers, **tasks, **given))  # type: ignore[arg-type]
        return
    if tasks:
        raise PolicykdError(
            f"{', '.join(spelled(n) for n in sorted(tasks))} set how several --env share one student: give two or more"
        )
    distill_with(resolve_distill(envs[0] if envs else "", **given))


def _distill_command() -> Callable[..., None]:
    """distill's options, --env repeatable (several: one multi-task student), and the options of several tasks in a
    help panel of their own."""
    handle = _stoppable(_distill)
    own = list(inspect.signature(command_for(DistillSettings, handle)).parameters.values())
    own = [p.replace(annotation=list[str] | None) if p.name == "env_id" else p for p in own]
    next(p for p in own if p.name == "env_id").default.metavar = "TEXT"
    tasks = list(inspect.signature(command_for(TaskSettings, handle)).parameters.values())
    for p in tasks:
        p.default.rich_help_panel = "Several --env: one student, a trunk shared by every task"

    def command(**values: object) -> None:
        handle(values)

    command.__signature__ = inspect.Signature([*own, *tasks])  # type: ignore[attr-defined]
    command.__doc__ = paragraphs(
        (DistillSettings.__doc__ or "")
        + "\n\nRepeat --env for one student of several envs (teachers as --teacher ENV=SPEC): docs/multitask.md."
    )
    return command


def _evaluate(given: dict[str, object]) -> None:
    from policykd.api import evaluate_with

    settings = build(EvaluateSettings, given)
    results = evaluate_with(settings)
    if settings.as_json:
        print(json.dumps(results, indent=2))
        return
    table = Table(
        title=f"{settings.env_id}: {settings.episodes} episodes, seeds {settings.seed}..{settings.seed + settings.episodes - 1}"
    )
    for column in ("", "algo", "params", "return"):
        table.add_column(column)
    measured = [("model", results["model"])] + ([("teacher", results["teacher"])] if "teacher" in results else [])
    for role, r in measured:
        table.add_row(role, r["algo"], f"{r['params']:,}", f"{r['return_mean']:.2f} ± {r['return_std']:.2f}")
    for row in results.get("perturbed", []):
        for role in ("model", "teacher"):
            if role in row:
                under = cast("dict[str, float]", row[role])
                table.add_row(
                    f"{role}, {row['perturbation']}", "", "", f"{under['return_mean']:.2f} ± {under['return_std']:.2f}"
                )
    print_table(Console(), table)


def _record(given: dict[str, object]) -> None:
    from policykd.api import record_with
    from policykd.data.record import partial_folder

    settings = build(RecordSettings, given)
    try:
        record_with(settings)
    except KeyboardInterrupt:
        err_console.print(
            f"interrupted: the episodes recorded so far are in {partial_folder(settings.dataset)}; "
            "run the same command again to resume"
        )
        raise


def _train_teacher(given: dict[str, object]) -> None:
    from policykd.api import train_teacher_with

    train_teacher_with(build(TrainTeacherSettings, given), log=lambda line: print(line, flush=True))


def _plot(given: dict[str, object]) -> None:
    from pathlib import Path

    from policykd.report.compare import plot_runs
    from policykd.report.plots import write_curves

    settings = build(PlotSettings, given)
    runs = [Path(r) for r in settings.runs]
    if len(runs) == 1 and settings.out is None:
        path = write_curves(runs[0])
    else:
        path = plot_runs(runs, Path(settings.out or "runs/plot.png"), labels=list(settings.labels) or None)
    print(path)


def _export(given: dict[str, object]) -> None:
    from policykd.api import export_with

    print(export_with(build(ExportSettings, given)))


def _prune(given: dict[str, object]) -> None:
    from policykd.api import prune_with

    summary = prune_with(build(PruneSettings, given))
    table = Table(
        title=f"{summary['env_id']}: pruned from {summary['unpruned_params']:,} acting parameters "
        f"(teacher {summary['teacher_params']:,})"
    )
    for column in ("cycle", "arch", "params", "% of teacher", "after the cut", "after distilling"):
        table.add_column(column)
    for c in summary["cycles"]:
        table.add_row(
            str(c["cycle"]),
            ",".join(map(str, c["arch"])),
            f"{c['params']:,}",
            f"{100 * c['params'] / summary['teacher_params']:.2f} %",
            f"{c['return_pruned']:.2f}",
            f"{c['return_mean']:.2f} ± {c['return_std']:.2f}",
        )
    print_table(Console(), table)


def _sweep(given: dict[str, object], fixed: dict[str, object]) -> None:
    from policykd.api import sweep_with
    from policykd.sweeps.report import search_lines

    settings = build(SweepSettings, given)
    try:
        result = sweep_with(settings, fixed=fixed)
    except KeyboardInterrupt:
        err_console.print(
            f"interrupted: Tune saved the sweep and each trial's checkpoint is in its run folder under "
            f"{settings.out or 'runs/sweep-<env>'}; run the same command again to resume",
            highlight=False,
        )
        raise
    if not settings.quiet:
        table = Table(title=f"{settings.env_id}: {len(result.rows)} trials in {result.out}")
        for column in ("trial", "status", "params", "student", "teacher", "ratio"):
            table.add_column(column, no_wrap=column == "trial")
        for r in result.rows:
            table.add_row(
                r["trial"],
                r["status"],
                f"{r['student_params']:,}" if r["student_params"] else "-",
                _num(r["student_return"]),
                _num(r["teacher_return"]),
                _num(r["return_ratio"], 3),
            )
        print_table(Console(), table)
        if result.search is not None:
            print(search_lines(result.search)[0].replace("**", ""))
    print("\n".join(map(str, result.files)))


def _sweep_command() -> Callable[..., None]:
    """sweep's own options, then every distill setting a trial takes, fixed for every trial (`--steps 4000`): distill's
    own options (flags, help, parsing) generated from the same fields, in a help panel of their own."""
    from policykd.sweeps.grid import TRIAL_SETTINGS

    def run(values: dict[str, object]) -> None:
        fixed = {k: v for k, v in given_values(DistillSettings, values).items() if k in TRIAL_SETTINGS}
        _sweep(given_values(SweepSettings, values), fixed)

    handle = _stoppable(run)
    own = inspect.signature(command_for(SweepSettings, handle)).parameters.values()
    trial = [
        p
        for p in inspect.signature(command_for(DistillSettings, handle)).parameters.values()
        if p.name in TRIAL_SETTINGS
    ]
    for p in trial:
        p.default.rich_help_panel = "Distill settings, the same in every trial (default: the env's preset)"

    def command(**values: object) -> None:
        handle(values)

    command.__signature__ = inspect.Signature([*own, *trial])  # type: ignore[attr-defined]
    command.__doc__ = paragraphs(SweepSettings.__doc__ or "")
    return command


def _num(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _stoppable(handle: Handler) -> Handler:
    """Ctrl-C or SIGTERM: the command has written what it had and said where; exit 130 or 143.

    Turned into an exit code here because click would otherwise turn the interrupt into its own Abort."""

    def run(given: dict[str, object]) -> None:
        try:
            handle(given)
        except Terminated:
            raise typer.Exit(128 + signal.SIGTERM) from None
        except KeyboardInterrupt:
            raise typer.Exit(130) from None

    return run


app.command("distill", cls=Command)(_distill_command())
app.command("evaluate", cls=Command)(command_for(EvaluateSettings, _stoppable(_evaluate)))
app.command("record", cls=Command)(command_for(RecordSettings, _stoppable(_record)))
app.command("train-teacher", cls=Command)(command_for(TrainTeacherSettings, _stoppable(_train_teacher)))
app.command("plot", cls=Command)(command_for(PlotSettings, _plot))
app.command("export", cls=Command)(command_for(ExportSettings, _stoppable(_export)))
app.command("prune", cls=Command)(command_for(PruneSettings, _stoppable(_prune)))
app.command("sweep", cls=Command)(_sweep_command())


@app.command(cls=Command)
def teachers() -> None:
    """The teachers this package ships, and what each was measured at."""
    from policykd.teachers.shipped import shipped_agents

    table = Table(title="shipped teachers (agents/)")
    for column in ("name", "env", "algo", "env steps", "return", "episodes"):
        table.add_column(column, no_wrap=column in ("name", "env"))  # names are what a user types: never cut
    for card in shipped_agents():
        table.add_row(
            card.name,
            card.env_id,
            card.algo,
            f"{card.env_steps:,}",
            f"{card.return_mean:+.2f} ± {card.return_std:.2f}",
            str(card.episodes),
        )
    print_table(Console(), table)


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise Terminated()


def main(argv: Sequence[str] | None = None) -> int:
    """Run `policykd ARGV` (default: the process's arguments) and return its exit status: 0, 2 for bad input
    (one line on stderr), 130 on Ctrl-C, 143 on SIGTERM. Tests call it in-process; the `policykd` script exits with it.

    It runs in a copy of the caller's context, so the CLI spelling of messages (`--overwrite`) stays here and
    a library call in the same process still reads `overwrite=True`."""
    return contextvars.copy_context().run(_main, list(sys.argv[1:] if argv is None else argv))


def _main(argv: list[str]) -> int:
    use_cli_spelling()
    previous = _catch_signals()
    try:
        code = app(args=argv, prog_name="policykd", standalone_mode=False)  # returns typer.Exit codes in this mode
        return code if isinstance(code, int) else 0
    except PolicykdError as err:
        return _error(str(err))
    except KeyboardInterrupt:
        err_console.print("interrupted")
        return 130
    except typer.Exit as exit_:
        return exit_.exit_code
    except typer.Abort:
        return 130
    except typer.TyperException as err:  # usage errors: unknown option, a value that is not a number, ...
        return _error(_usage_error(err))
    finally:
        _restore_signals(previous)


def _usage_error(err: typer.TyperException) -> str:
    """Typer's usage error as one line, with the help of the command it concerns."""
    message = getattr(err, "format_message", lambda: str(err))().rstrip(".")
    ctx = getattr(err, "ctx", None)
    return f"{message} (see {ctx.command_path if ctx is not None else 'policykd'} --help)"


def _error(message: str) -> int:
    err_console.print(f"[red]error:[/red] {escape(message)}", soft_wrap=True, highlight=False)
    return 2


def _catch_signals() -> dict[int, _HANDLER]:
    """Ctrl-C must reach the run (it writes the student and exits 130) even when the parent shell started us with
    SIGINT ignored, as non-interactive shells do for background jobs; SIGTERM stops it the same way. Only the main
    thread can set handlers (an in-process caller on another thread keeps its own)."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    previous: dict[int, _HANDLER] = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _terminate)
    return previous


def _restore_signals(previous: dict[int, _HANDLER]) -> None:
    for signum, handler in previous.items():
        signal.signal(signum, handler)


if __name__ == "__main__":
    sys.exit(main())
