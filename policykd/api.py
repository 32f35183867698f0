"""The library entry points; the CLI is a thin layer over these.

Each takes the fields of its settings dataclass as keyword arguments (or a settings object via
the `*_with` forms), sets the process-wide torch state the work needs (threads, seed), and
returns a typed result. Nothing here parses text: that is the CLI's job.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from policykd.errors import PolicykdError
from policykd.fields import build
from policykd.settings import (DistillSettings, EvaluateSettings, ExportSettings, PruneSettings, RecordSettings,
                               SweepSettings, TrainTeacherSettings)


@dataclass(frozen=True)
class DistillResult:
    """What a distillation leaves: the student (a plain SB3 model), its summary, and the output folder."""

    student: Any  # stable_baselines3 BaseAlgorithm; typed loosely so `import policykd` stays light
    summary: Any  # policykd.report.summary.RunSummary
    out: Path
    pruned: dict[str, Any] | None = None
    """With `prune_to`: the pruned student's summary (its student.zip is in `out/pruned`)."""


def distill(env_id: str, teachers: Sequence[str | Path] = (), **settings: Any) -> DistillResult:
    """`policykd.distill("CartPole-v1")`: the env's shipped teacher, its preset, any DistillSettings field as a keyword.

    Precedence: DistillSettings defaults < the env's preset < the keywords given here.
    """
    from policykd.presets import resolve_distill

    given = {"teachers": tuple(str(t) for t in teachers) or None, **settings}
    return distill_with(resolve_distill(env_id, **given))


def distill_with(settings: DistillSettings, *, console: Any = None, on_evaluation: Any = None) -> DistillResult:
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
        return _distill_stages(settings, console, on_evaluation)
    if settings.resume and read_pointer(Path(settings.out)) is None:
        raise PolicykdError(f"--resume: no checkpoint in {settings.out}")
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
    pruned = None
    if settings.prune_to is not None:
        pruned = prune_with(PruneSettings(str(run.out), settings.prune_to, cycles=settings.prune_cycles, quiet=settings.quiet))
    return DistillResult(run.student, summary, run.out, pruned)


def _distill_stages(settings: DistillSettings, console: Any, on_evaluation: Any) -> DistillResult:
    """--stages: one distillation per stage (`policykd.run.stages`), the last one's student as the result."""
    from policykd.report.plots import plot_runs
    from policykd.report.summary import RunSummary
    from policykd.run.stages import run_stages
    from policykd.teachers import load_teacher

    def one(stage: DistillSettings) -> DistillResult:
        return distill_with(stage, console=console, on_evaluation=on_evaluation)

    last, summary = run_stages(settings, one)
    out = Path(settings.out)
    rows = summary["stages"]
    plot_runs([out / f"stage-{r['stage']}" for r in rows], out / "curves.png",
              [f"stage {r['stage']}: {','.join(map(str, r['student_arch']))}" for r in rows])
    student = last.student if last is not None else load_teacher(out / "student.zip", env_id=settings.env_id).model
    return DistillResult(student, RunSummary.from_dict(summary), out)


def prune(run: str | Path, fraction: float, **settings: Any) -> dict[str, Any]:
    """`policykd.prune("runs/Walker2d-v5", 0.01)`: the run's student pruned to a dense SB3 model of at most `fraction`
    of the teacher's acting parameters, distilled again after each cut; returns its summary (with a row per cycle)."""
    return prune_with(build(PruneSettings, {"run": run, "fraction": fraction, **settings}))


def prune_with(settings: PruneSettings) -> dict[str, Any]:
    from policykd.run.prune import prune as run_prune

    return run_prune(settings, distill_with)


def evaluate(env_id: str, model: str | Path, **settings: Any) -> dict[str, Any]:
    """Returns of `model` (and `teacher=`) on identical episode seeds; the dict `policykd evaluate --json` prints."""
    return evaluate_with(build(EvaluateSettings, {"env_id": env_id, "model": model, **settings}))


