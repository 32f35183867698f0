"""The library entry points; the CLI is a thin layer over these.

Each takes the fields of its settings dataclass as keyword arguments (or a settings object via
the `*_with` forms), sets the process-wide torch state the work needs (threads, seed), and
returns a typed result. Nothing here parses text: that is the CLI's job.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

from policykd.errors import PolicykdError, option
from policykd.fields import build
from policykd.settings import (
    DistillSettings,
    EvaluateSettings,
    ExportSettings,
    PruneSettings,
    RecordSettings,
    SweepSettings,
    TrainTeacherSettings,
)
from policykd.settings.tasks import MultiTaskSettings

if TYPE_CHECKING:  # torch, SB3 and Ray load on first use: `import policykd` stays light
    from rich.console import Console
    from stable_baselines3.common.base_class import BaseAlgorithm

    from policykd.run.loop import OnEvaluation
    from policykd.run.summary import RunSummary
    from policykd.sweeps.run import SweepResult
    from policykd.teachers.card import TeacherCard


@dataclass(frozen=True)
class DistillResult:
    """What a distillation leaves: the student (a plain SB3 model), its summary, and the output folder."""

    student: BaseAlgorithm
    summary: RunSummary
    out: Path
    pruned: dict[str, Any] | None = None
    """With `prune_to`: the pruned student's summary (its student.zip is in `out/pruned`)."""


class PolicyReturns(TypedDict):
    """One policy's returns in `evaluate`'s result."""

    path: str
    algo: str
    params: int
    return_mean: float
    return_std: float
    returns: list[float]


class _EvaluateResult(TypedDict):
    env_id: str
    episodes: int
    seed: int
    model: PolicyReturns


class EvaluateResult(_EvaluateResult, total=False):
    """What `evaluate` returns (and `policykd evaluate --json` prints): the model's returns, and the teacher's when
    one was given, on the same episode seeds; with `perturb`, a row per perturbation."""

    teacher: PolicyReturns
    perturbed: list[dict[str, object]]


def distill(env_id: str, teachers: Sequence[str | Path] = (), **settings: object) -> DistillResult:
    """`policykd.distill("CartPole-v1")`: the env's shipped teacher, its preset, any DistillSettings field as a keyword.
    `student_obs` also takes your own `function(obs, info) -> array` or gymnasium `ObservationWrapper` class.

    Precedence: DistillSettings defaults < the env's preset < the keywords given here. One student for several envs:
    `distill_tasks`.
    """
    from policykd.presets import resolve_distill
    from policykd.views.stages import spec_of

    if not isinstance(env_id, str):
        raise PolicykdError("distill takes one env id; for one student of several envs call distill_tasks([...])")

    given = {"teachers": tuple(str(t) for t in teachers) or None, **settings}
    views = settings.get("student_obs")
    if isinstance(views, (list, tuple)):  # a callable or an ObservationWrapper class stands for itself
        given["student_obs"] = tuple(map(spec_of, views))
    return distill_with(resolve_distill(env_id, **given))


def distill_with(
    settings: DistillSettings, *, console: Console | None = None, on_evaluation: OnEvaluation | None = None
) -> DistillResult:
    """Distil with every setting explicit; writes `settings.out` (student.zip, summary.json, curves.png, tb/).

    `on_evaluation(evaluation, teacher_return, final)` is called after each evaluation (`run.loop.OnEvaluation`)."""
    import torch as th

    from policykd.envs import is_atari
    from policykd.report.plots import write_curves
    from policykd.run.build import build_run
    from policykd.run.checkpoint import read_pointer
    from policykd.run.loop import execute
    from policykd.run.phases import become_saved

    if settings.stages:
        return _prune_if_asked(_distill_stages(settings, console, on_evaluation), settings)
    if settings.resume and read_pointer(settings.out_path) is None:
        raise PolicykdError(f"{option('resume')}: no checkpoint in {settings.out}")
    # MLP students' tiny ops only lose to thread hand-offs; CNNs use every core.
    th.set_num_threads(settings.torch_threads or ((os.cpu_count() or 1) if is_atari(settings.env_id) else 1))
    th.manual_seed(settings.seed)
    run = build_run(settings)
    summary = execute(run, console=console, quiet=settings.quiet, on_evaluation=on_evaluation)
    become_saved(run)
    write_curves(run.out)
    if summary.rl is not None:
        from policykd.report.rl_plot import write_rl_curves

        write_rl_curves(run.out)
    return _prune_if_asked(DistillResult(run.student, summary, run.out), settings)


