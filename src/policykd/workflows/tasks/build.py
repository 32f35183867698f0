"""Building a multi-task run: one single-task `Run` per env (its teacher, envs, buffer and plan, as `distill` builds
them), then one student across them: the tasks' students resized to one trunk, that trunk shared
(`policykd.students.sharing`), and one optimizer over every parameter once.

Everything that can refuse the settings runs here, before any env is stepped: the output folder, an env without a
teacher, an env whose student reads images or keeps a memory (a multi-task student is an MLP).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch as th
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.vec_env import VecEnv
from torch import nn

from policykd.errors import PolicykdError, option
from policykd.fields import spelled
from policykd.registry import STUDENT_FAMILIES
from policykd.run.build import Run, assemble_run, make_student
from policykd.run.checkpoint import resumable, unstarted
from policykd.sb3_models import acting_params, uses_images
from policykd.settings.tasks import MultiTaskSettings
from policykd.storage import check_out
from policykd.students.averaging import make_average
from policykd.students.build import MAX_WIDTH, WIDTH_STEP, Sizing, build_student
from policykd.students.sharing import duplicated_params, share_inputs, share_trunk
from policykd.teachers.shipped import default_agent


@dataclass
class TaskRuns:
    """A multi-task run: one `Run` per task (in `--env` order), their students sharing one trunk and one optimizer."""

    settings: MultiTaskSettings
    runs: list[Run]
    optimizer: th.optim.Optimizer
    sizing: Sizing
    resuming: bool
    restarting: bool

    @property
    def policies(self) -> nn.ModuleList:
        """Every task's policy as one module: its `parameters()` hold the shared trunk once."""
        return nn.ModuleList([run.student.policy for run in self.runs])

    @property
    def student_params(self) -> int:
        """Acting parameters of the multi-task student: every task's input layer and head, what they share once."""
        policies = [run.student.policy for run in self.runs]
        return sum(acting_params(p) for p in policies) - duplicated_params(policies)

    @property
    def teacher_params(self) -> int:
        return sum(run.teacher_params for run in self.runs)

    def close(self) -> None:
        for run in self.runs:
            run.close()


def build_tasks(settings: MultiTaskSettings) -> TaskRuns:
    """Check and load every task; raises PolicykdError (one line) on bad input, before any work."""
    out = settings.out_path
    resuming = resumable(out, settings)  # type: ignore[arg-type]  # duck-typed: to_dict, identity, overwrite
    restarting = not resuming and unstarted(out, settings)  # type: ignore[arg-type]
    if settings.resume and not resuming:
        raise PolicykdError(f"{option('resume')}: no checkpoint of this multi-task run in {out}")
    if not (resuming or restarting):
        check_out(out, settings.overwrite)
    for task in settings.tasks:
        if not task.teachers and default_agent(task.env_id) is None:
            raise PolicykdError(
                f"no teacher given and none shipped for {task.env_id}: pass "
                f"{spelled('teachers', '--teacher')} {task.env_id}=SPEC"
            )
    runs = [assemble_run(task, resuming=resuming, restarting=restarting) for task in settings.tasks]
    try:
        for run in runs:
            _check_fits(run)
        sizing = _sizing(settings, runs)
        for run in runs:
            _resize(run, sizing)
        _share([run.student for run in runs], settings.options.task_input)
        policies = nn.ModuleList([run.student.policy for run in runs])
        optimizer = th.optim.Adam(policies.parameters(), lr=settings.first.learning_rate)
        for run in runs:
            run.optimizer = optimizer
            run.average = make_average(run.student.policy, run.settings.ema)
    except BaseException:
        for run in runs:
            run.close()
        raise
    return TaskRuns(settings, runs, optimizer, sizing, resuming, restarting)


def _check_fits(run: Run) -> None:
    """A task whose student cannot be one MLP among others: images (a CNN trunk is not built yet), or a memory."""
    env = run.settings.env_id
    if uses_images(run.student.observation_space):
        raise PolicykdError(f"{env} gives images: a multi-task student is an MLP (image tasks are not supported yet)")
    if STUDENT_FAMILIES.load(run.student_algo).recurrent:
        raise PolicykdError(f"a {run.student_algo} student keeps a memory: it cannot share a trunk with other tasks")


def _spaces_envs(runs: list[Run]) -> list[VecEnv]:
    return [run.student_factory.make(1, run.settings.seed) for run in runs]


def _sizing(settings: MultiTaskSettings, runs: list[Run]) -> Sizing:
    """--student-arch, else the widest shared trunk within --student-fraction of the teachers' acting parameters
    together, never narrower than --student-min-width, and never larger than the teachers together."""
    first = settings.first
    depth = STUDENT_FAMILIES.load(runs[0].student_algo).depth
    if first.student_arch:
        return Sizing(tuple(first.student_arch), f"given ({spelled('student_arch')})")
    teachers = sum(run.teacher_params for run in runs)
    budget = int(first.student_fraction * teachers)
    envs = _spaces_envs(runs)
    try:
        widest = _widest(runs, envs, budget, depth, settings.options.task_input)
        together = f"the {len(runs)} teachers' {teachers:,} acting parameters together"
        if widest >= first.student_min_width:
            return Sizing(
                (widest,) * depth, f"the widest shared trunk within {100 * first.student_fraction:g} % of {together}"
            )
        floor = (first.student_min_width,) * depth
        if _params(runs, envs, floor, settings.options.task_input) <= teachers:
            return Sizing(
                floor,
                f"the width floor {first.student_min_width} ({spelled('student_min_width')}): "
                f"{100 * first.student_fraction:g} % of {together} is too few to play",
            )
        capped = _widest(runs, envs, teachers, depth, settings.options.task_input)
        return Sizing((max(capped, WIDTH_STEP),) * depth, f"the widest no larger than {together}")
    finally:
        for env in envs:
            env.close()


def _share(students: list[BaseAlgorithm], task_input: str) -> None:
    share_trunk(students)
    if task_input == "shared":
        share_inputs(students)


def _params(runs: list[Run], envs: list[VecEnv], arch: tuple[int, ...], task_input: str) -> int:
    """Acting parameters of a multi-task student with hidden sizes `arch`: what the tasks share counted once."""
    students = [build_student(run.student_algo, env, arch, seed=0) for run, env in zip(runs, envs)]
    _share(students, task_input)
    policies = [s.policy for s in students]
    return sum(acting_params(p) for p in policies) - duplicated_params(policies)


def _widest(runs: list[Run], envs: list[VecEnv], max_params: int, depth: int, task_input: str) -> int:
    """The widest shared trunk (steps of 4, up to 256) within `max_params`; 0 if none."""
    low, high = 0, MAX_WIDTH // WIDTH_STEP
    while low < high:
        middle = (low + high + 1) // 2
        fits = _params(runs, envs, (middle * WIDTH_STEP,) * depth, task_input) <= max_params
        low, high = (middle, high) if fits else (low, middle - 1)
    return low * WIDTH_STEP


def _resize(run: Run, sizing: Sizing) -> None:
    """The task's student rebuilt with the shared hidden sizes (`assemble_run` sized it for its teacher alone)."""
    run.settings = replace(run.settings, student_arch=sizing.arch)
    student, algo, _ = make_student(run.settings, run.teacher, run.source, run.view, run.student.device)
    run.student, run.student_algo, run.student_arch, run.student_size = student, algo, sizing.arch, sizing.reason