def evaluate_with(settings: EvaluateSettings) -> dict[str, Any]:
    """An exported file (.onnx, .c, .so) as --model acts through its own `act`; SB3 models through `teacher_actor`."""
    import torch as th

    from policykd.export.artifact import Artifact, is_artifact, load_artifact
    from policykd.models import uses_images
    from policykd.robust.evaluate import check_gradients, robustness
    from policykd.run.evaluate import run_episodes, teacher_actor
    from policykd.teachers import load_teacher

    load = dict(env_id=settings.env_id, zoo_folder=settings.zoo_folder, trust=settings.trust_teacher)
    model = load_artifact(settings.model, settings.env_id) if is_artifact(settings.model) else load_teacher(settings.model, **load)
    policies = {"model": model}
    if settings.teacher:
        policies["teacher"] = load_teacher(settings.teacher, **load)
    if not any(uses_images(p.observation_space) for p in policies.values()):
        th.set_num_threads(1)  # as distill and train-teacher evaluate MLPs: the same float sums, the same episodes
    perturbations = check_gradients(policies, settings.perturb)
    actors = {role: p.act if isinstance(p, Artifact) else teacher_actor(p) for role, p in policies.items()}
    results: dict[str, Any] = {"env_id": settings.env_id, "episodes": settings.episodes, "seed": settings.seed}
    for role, policy in policies.items():
        returns = run_episodes(actors[role], policy.factory, settings.episodes, settings.seed)
        results[role] = {"path": policy.name, "algo": policy.algo, "params": policy.acting_params,
                         "return_mean": returns.mean, "return_std": returns.std, "returns": returns.returns.tolist()}
    if perturbations:
        results["perturbed"] = robustness(policies, actors, perturbations, settings.episodes, settings.seed)
    return results


def export(source: str | Path, format: str = "onnx", **settings: Any) -> Path:
    """`policykd.export("runs/CartPole-v1", "c")`: the student of a run folder (or a student.zip) as an ONNX or C file
    that gives its `predict(deterministic=True)` action; returns the file written."""
    return export_with(build(ExportSettings, {"source": source, "format": format, **settings}))


def export_with(settings: ExportSettings) -> Path:
    from policykd.export.write import export_student

    return export_student(settings)


def sweep(env_id: str, grid: Sequence[str] = (), **settings: Any) -> Any:
    """`policykd.sweep("CartPole-v1", ["student-width=8,16,32"], seeds=3)`: distillations as Ray Tune trials;
    returns a `policykd.sweep.run.SweepResult` (rows as in sweep.csv, the --target search, the files written)."""
    return sweep_with(build(SweepSettings, {"env_id": env_id, "grid": tuple(grid), **settings}))


def sweep_with(settings: SweepSettings) -> Any:
    from policykd.sweep.run import sweep_with as run_sweep

    return run_sweep(settings)


def record(env_id: str, dataset: str, episodes: int, **settings: Any) -> dict[str, Any]:
    """Record the env's shipped teacher (or `teacher=`, or a person with `human=True`) into a Minari dataset."""
    return record_with(build(RecordSettings, {"env_id": env_id, "dataset": dataset, "episodes": episodes, **settings}))


def record_with(settings: RecordSettings) -> dict[str, Any]:
    from policykd.data.record import Recording, check_dataset_id, record as run_record, teacher_policy
    from policykd.envs import EnvFactory, check_env_id

    check_env_id(settings.env_id)
    check_dataset_id(settings.dataset)
    if settings.human:
        from policykd.data.human import human_policy

        factory, policy = human_policy(EnvFactory(settings.env_id), fps=settings.fps)  # RGB rendering on, and the window
        loaded = None
    else:
        from policykd.run.build import resolve_teacher_specs
        from policykd.teachers import load_teacher

        spec = settings.teacher or resolve_teacher_specs(settings.env_id, ())[0]
        loaded = load_teacher(spec, env_id=settings.env_id, zoo_folder=settings.zoo_folder, trust=settings.trust_teacher)
        factory, policy = loaded.factory, teacher_policy(loaded, actions_only=settings.actions_only)
    source = "human" if settings.human else ("teacher-actions" if settings.actions_only else "teacher")
    recording = Recording(settings.env_id, settings.dataset, settings.episodes, settings.seed, source,
                          None if settings.human else (settings.teacher or loaded.name))
    return run_record(factory, policy, recording, teacher=loaded, overwrite=settings.overwrite, quiet=settings.quiet)


def train_teacher(env_id: str, algo: str, **settings: Any) -> dict[str, Any]:
    """Train a teacher with rl-zoo's tuned hyperparameters; returns its model card's fields."""
    return train_teacher_with(build(TrainTeacherSettings, {"env_id": env_id, "algo": algo, **settings}))


def train_teacher_with(settings: TrainTeacherSettings, log: Any = print) -> dict[str, Any]:
    from policykd.teachers.train import resolve, train_teacher as run

    resolved, hyperparams = resolve(settings)
    return run(resolved, hyperparams, log=log)