@dataclass(frozen=True)
class TasksResult:
    """What a multi-task distillation leaves: each task's student (a plain SB3 model sharing the trunk's tensors with
    the others until saved), the run's summary (a row per task) and the output folder (`<out>/<ENV>/student.zip`)."""

    students: dict[str, BaseAlgorithm]
    summary: dict[str, Any]
    out: Path


def distill_tasks(
    env_ids: Sequence[str],
    teachers: Sequence[str | Path] = (),
    task_weights: Sequence[float] = (),
    task_input: str = "own",
    task_balance: str = "fixed",
    **settings: object,
) -> TasksResult:
    """`policykd.distill_tasks(["CartPole-v1", "Acrobot-v1"], teachers=["Acrobot-v1=zoo:dqn/Acrobot-v1"])`: one
    student for several envs, a shared trunk with each env's own input layer and action head. Teachers are
    ENV=SPEC (an env without one gets its shipped teacher); any DistillSettings field as a keyword, for every task."""
    from policykd.presets import resolve_tasks

    return distill_tasks_with(
        resolve_tasks(
            list(env_ids),
            teachers=[str(t) for t in teachers],
            task_weights=tuple(task_weights),
            task_input=task_input,
            task_balance=task_balance,
            **settings,
        )
    )


def distill_tasks_with(settings: MultiTaskSettings, *, console: Console | None = None) -> TasksResult:
    """A multi-task distillation with every setting explicit; writes `settings.out` (a folder per task, summary.json,
    curves.png, tb/)."""
    import torch as th

    from policykd.report.plots import write_curves
    from policykd.report.tasks_plot import write_task_curves
    from policykd.run.console import print_table
    from policykd.run.phases import become_saved
    from policykd.students.sharing import unshare_inputs
    from policykd.workflows.tasks.build import build_tasks
    from policykd.workflows.tasks.loop import execute_tasks
    from policykd.workflows.tasks.summary import tasks_table

    th.set_num_threads(settings.first.torch_threads or 1)  # MLP students: one thread (see distill_with)
    th.manual_seed(settings.first.seed)
    tasks = build_tasks(settings)
    summary = execute_tasks(tasks, console=console, quiet=settings.quiet)
    unshare_inputs([run.student for run in tasks.runs])  # each task's standardisation folds into its own copy
    for run in tasks.runs:
        become_saved(run)
        write_curves(run.out)
    write_task_curves([run.out for run in tasks.runs], settings.out_path / "curves.png")
    if not settings.quiet:
        from rich.console import Console as RichConsole

        print_table(console or RichConsole(), tasks_table(summary))
    return TasksResult({run.settings.env_id: run.student for run in tasks.runs}, summary, settings.out_path)


def _prune_if_asked(result: DistillResult, settings: DistillSettings) -> DistillResult:
    """`prune_to`: the finished run's student pruned into `out/pruned` (for a multi-stage run, its last stage's, to the
    same fraction of the run's teacher)."""
    if settings.prune_to is None:
        return result
    stages = result.summary.stages
    run = result.out / f"stage-{len(stages)}" if stages else result.out  # the run folder its student was made in
    # A fraction of the run's teacher; a last stage's own teacher is the assistant before it.
    fraction = settings.prune_to
    if stages:
        assistant = stages[-1]["teacher_params"]
        assert isinstance(assistant, int)  # a stage row copies its run's summary
        fraction *= result.summary.teacher_params / assistant
    pruned = prune_with(
        PruneSettings(
            str(run),
            fraction,
            cycles=settings.prune_cycles,
            out=str(result.out / "pruned"),
            quiet=settings.quiet,
        )
    )
    return replace(result, pruned=pruned)


