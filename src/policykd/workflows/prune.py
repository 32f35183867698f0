"""Prune-and-distil cycles: a run's student made smaller, a few units at a time, each cut healed by distillation.

Removing most of a student's units in one cut loses what they knew; Han et al.'s iterative
pruning and the distillation literature both cut in steps and retrain between them. Each cycle
here prunes the previous student to the next size (acting parameters falling geometrically to
`fraction` of the teacher's) and runs a full distillation from the same teacher and settings,
warm-started from the pruned weights (`--init-student`). Each cycle is an ordinary run folder
(`cycle-<k>/`), so an interrupted prune resumes like any run: finished cycles are kept, the
unfinished one continues from its checkpoint.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.vec_env import VecEnv

from policykd.constants import EVAL_SEED_OFFSET
from policykd.errors import PolicykdError
from policykd.fields import build, spelled
from policykd.rollouts import normalizing
from policykd.run.folder import FinishedRun, RunFolder, copy_student
from policykd.sb3_models import acting_params
from policykd.settings import DistillSettings, PruneSettings
from policykd.storage import atomic_write, atomic_write_text, prepare_or_resume
from policykd.students.build import build_student
from policykd.students.pruning import prune_student

IMPORTANCE_STEPS, IMPORTANCE_ENVS, IMPORTANCE_SEED = 256, 4, 2_000  # 1,024 states of the student's own play


@dataclass(frozen=True)
class Cycle:
    cycle: int
    arch: tuple[int, ...]
    params: int
    return_pruned: float
    """The pruned student's return before its recovery distillation (same seeds as the run's evaluations)."""
    return_mean: float
    return_std: float


def run_settings(run_dir: Path) -> DistillSettings:
    """The settings a distill run was made with, as its config.json holds them."""
    folder = RunFolder(run_dir)
    if not folder.student_zip.is_file():
        raise PolicykdError(f"{run_dir} is not a finished distill run folder (no student.zip)")
    return build(DistillSettings, folder.config())


def _scaled(arch: tuple[int, ...], m: int) -> tuple[int, ...]:
    return tuple(max(1, round(a * m / max(arch))) for a in arch)


def archs_for(source: FinishedRun, arch: tuple[int, ...], budgets: list[int]) -> list[tuple[int, ...]]:
    """Per budget, the largest student of `arch`'s shape (every layer scaled alike) with at most that many acting params."""
    venv = source.factory.make(1, 0)
    try:

        def params(m: int) -> int:
            return acting_params(build_student(source.algo, venv, _scaled(arch, m), seed=0).policy)

        found, high = [], max(arch)
        for budget in budgets:
            if params(1) > budget:
                raise PolicykdError(
                    f"the smallest {source.algo.upper()} student of this shape has {params(1):,} acting "
                    f"parameters, over the {budget:,} the fraction allows"
                )
            low = 1
            while low < high:  # params grow with m: the largest m within the budget
                middle = (low + high + 1) // 2
                low, high = (middle, high) if params(middle) <= budget else (low, middle - 1)
            found.append(_scaled(arch, low))
        return found
    finally:
        venv.close()


def plan_cycles(source: FinishedRun, settings: PruneSettings) -> list[tuple[int, ...]]:
    """The arch of each cycle; refuses a fraction the student already meets."""
    if "teacher_params" not in source.summary or "student_arch" not in source.summary:
        raise PolicykdError(f"{source.zip_path.parent} has no summary.json of a finished distill run")
    teacher, student = int(source.summary["teacher_params"]), acting_params(source.model.policy)
    target = int(settings.fraction * teacher)
    if student <= target:
        raise PolicykdError(
            f"the student has {student:,} acting parameters, already within {spelled('fraction')} "
            f"{settings.fraction} of the teacher's {teacher:,}: nothing to prune"
        )
    budgets = [int(student * (target / student) ** (k / settings.cycles)) for k in range(1, settings.cycles + 1)]
    return archs_for(source, tuple(source.summary["student_arch"]), budgets)


def _prepare(out: Path, settings: PruneSettings) -> None:
    """Create the output folder, or find this very prune unfinished there (its finished cycles are kept)."""
    identity = {k: v for k, v in asdict(settings).items() if k not in ("overwrite", "quiet", "out")}
    prepare_or_resume(out, identity, "prune.json", settings.overwrite, "prune")


