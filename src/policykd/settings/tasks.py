"""A multi-task distillation's settings: one `DistillSettings` per task (each env with its own preset and teacher),
the options only several tasks have (`TaskSettings`), and the checks that need the whole task list.

Settings all tasks must share, because one student trains on all of them in one loop (`JOINT`: the rounds, the
learning rate, the seed, the student's size...), come from what the caller gives, else from the first env's preset;
the rest (steps, envs, epochs, evaluation episodes) stay each env's own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from policykd.errors import PolicykdError
from policykd.fields import check, opt, spelled
from policykd.settings.distill import DistillSettings
from policykd.storage import field_defaults

TaskInput = Literal["own", "shared"]
TaskBalance = Literal["fixed", "adaptive"]

JOINT = (
    "rounds",
    "eval_every",
    "learning_rate",
    "lr_schedule",
    "ema",
    "seed",
    "device",
    "torch_threads",
    "checkpoint_every",
    "driver",
    "beta_schedule",
    "beta_decay",
    "student_fraction",
    "student_min_width",
    "student_arch",
)
"""Settings every task of a multi-task run has the same value of (the caller's, else the first env's preset's)."""

SINGLE_TASK = (
    "rl_steps",
    "stages",
    "prune_to",
    "hint_weight",
    "relation_weight",
    "dataset",
    "student_obs",
    "init_student",
    "baseline_scratch",
    "teacher_weights",
)
"""Settings a multi-task run refuses (each needs one env, or is not built for several yet)."""


@dataclass(frozen=True)
class TaskSettings:
    """Options of a multi-task run (several --env): one student, a trunk shared by every task."""

    task_weights: tuple[float, ...] = opt(
        (), rule=(lambda v: all(w >= 0 for w in v) and (not v or sum(v) > 0), "must be non-negative, not all 0")
    )
    """Several --env: each task's weight in every minibatch's loss, one per --env in their order, comma-separated like
    2,1 (default: equal)."""

    task_input: TaskInput = "own"
    """Several --env: own, each task its own input layer; shared, tasks whose observations have the same size share
    its weights, each with its own bias (a learned task embedding)."""

    task_balance: TaskBalance = "fixed"
    """Several --env: fixed, the --task-weights throughout; adaptive, after each evaluation a task's weight grows with
    how far it is below its teacher (5 % below: 1.5x, 20 %: 3x), so the shared trunk serves the task that lags."""

    def __post_init__(self) -> None:
        check(self)


@dataclass(frozen=True)
class MultiTaskSettings:
    """One student for several envs: each task's resolved settings (its student in `<out>/<ENV>/`)."""

    tasks: tuple[DistillSettings, ...]
    out: str
    options: TaskSettings = field(default_factory=TaskSettings)
    overwrite: bool = False
    quiet: bool = False
    resume: bool = False

    def __post_init__(self) -> None:
        envs = self.envs
        twice = sorted({e for e in envs if envs.count(e) > 1})
        if twice:
            raise PolicykdError(f"{spelled('env_id', '--env')} {twice[0]} is given twice: each task is one env")
        weights = self.options.task_weights
        if weights and len(weights) != len(envs):
            raise PolicykdError(
                f"{spelled('task_weights')} has {len(weights)} weights for {len(envs)} tasks: one per "
                f"{spelled('env_id', '--env')}, in their order"
            )

    @property
    def envs(self) -> list[str]:
        return [t.env_id for t in self.tasks]

    @property
    def weights(self) -> list[float]:
        """Each task's given loss weight, scaled to a mean of 1 (a task's gradient as large as in its own run); with
        adaptive balance, the start from which `workflows.tasks.balance` raises the lagging tasks'."""
        given = list(self.options.task_weights) or [1.0] * len(self.tasks)
        return [len(given) * w / sum(given) for w in given]

    @property
    def out_path(self) -> Path:
        return Path(self.out)

    @property
    def first(self) -> DistillSettings:
        return self.tasks[0]

    def identity(self) -> dict[str, object]:
        """What a resumed run must repeat: the task list, each task's settings and the weights."""
        options = {
            "task_weights": list(self.options.task_weights),
            "task_input": self.options.task_input,
            "task_balance": self.options.task_balance,
        }
        return {"envs": self.envs, **options} | {"tasks": [t.identity() for t in self.tasks]}

    def defaults(self) -> dict[str, object]:
        """The defaults of the options `identity()` flattens: a run saved before an option existed resumes."""
        return field_defaults(TaskSettings)

    def to_dict(self) -> dict[str, object]:
        return self.identity() | {"overwrite": self.overwrite, "quiet": self.quiet, "resume": self.resume}


def refuse_single_task(given: dict[str, object]) -> None:
    """Refuse, in one line, a setting that a multi-task run does not support."""
    for name in SINGLE_TASK:
        if given.get(name):
            raise PolicykdError(
                f"{spelled(name)} is not supported with several {spelled('env_id', '--env')} (a multi-task student)"
            )


def teachers_by_env(envs: list[str], teachers: tuple[str, ...] | list[str]) -> dict[str, tuple[str, ...]]:
    """`ENV=SPEC` teachers by env (repeat one env for an ensemble); an env without one gets its shipped teacher."""
    flag = spelled("teachers", "--teacher")
    found: dict[str, tuple[str, ...]] = {}
    for spec in teachers:
        env, equals, path = str(spec).partition("=")
        if not equals or not path:
            raise PolicykdError(f"{flag} {spec!r}: with several envs, name the teacher's env as ENV=SPEC")
        if env not in envs:
            raise PolicykdError(f"{flag} {spec!r}: {env} is not one of the envs given ({', '.join(envs)})")
        found[env] = (*found.get(env, ()), path)
    return found
