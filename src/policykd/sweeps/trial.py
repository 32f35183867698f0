"""One sweep trial: one distillation in a Ray worker, into its own run folder, reporting its evaluations and its result.

A trial is the library call and nothing more, so a trial folder is an ordinary run folder
(student.zip, summary.json, tb/, curves.png) and everything policykd does for one run holds for
each trial: a retried trial (its worker died) resumes its run from the last checkpoint, and a
trial whose run already finished reports that run's summary instead of distilling again.

The distillation is the caller's `distill` (`policykd.api.distill_with`): this package builds on
the run, and the library API builds on it, not the other way round.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypedDict

from policykd.errors import PolicykdError, option
from policykd.settings import DistillSettings
from policykd.storage import field_defaults, settings_differ

if TYPE_CHECKING:
    from policykd.run.folder import RunFolder
    from policykd.run.loop import OnEvaluation
    from policykd.run.state import Evaluation


class Distill(Protocol):
    """How a trial distils (`policykd.api.distill_with`). Ray runs the trial in a worker process and pickles this
    with it, so pass a module-level function (pickled by reference), not a lambda or a closure."""

    def __call__(self, settings: DistillSettings, *, on_evaluation: OnEvaluation | None = None) -> object: ...


class TrialMetrics(TypedDict, total=False):
    """What a trial reports to Tune after each evaluation (Tune adds keys of its own); `error`: the last line of a
    failed trial's error, set when the sweep collects it."""

    return_ratio: float
    student_return: float
    teacher_return: float
    env_steps: int
    fraction_done: float
    final: bool
    error: str


class TrialConfig(TypedDict):
    """What Tune passes to `run_trial`: plain JSON values (Tune stores them with the experiment)."""

    env_id: str
    teachers: list[str]
    values: dict[str, object]
    seed: int
    out: str
    cpus: float


def trial_config(
    env_id: str, teachers: tuple[str, ...], values: dict[str, object], seed: int, out: Path, cpus: float
) -> TrialConfig:
    return {
        "env_id": env_id,
        "teachers": list(teachers),
        "values": {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()},
        "seed": seed,
        "out": str(out),
        "cpus": cpus,
    }


def trial_settings(config: TrialConfig) -> DistillSettings:
    """The trial's DistillSettings, resolved as `policykd distill` resolves its flags."""
    from policykd.envs import is_atari
    from policykd.presets import resolve_distill

    values = dict(config["values"])
    if is_atari(config["env_id"]) and "torch_threads" not in values:
        values["torch_threads"] = max(1, int(config["cpus"]))  # the CPUs Ray gave this trial, not the machine's
    return resolve_distill(
        config["env_id"],
        teachers=tuple(config["teachers"]) or None,
        seed=config["seed"],
        out=config["out"],
        quiet=True,
        **values,
    )


def run_trial(config: TrialConfig, distill: Distill) -> None:
    """Tune's function trainable. Reports return_ratio, student_return, teacher_return, env_steps, fraction_done and
    final: after each evaluation of the distillation but its last (`final` False), then the finished run's result from
    its summary.json (`final` True), which is the result after RL where the run has RL. Every trial that returns has
    made that last report, so the sweep ranks finished trials by what their run folders hold."""
    from ray import tune

    from policykd.run.folder import RunFolder

    settings = trial_settings(config)
    folder = RunFolder(Path(config["out"]))
    if not _finished_alike(folder, settings):

        def report(evaluation: Evaluation, teacher_return: float, final: bool) -> None:
            if not final:  # the last one is reported below, from the summary, with RL's evaluations after it
                tune.report(_progress(evaluation, teacher_return, settings))

        _count_start(folder.path)
        distill(settings, on_evaluation=report)
    tune.report(_result(folder.summary()))


def run_trial_space(space: dict[str, TrialConfig], distill: Distill) -> None:
    """What Tune calls: its param space holds the trial's config under "trial" (a grid search over the configs)."""
    run_trial(space["trial"], distill)


def starts_file(out: Path) -> Path:
    """Beside the run folder (distill owns the folder): one line per time the trial's distillation started."""
    return out.parent / f".{out.name}.starts"


def starts(out: Path) -> int:
    path = starts_file(out)
    return len(path.read_text().splitlines()) if path.exists() else 0


def _count_start(out: Path) -> None:
    """One line per start: a retried or resumed trial shows 2 or more."""
    marker = starts_file(out)
    marker.parent.mkdir(parents=True, exist_ok=True)
    with open(marker, "a") as f:
        f.write(f"{time.time():.0f}\n")


def _finished_alike(folder: RunFolder, settings: DistillSettings) -> bool:
    """Whether the trial's folder holds a run that finished with these settings; another run's is an error. Compared
    as distill's resume compares them: a setting a later policykd added is the same when it has its default value."""
    if not folder.finished:
        return False
    saved, current = folder.summary().get("config", {}), settings.to_dict()
    free = (set(current) - set(settings.identity())) | (set(saved) - set(current))
    differ = settings_differ(saved, current, ignore=free, defaults=field_defaults(settings))
    if differ:
        raise PolicykdError(
            f"{settings.out} holds a finished run with other settings ({', '.join(differ)}): "
            f"sweep into another folder ({option('out', 'DIR')})"
        )
    return True


def _progress(evaluation: Evaluation, teacher: float, settings: DistillSettings) -> TrialMetrics:
    """An evaluation during the run; its env steps count against the distillation's and RL's together."""
    return _metrics(
        evaluation.student_return_mean,
        teacher,
        evaluation.env_steps,
        evaluation.env_steps / max(settings.steps + settings.rl_steps, 1),
        final=False,
    )


def env_steps_of(summary: dict[str, Any]) -> int:
    """Every env step a finished run took: distillation's and RL's (an RL-from-scratch run has only RL's)."""
    return int(summary["env_steps"]) + int((summary.get("rl") or {}).get("rl_steps", 0))


def _result(summary: dict[str, Any]) -> TrialMetrics:
    """The finished run: its summary's returns (after RL, with RL) and every env step it took."""
    return _metrics(
        summary["student_return_mean"], summary["teacher_return_mean"], env_steps_of(summary), 1.0, final=True
    )


def _metrics(student: float, teacher: float, env_steps: int, fraction_done: float, *, final: bool) -> TrialMetrics:
    from policykd.rollouts import return_ratio

    return {
        "return_ratio": return_ratio(student, teacher),
        "student_return": float(student),
        "teacher_return": float(teacher),
        "env_steps": int(env_steps),
        "fraction_done": fraction_done,
        "final": final,
    }