def _importance_obs(source: FinishedRun, model: BaseAlgorithm) -> np.ndarray:
    """What the policy reads on 1,024 states of its own greedy play (normalised where a VecNormalize sits in front)."""
    from policykd.rollouts import rollout_observations, student_actor

    prep = _prep(source)
    obs = rollout_observations(
        student_actor(model, prep), source.factory, IMPORTANCE_STEPS, IMPORTANCE_ENVS, IMPORTANCE_SEED
    )
    return prep(obs) if prep is not None else obs


def _prep(source: FinishedRun) -> Callable[[np.ndarray], np.ndarray] | None:
    """What SB3's predict needs in front of the student: the run's frozen VecNormalize, if it had one."""
    return normalizing(source.normalizer)


def _pruned_return(source: FinishedRun, model: BaseAlgorithm, base: DistillSettings) -> float:
    """The pruned student's return before recovery, on the run's evaluation seeds."""
    from policykd.rollouts import run_episodes, student_actor

    return run_episodes(
        student_actor(model, _prep(source)), source.factory, base.eval_episodes, base.seed + EVAL_SEED_OFFSET
    ).mean


def _cut(
    source: FinishedRun, model: BaseAlgorithm, arch: tuple[int, ...], base: DistillSettings, init: Path, venv: VecEnv
) -> float:
    """init-<k>.zip: `model` pruned to `arch` (once: a resumed prune finds it); returns its return before recovery."""
    record = init.with_suffix(".json")
    if init.is_file() and record.is_file():
        return float(json.loads(record.read_text())["return_pruned"])
    pruned = prune_student(model, source.algo, arch, _importance_obs(source, model), venv, seed=base.seed)
    before = _pruned_return(source, pruned, base)
    atomic_write(init, pruned.save)
    atomic_write_text(record, json.dumps({"arch": list(arch), "return_pruned": before}))
    return before


def _recover(
    folder: Path,
    init: Path,
    arch: tuple[int, ...],
    source: FinishedRun,
    base: DistillSettings,
    settings: PruneSettings,
    distill: Callable[[DistillSettings], object],
) -> tuple[BaseAlgorithm, dict[str, Any]]:
    """The cycle's distillation from the pruned weights (its summary.json read back when it already finished)."""
    if not RunFolder(folder).finished:
        distill(
            replace(
                base,
                out=str(folder),
                student_arch=arch,
                student_algo=source.algo,
                init_student=str(init),
                steps=settings.steps or base.steps,
                prune_to=None,
                overwrite=False,
                resume=False,
                quiet=settings.quiet,
                rl_steps=0,
                baseline_scratch=False,
                rl_start="distilled",
                stages=None,
            )
        )
    return _load(folder / "student.zip", source), RunFolder(folder).summary()


def prune(settings: PruneSettings, distill: Callable[[DistillSettings], object]) -> dict[str, Any]:
    """Run (or resume) every cycle; writes `out`'s student.zip and summary.json (a row per cycle) and returns the summary.
    `distill`: the library's `distill_with`, passed in so that this module needs nothing above `run/`."""
    run_dir = Path(settings.run)
    base = run_settings(run_dir)
    source = RunFolder(run_dir).load_student()
    archs = plan_cycles(source, settings)
    out = Path(settings.out or run_dir / "pruned")
    _prepare(out, settings)
    model, cycles = source.model, []
    venv = source.factory.make(1, base.seed)
    try:
        for k, arch in enumerate(archs, start=1):
            init = out / f"init-{k}.zip"
            before = _cut(source, model, arch, base, init, venv)
            model, summary = _recover(out / f"cycle-{k}", init, arch, source, base, settings, distill)
            cycles.append(
                Cycle(
                    k,
                    arch,
                    summary["student_params"],
                    before,
                    summary["student_return_mean"],
                    summary["student_return_std"],
                )
            )
    finally:
        venv.close()
    return _finish(out, run_dir, source, cycles)


def _load(path: Path, source: FinishedRun) -> BaseAlgorithm:
    from policykd.teachers import load_teacher

    return load_teacher(path, env_id=source.env_id, options=source.factory.options).model


def _finish(out: Path, run_dir: Path, source: FinishedRun, cycles: list[Cycle]) -> dict[str, Any]:
    """The last cycle's student (and its VecNormalize, rl-zoo copy) as the pruned student; summary.json with every cycle."""
    last = out / f"cycle-{cycles[-1].cycle}"
    summary = RunFolder(last).summary()
    copy_student(last, out, source.algo)
    summary.update(
        {
            "pruned_from": str(run_dir),
            "unpruned_params": acting_params(source.model.policy),
            "unpruned_return_mean": source.summary.get("student_return_mean"),
            "cycles": [asdict(c) for c in cycles],
        }
    )
    RunFolder(out).write_summary(summary)
    return summary
