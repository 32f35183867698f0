"""`policykd sweep`: check everything, connect to Ray, run the grid or the --target search, write the reports.

Every check that can fail runs before Ray starts (grid keys and value types, the fixed distill
settings, each trial as distill would resolve it, --target's single size axis, --address
answering), so bad input is one line and exit status 2 with no trial started.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, cast

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from policykd.errors import PolicykdError, option
from policykd.settings import SweepSettings
from policykd.sweeps.grid import Combination, Value, check_fixed_names, check_trials, combinations, parse_grid
from policykd.sweeps.search import Search, smallest_passing
from policykd.sweeps.trial import Distill, TrialConfig, trial_config

if TYPE_CHECKING:
    from policykd.sweeps.report import TrialRow
    from policykd.sweeps.trial import TrialMetrics
    from policykd.sweeps.tuner import TrialRecord


@dataclass(frozen=True)
class SweepPlan:
    """What the sweep will run: the grid's combinations, or (with --target) the sizes to search and the grid's rest;
    `fixed`: the distill settings given for every trial, typed."""

    combos: list[Combination]
    sizes: list[tuple[int, ...]]
    out: Path
    fixed: dict[str, Value]


@dataclass(frozen=True)
class SweepResult:
    out: Path
    rows: list[TrialRow]
    """One per trial, as in sweep.csv."""
    search: Search | None
    files: list[Path]


def plan_sweep(settings: SweepSettings, fixed: Mapping[str, Value] | None = None) -> SweepPlan:
    """Every check of the sweep's input; raises PolicykdError (one line) before anything runs. `fixed`: distill
    settings by field name, the same in every trial (`steps=4000`)."""
    from policykd.envs import EnvOptions, check_env_id, folder_name

    fixed = dict(fixed or {})
    check_fixed_names(fixed)
    check_env_id(settings.env_id, EnvOptions.parse(fixed.get("env_kwargs"), fixed.get("env_wrappers")))
    grid = parse_grid(settings.grid, fixed)
    if not grid and settings.target is None:
        raise PolicykdError(
            f"nothing to sweep: give {option('grid', 'student-width=8,16,32')} (a distill setting "
            f"and its values) or {option('target', 0.99)}"
        )
    sizes = _search_sizes(settings, grid, fixed) if settings.target is not None else []  # takes them out of the grid
    combos = combinations(grid)
    if sizes:
        check_trials(
            settings.env_id, [Combination({**c.values, "student_arch": s}) for c in combos for s in sizes], fixed
        )
    typed = check_trials(settings.env_id, combos, fixed)
    out = Path(settings.out or f"runs/sweep-{folder_name(settings.env_id)}").resolve()  # Tune runs trials elsewhere
    return SweepPlan(combos, sizes, out, typed)


def _search_sizes(
    settings: SweepSettings, grid: dict[str, list[Value]], fixed: Mapping[str, Value]
) -> list[tuple[int, ...]]:
    """--target: the sizes to search, smallest first (taken out of the grid); the grid's other keys one value each."""
    target = option("target", settings.target)
    if "student_arch" in fixed:
        raise PolicykdError(
            f"{target} searches the student size: give the sizes in the grid (student-width=...), "
            "not a fixed student_arch"
        )
    sizes = cast("list[tuple[int, ...]]", grid.pop("student_arch", None)) or [(w, w) for w in settings.widths]
    several = sorted(k for k, v in grid.items() if len(v) > 1)
    if several:
        raise PolicykdError(f"{target} searches the student size only: give {', '.join(several)} one value")
    return sorted(sizes, key=lambda a: (sum(a), a))


def sweep_with(
    settings: SweepSettings,
    distill: Distill,
    *,
    fixed: Mapping[str, Value] | None = None,
    console: Console | None = None,
) -> SweepResult:
    """Run the sweep on Ray (this machine, or the cluster at --address); re-running it on the same --out resumes.
    Each trial is one `distill(settings, on_evaluation=...)` call (`policykd.api.distill_with`) in a Ray worker."""
    plan = plan_sweep(settings, fixed)
    try:
        from policykd.sweeps import tuner
    except ModuleNotFoundError as err:
        if not (err.name or "").startswith("ray"):
            raise
        raise PolicykdError(
            "policykd sweep needs Ray Tune: pip install 'policykd[ray]' (in a clone: pip install -e '.[ray]')"
        ) from None
    from policykd.sweeps.report import trial_row, write_reports

    tuner.check_address(settings.address)
    plan.out.mkdir(parents=True, exist_ok=True)
    console = console or Console()
    tuner.connect(settings.address)
    labels: dict[str, str] = {}
    try:
        with _progress(console, settings.quiet) as progress:
            records, search = _run(settings, plan, distill, progress, labels)
    finally:
        import ray

        ray.shutdown()
    rows = [trial_row(r, labels[r.config["out"]]) for r in records]
    files = write_reports(plan.out, rows, search)
    return SweepResult(plan.out, rows, search, files)


def _run(
    settings: SweepSettings, plan: SweepPlan, distill: Distill, progress: _Bar, labels: dict[str, str]
) -> tuple[list[TrialRecord], Search | None]:
    from policykd.sweeps import tuner

    def batch(combos: list[Combination], seeds: list[int], name: str) -> list[TrialRecord]:
        configs: list[TrialConfig] = []
        for combo in combos:
            for seed in seeds:
                folder = plan.out / "trials" / f"{combo.label}_seed={seed}".replace("/", "-")
                labels[str(folder)] = combo.label
                configs.append(
                    trial_config(
                        settings.env_id,
                        settings.teachers,
                        {**plan.fixed, **combo.values},
                        seed,
                        folder,
                        settings.cpus_per_trial,
                    )
                )
        progress.expect(len(configs))
        stopper = tuner.Hopeless(settings.target, settings.margin) if settings.target is not None else None
        records = tuner.run_batch(
            configs,
            distill,
            name=name,
            out=plan.out,
            cpus=settings.cpus_per_trial,
            max_failures=settings.max_failures,
            stopper=stopper,
            progress=progress,
        )
        progress.batch_ended()
        return records

    if settings.target is None:
        return batch(plan.combos, list(range(settings.seeds)), "grid"), None
    records: list[TrialRecord] = []
    rest = plan.combos[0].values  # the grid's other keys, one value each

    def run_seeds(arch: tuple[int, ...], seeds: list[int]) -> list[float]:
        done = batch(
            [Combination({**rest, "student_arch": arch})],
            seeds,
            f"search-{'x'.join(map(str, arch))}-seeds-{'-'.join(map(str, seeds))}",
        )
        records.extend(done)
        return [float(r.metrics.get("return_ratio", float("-inf"))) for r in done]

    search = smallest_passing(plan.sizes, settings.seeds, settings.target, settings.margin, run_seeds)
    return records, search


class _Bar:
    """The sweep's progress bar: trials done of those expected so far, and the latest report."""

    def __init__(self, progress: Progress | None) -> None:
        self.progress = progress
        self.task = progress.add_task("sweep", total=0, last="") if progress else TaskID(0)

    def expect(self, n: int) -> None:
        if self.progress:
            self.progress.update(self.task, total=(self.progress.tasks[0].total or 0) + n)

    def result(self, trial: str, metrics: TrialMetrics) -> None:
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
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[last]}"),
    )
    with Progress(*columns, console=console) as progress:
        yield _Bar(progress)
