"""`policykd sweep`: check everything, connect to Ray, run the grid or the --target search, write the reports.

Every check that can fail runs before Ray starts (grid keys and value types, each combination as
distill would resolve it, --target's single size axis, --address answering), so bad input is one
line and exit status 2 with no trial started.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from policykd.errors import PolicykdError
from policykd.settings import SweepSettings
from policykd.sweep.grid import Combination, check_combinations, combinations, parse_grid
from policykd.sweep.search import Search, smallest_passing
from policykd.sweep.trial import trial_config


@dataclass(frozen=True)
class SweepPlan:
    """What the sweep will run: the grid's combinations, or (with --target) the sizes to search and the fixed rest."""

    combos: list[Combination]
    sizes: list[tuple[int, ...]]
    out: Path


@dataclass(frozen=True)
class SweepResult:
    out: Path
    rows: list[dict[str, Any]]
    """One per trial, as in sweep.csv."""
    search: Search | None
    files: list[Path]


def plan_sweep(settings: SweepSettings) -> SweepPlan:
    """Every check of the sweep's input; raises PolicykdError (one line) before anything runs."""
    from policykd.envs import check_env_id

    check_env_id(settings.env_id)
    grid = parse_grid(settings.grid)
    if not grid and settings.target is None:
        raise PolicykdError("nothing to sweep: give --grid KEY=V1,V2,... (e.g. --grid student-width=8,16,32) or --target")
    sizes: list[tuple[int, ...]] = []
    if settings.target is not None:
        sizes = sorted(grid.pop("student_arch", None) or [(w, w) for w in settings.widths], key=lambda a: (sum(a), a))
        several = sorted(k for k, v in grid.items() if len(v) > 1)
        if several:
            raise PolicykdError(f"--target searches the student size only: give {', '.join(several)} one value")
        check_combinations(settings.env_id, [Combination({**c.values, "student_arch": s})
                                             for c in combinations(grid) for s in sizes])
    combos = combinations(grid)
    check_combinations(settings.env_id, combos)
    out = Path(settings.out or f"runs/sweep-{settings.env_id.replace('/', '-')}").resolve()  # Tune runs trials elsewhere
    return SweepPlan(combos, sizes, out)


def sweep_with(settings: SweepSettings, *, console: Console | None = None) -> SweepResult:
    """Run the sweep on Ray (this machine, or the cluster at --address); re-running it on the same --out resumes."""
    plan = plan_sweep(settings)
    try:
        from policykd.sweep import tuner
    except ModuleNotFoundError as err:
        if not (err.name or "").startswith("ray"):
            raise
        raise PolicykdError("policykd sweep needs Ray Tune: pip install 'policykd[ray]' "
                            "(in a clone: pip install -e '.[ray]')") from None
    from policykd.sweep.report import trial_row, write_reports

    tuner.check_address(settings.address)
    plan.out.mkdir(parents=True, exist_ok=True)
    console = console or Console()
    tuner.connect(settings.address)
    labels: dict[str, str] = {}
    try:
        with _progress(console, settings.quiet) as progress:
            records, search = _run(settings, plan, progress, labels)
    finally:
        import ray

        ray.shutdown()
    rows = [trial_row(r, labels[r.config["out"]]) for r in records]
    files = write_reports(plan.out, rows, search)
    return SweepResult(plan.out, rows, search, files)


def _run(settings: SweepSettings, plan: SweepPlan, progress: Any, labels: dict[str, str]) -> tuple[list, Search | None]:
    from policykd.sweep import tuner

    def batch(combos: list[Combination], seeds: list[int], name: str) -> list:
        configs = []
        for combo in combos:
            for seed in seeds:
                folder = plan.out / "trials" / f"{combo.label}_seed={seed}".replace("/", "-")
                labels[str(folder)] = combo.label
                configs.append(trial_config(settings.env_id, settings.teachers, combo.values, seed, folder,
                                            settings.cpus_per_trial))
        progress.expect(len(configs))
        stopper = tuner.Hopeless(settings.target, settings.margin) if settings.target is not None else None
        records = tuner.run_batch(configs, name=name, out=plan.out, cpus=settings.cpus_per_trial,
                                  max_failures=settings.max_failures, stopper=stopper, progress=progress)
        progress.batch_ended()
        return records

    if settings.target is None:
        return batch(plan.combos, list(range(settings.seeds)), "grid"), None
    records: list = []
    fixed = plan.combos[0].values

    def run_seeds(arch: tuple[int, ...], seeds: list[int]) -> list[float]:
        done = batch([Combination({**fixed, "student_arch": arch})], seeds,
                     f"search-{'x'.join(map(str, arch))}-seeds-{'-'.join(map(str, seeds))}")
        records.extend(done)
        return [float(r.metrics.get("return_ratio", float("-inf"))) for r in done]

    search = smallest_passing(plan.sizes, settings.seeds, settings.target, settings.margin, run_seeds)
    return records, search


class _Bar:
    """The sweep's progress bar: trials done of those expected so far, and the latest report."""

    def __init__(self, progress: Progress | None) -> None:
        self.progress = progress
        self.task = progress.add_task("sweep", total=0, last="") if progress else None

    def expect(self, n: int) -> None:
        if self.progress:
            self.progress.update(self.task, total=self.progress.tasks[0].total + n)

    def result(self, trial: str, metrics: dict) -> None:
        if self.progress:
            self.progress.update(self.task, last=f"{trial}: ratio {metrics.get('return_ratio', float('nan')):.3f}")

    def done(self) -> None:
        if self.progress:
            self.progress.advance(self.task)

    def batch_ended(self) -> None:
        """Every trial expected so far has ended (a restored batch's finished trials report nothing)."""
        if self.progress:
            self.progress.update(self.task, completed=self.progress.tasks[0].total)


@contextmanager
def _progress(console: Console, quiet: bool) -> Iterator[_Bar]:
    if quiet:
        yield _Bar(None)
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("{task.fields[last]}"))
    with Progress(*columns, console=console) as progress:
        yield _Bar(progress)