def _distill_stages(
    settings: DistillSettings, console: Console | None, on_evaluation: OnEvaluation | None
) -> DistillResult:
    """--stages: one distillation per stage (`policykd.workflows.stages`), the last one's student as the result."""
    from policykd.envs import EnvOptions
    from policykd.report.compare import plot_runs
    from policykd.run.summary import RunSummary
    from policykd.teachers import load_teacher
    from policykd.workflows.stages import run_stages

    def one(stage: DistillSettings) -> DistillResult:
        return distill_with(stage, console=console, on_evaluation=on_evaluation)

    last, summary = run_stages(settings, one)
    out = settings.out_path
    rows = summary["stages"]
    plot_runs(
        [out / f"stage-{r['stage']}" for r in rows],
        out / "curves.png",
        [f"stage {r['stage']}: {','.join(map(str, r['student_arch']))}" for r in rows],
    )
    if last is not None:
        student = last.student
    else:  # every stage was finished before: the last one's student from its zip
        options = EnvOptions.of(settings)
        student = load_teacher(out / "student.zip", env_id=settings.env_id, options=options).model
    return DistillResult(student, RunSummary.from_dict(summary), out)


def prune(run: str | Path, fraction: float, **settings: object) -> dict[str, Any]:
    """`policykd.prune("runs/Walker2d-v5", 0.01)`: the run's student pruned to a dense SB3 model of at most `fraction`
    of the teacher's acting parameters, distilled again after each cut; returns its summary (with a row per cycle)."""
    return prune_with(build(PruneSettings, {"run": run, "fraction": fraction, **settings}))


def prune_with(settings: PruneSettings) -> dict[str, Any]:
    from policykd.workflows.prune import prune as run_prune

    return run_prune(settings, distill_with)


def evaluate(env_id: str, model: str | Path, **settings: object) -> EvaluateResult:
    """Returns of `model` (and `teacher=`) on identical episode seeds; the dict `policykd evaluate --json` prints."""
    return evaluate_with(build(EvaluateSettings, {"env_id": env_id, "model": model, **settings}))


def evaluate_with(settings: EvaluateSettings) -> EvaluateResult:
    """An exported file (.onnx, .c, .so) as --model acts through its own `act`; SB3 models through `teacher_actor`.
    The env options are the settings', else those of the model's run (its summary.json), else an export's own."""
    import torch as th

    from policykd.devices import check_device, resolve_device
    from policykd.envs import EnvOptions
    from policykd.exporters.artifact import Artifact, is_artifact, load_artifact
    from policykd.robust.evaluate import check_gradients, robustness
    from policykd.rollouts import run_episodes, teacher_actor
    from policykd.run.folder import saved_env_options, saved_view
    from policykd.sb3_models import uses_images
    from policykd.teachers import SB3Teacher, load_teacher

    check_device(settings.device)
    options = EnvOptions.of(settings).with_saved(saved_env_options(settings.model))

    def load(spec: str, view: tuple[str, ...] = ()) -> SB3Teacher:
        return load_teacher(
            spec,
            env_id=settings.env_id,
            zoo_folder=settings.zoo_folder,
            trust=settings.trust_teacher,
            view=view,
            options=options,
        )

    if is_artifact(settings.model):
        model: Artifact | SB3Teacher = load_artifact(settings.model, settings.env_id, options)
    else:
        model = load(settings.model, settings.student_obs or saved_view(settings.model))
    policies: dict[str, Artifact | SB3Teacher] = {"model": model}
    if settings.teacher:
        policies["teacher"] = load(settings.teacher)
    if not any(uses_images(p.observation_space) for p in policies.values()):
        th.set_num_threads(1)  # as distill and train-teacher evaluate MLPs: the same float sums, the same episodes
    for p in policies.values():
        if isinstance(p, SB3Teacher):
            p.to(resolve_device(settings.device, images=uses_images(p.observation_space)))
    perturbations = check_gradients(policies, settings.perturb)
    actors = {role: p.act if isinstance(p, Artifact) else teacher_actor(p) for role, p in policies.items()}
    measured: dict[str, PolicyReturns] = {}
    for role, policy in policies.items():
        returns = run_episodes(actors[role], policy.factory, settings.episodes, settings.seed)
        measured[role] = {
            "path": policy.name,
            "algo": policy.algo,
            "params": policy.acting_params,
            "return_mean": returns.mean,
            "return_std": returns.std,
            "returns": returns.returns.tolist(),
        }
    results: EvaluateResult = {
        "env_id": settings.env_id,
        "episodes": settings.episodes,
        "seed": settings.seed,
        "model": measured["model"],
    }
    if "teacher" in measured:
        results["teacher"] = measured["teacher"]
    if perturbations:
        results["perturbed"] = robustness(policies, actors, perturbations, settings.episodes, settings.seed)
    return results


