"""`policykd distill | evaluate | record | teachers | train-teacher | plot | export | prune | sweep`.

Each command's options are generated from its settings dataclass (`policykd.settings`); the
handlers below only turn the given values into settings and call the library. Bad input is
one line on stderr and exit status 2; Ctrl-C and SIGTERM (what Slurm, Kubernetes and systemd
send before a kill) both stop a run the same way, its work so far written.
"""

from __future__ import annotations

import json
import signal
import sys
from typing import Any, Callable

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from policykd.cli.generate import command_for
from policykd.errors import PolicykdError
from policykd.fields import build
from policykd.settings import (DistillSettings, EvaluateSettings, ExportSettings, PlotSettings, PruneSettings, RecordSettings,
                               SweepSettings, TrainTeacherSettings)

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Distil a heavy RL policy into a small SB3 student.")
err_console = Console(stderr=True)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the run is so that it stops as on Ctrl-C (student written, checkpoint kept)."""


def _distill(given: dict[str, Any]) -> None:
    from policykd.api import distill_with
    from policykd.presets import resolve_distill

    distill_with(resolve_distill(given.pop("env_id"), **given))


def _evaluate(given: dict[str, Any]) -> None:
    from policykd.api import evaluate_with

    settings = build(EvaluateSettings, given)
    results = evaluate_with(settings)
    if settings.as_json:
        print(json.dumps(results, indent=2))
        return
    table = Table(title=f"{settings.env_id}: {settings.episodes} episodes, seeds {settings.seed}..{settings.seed + settings.episodes - 1}")
    for column in ("", "algo", "params", "return"):
        table.add_column(column)
    for role in ("model", "teacher"):
        if role in results:
            r = results[role]
            table.add_row(role, r["algo"], f"{r['params']:,}", f"{r['return_mean']:.2f} ± {r['return_std']:.2f}")
    for row in results.get("perturbed", []):
        for role in ("model", "teacher"):
            if role in row:
                r = row[role]
                table.add_row(f"{role}, {row['perturbation']}", "", "", f"{r['return_mean']:.2f} ± {r['return_std']:.2f}")
    Console().print(table)


def _record(given: dict[str, Any]) -> None:
    from policykd.api import record_with
    from policykd.data.record import partial_folder

    settings = build(RecordSettings, given)
    try:
        record_with(settings)
    except KeyboardInterrupt:
        err_console.print(f"interrupted: the episodes recorded so far are in {partial_folder(settings.dataset)}; "
                          "run the same command again to resume")
        raise


def _train_teacher(given: dict[str, Any]) -> None:
    from policykd.api import train_teacher_with

    train_teacher_with(build(TrainTeacherSettings, given), log=lambda line: print(line, flush=True))


def _plot(given: dict[str, Any]) -> None:
    from pathlib import Path

    from policykd.report.plots import plot_runs, write_curves

    settings = build(PlotSettings, given)
    runs = [Path(r) for r in settings.runs]
    if len(runs) == 1 and settings.out is None:
        path = write_curves(runs[0])
    else:
        path = plot_runs(runs, Path(settings.out or "runs/plot.png"), labels=list(settings.labels) or None)
    print(path)


def _export(given: dict[str, Any]) -> None:
    from policykd.api import export_with

    print(export_with(build(ExportSettings, given)))


def _prune(given: dict[str, Any]) -> None:
    from policykd.api import prune_with

    summary = prune_with(build(PruneSettings, given))
    table = Table(title=f"{summary['env_id']}: pruned from {summary['unpruned_params']:,} acting parameters "
                        f"(teacher {summary['teacher_params']:,})")
    for column in ("cycle", "arch", "params", "% of teacher", "after the cut", "after distilling"):
        table.add_column(column)
    for c in summary["cycles"]:
        table.add_row(str(c["cycle"]), ",".join(map(str, c["arch"])), f"{c['params']:,}",
                      f"{100 * c['params'] / summary['teacher_params']:.2f} %", f"{c['return_pruned']:.2f}",
                      f"{c['return_mean']:.2f} ± {c['return_std']:.2f}")
    Console().print(table)


def _sweep(given: dict[str, Any]) -> None:
    from policykd.api import sweep_with
    from policykd.sweep.report import search_lines

    settings = build(SweepSettings, given)
    try:
        result = sweep_with(settings)
    except KeyboardInterrupt:
        err_console.print(f"interrupted: Tune saved the sweep and each trial's checkpoint is in its run folder under "
                          f"{settings.out or 'runs/sweep-<env>'}; run the same command again to resume", highlight=False)
        raise
    if not settings.quiet:
        table = Table(title=f"{settings.env_id}: {len(result.rows)} trials in {result.out}")
        for column in ("trial", "status", "params", "student", "teacher", "ratio"):
            table.add_column(column, no_wrap=column == "trial")
        for r in result.rows:
            table.add_row(r["trial"], r["status"], f"{r['student_params']:,}" if r["student_params"] else "-",
                          _num(r["student_return"]), _num(r["teacher_return"]), _num(r["return_ratio"], 3))
        Console().print(table)
        if result.search is not None:
            print(search_lines(result.search)[0].replace("**", ""))
    print("\n".join(map(str, result.files)))


def _num(value: Any, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _stoppable(handle: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
    """Ctrl-C or SIGTERM: the command has written what it had and said where; exit 130 or 143.

    Turned into an exit code here because click would otherwise turn the interrupt into its own Abort."""

    def run(given: dict[str, Any]) -> None:
        try:
            handle(given)
        except Terminated:
            raise typer.Exit(128 + signal.SIGTERM) from None
        except KeyboardInterrupt:
            raise typer.Exit(130) from None

    return run


app.command("distill")(command_for(DistillSettings, _stoppable(_distill)))
app.command("evaluate")(command_for(EvaluateSettings, _stoppable(_evaluate)))
app.command("record")(command_for(RecordSettings, _stoppable(_record)))
app.command("train-teacher")(command_for(TrainTeacherSettings, _stoppable(_train_teacher)))
app.command("plot")(command_for(PlotSettings, _plot))
app.command("export")(command_for(ExportSettings, _stoppable(_export)))
app.command("prune")(command_for(PruneSettings, _stoppable(_prune)))
app.command("sweep")(command_for(SweepSettings, _stoppable(_sweep)))


@app.command()
def teachers() -> None:
    """The teachers this package ships, and what each was measured at."""
    from policykd.teachers.shipped import shipped_agents

    table = Table(title="shipped teachers (agents/)")
    for column in ("name", "env", "algo", "env steps", "return", "episodes"):
        table.add_column(column, no_wrap=column in ("name", "env"))  # names are what a user types: never cut
    for card in shipped_agents():
        table.add_row(card.name, card.env_id, card.algo, f"{card.env_steps:,}", f"{card.return_mean:+.2f} ± {card.return_std:.2f}",
                      str(card.episodes))
    Console().print(table)


def _terminate(signum: int, frame: Any) -> None:
    raise Terminated()


def main() -> None:
    # Ctrl-C must reach the run (it writes the student and exits 130) even when the parent shell
    # started us with SIGINT ignored, as non-interactive shells do for background jobs.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _terminate)
    try:
        code = app(standalone_mode=False)  # click returns typer.Exit codes in this mode
        if isinstance(code, int) and code:
            sys.exit(code)
    except PolicykdError as err:
        err_console.print(f"[red]error:[/red] {escape(str(err))}", soft_wrap=True, highlight=False)
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)
    except typer.Exit as exit_:
        sys.exit(exit_.exit_code)
    except Exception as err:  # click usage errors
        import click

        if isinstance(err, click.exceptions.ClickException):
            err.show()
            sys.exit(2)
        raise


if __name__ == "__main__":
    main()