def export(source: str | Path, format: str = "onnx", **settings: object) -> Path:
    """`policykd.export("runs/CartPole-v1", "c")`: the student of a run folder (or a student.zip) in a registered
    format (`policykd.exporters.registry`: onnx, c, ...) giving its `predict(deterministic=True)` action; `out=` a
    file or a folder; returns the file written."""
    return export_with(build(ExportSettings, {"source": source, "format": format, **settings}))


def export_with(settings: ExportSettings) -> Path:
    """Export with every setting explicit (`policykd.exporters.write`)."""
    from policykd.exporters.write import export_student

    return export_student(settings)


def sweep(env_id: str, grid: Sequence[str] = (), **settings: object) -> SweepResult:
    """`policykd.sweep("CartPole-v1", ["student-width=8,16,32"], seeds=3, steps=50_000)`: distillations as Ray Tune
    trials. Keywords are SweepSettings fields, and any other distill setting is fixed for every trial (`steps=50_000`:
    what `--steps 50000` does on the command line). Returns a `policykd.sweeps.run.SweepResult` (rows as in sweep.csv,
    the --target search, the files written)."""
    from dataclasses import fields

    own = {f.name for f in fields(SweepSettings)}
    given = {"env_id": env_id, "grid": tuple(grid), **{k: v for k, v in settings.items() if k in own}}
    return sweep_with(build(SweepSettings, given), fixed={k: v for k, v in settings.items() if k not in own})


def sweep_with(settings: SweepSettings, *, fixed: dict[str, object] | None = None) -> SweepResult:
    """The sweep, each trial one `distill_with` call in a Ray worker; `fixed`: distill settings by field name, the same
    in every trial (a setting both fixed and in the grid is refused)."""
    from policykd.sweeps.run import sweep_with as run_sweep

    return run_sweep(settings, distill_with, fixed=fixed)


def record(env_id: str, dataset: str, episodes: int, **settings: object) -> dict[str, object]:
    """Record the env's shipped teacher (or `teacher=`, or a person with `human=True`) into a Minari dataset."""
    return record_with(build(RecordSettings, {"env_id": env_id, "dataset": dataset, "episodes": episodes, **settings}))


def record_with(settings: RecordSettings) -> dict[str, object]:
    from policykd.data.record import Recording, check_dataset_id, teacher_policy
    from policykd.data.record import record as run_record
    from policykd.envs import EnvFactory, EnvOptions, check_env_id, env_factory

    options = EnvOptions.of(settings)
    check_env_id(settings.env_id, options)
    check_dataset_id(settings.dataset)
    if settings.human:
        from policykd.data.human import human_policy

        human_factory, policy = human_policy(env_factory(settings.env_id, options=options), fps=settings.fps)
        factory: EnvFactory = human_factory
        loaded = None
    else:
        from policykd.run.build import resolve_teacher_specs
        from policykd.teachers import load_teacher

        spec = settings.teacher or resolve_teacher_specs(settings.env_id, ())[0]
        loaded = load_teacher(
            spec, env_id=settings.env_id, zoo_folder=settings.zoo_folder, trust=settings.trust_teacher, options=options
        )
        factory, policy = loaded.factory, teacher_policy(loaded, actions_only=settings.actions_only)
    source = "human" if settings.human else ("teacher-actions" if settings.actions_only else "teacher")
    recording = Recording(
        settings.env_id,
        settings.dataset,
        settings.episodes,
        settings.seed,
        source,
        None if loaded is None else (settings.teacher or loaded.name),
    )
    return run_record(
        factory,
        policy,
        recording,
        teacher=loaded,
        overwrite=settings.overwrite,
        quiet=settings.quiet,
        env_kwargs=options.kwargs,
    )


def train_teacher(env_id: str, algo: str, **settings: object) -> TeacherCard:
    """Train a teacher with rl-zoo's tuned hyperparameters; returns its model card's fields."""
    return train_teacher_with(build(TrainTeacherSettings, {"env_id": env_id, "algo": algo, **settings}))


def train_teacher_with(settings: TrainTeacherSettings, log: Callable[[str], None] = print) -> TeacherCard:
    from policykd.teachers.train import resolve
    from policykd.teachers.train import train_teacher as run

    resolved, hyperparams = resolve(settings)
    return run(resolved, hyperparams, log=log)
