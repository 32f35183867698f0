"""summary.json: what was distilled into what, how well, at what cost, as one typed record.

The run builds it (`summarize`); reporting only formats it (the table, curves.png, benchmarks).
Its `to_dict()` is the JSON file, key for key.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any

from policykd.envs import is_atari
from policykd.rollouts import collapsed_episodes, return_ratio
from policykd.sb3_models import acting_params

if TYPE_CHECKING:
    from policykd.run.build import Run
    from policykd.run.state import RunState


@dataclass(frozen=True)
class RunSummary:
    env_id: str
    teachers: list[str]
    teacher_algo: str
    student_algo: str
    student_arch: list[int]
    teacher_params: int
    student_params: int
    params_ratio: float
    env_steps: int
    gradient_steps: int
    wall_seconds: float
    teacher_return_source: str
    teacher_return_mean: float
    teacher_return_std: float
    student_return_mean: float
    student_return_std: float
    return_ratio: float
    eval_episodes: int
    eval_seed: int
    action_agreement: float
    buffer_transitions: int
    buffer_bytes_per_transition: float
    teacher_returns: list[float]
    teacher_returns_source: str
    """Where the teacher's figures came from: "played" by this run, the file that kept the same games (the teacher,
    env stack, seeds and library versions all the same), or "dataset" (an offline run's recorded episodes)."""
    student_returns: list[float]
    evals: list[dict[str, float]]
    """Every evaluation: round, env_steps, gradient_steps, student_return_mean, student_return_std."""
    loss: str
    driver: str
    config: dict[str, object]
    """The resolved settings (defaults < preset < flags)."""
    student_path: str
    env_kwargs: dict[str, object] = field(default_factory=dict)
    """The env's keyword arguments (--env-kwargs over a teacher config's): export and evaluate make the env with them."""
    env_wrappers: list[str] = field(default_factory=list)
    """The user's own wrapper classes (--env-wrapper), in the order applied."""
    atari_stack: str = ""
    device: str = ""
    """The torch device the teacher labelled and the student trained on (--device)."""
    """The stack that stepped an Atari run's envs: native (ale-py's vector env) or sb3; empty for other envs."""
    student_obs: list[str] = field(default_factory=list)
    """The student's view (--student-obs), empty when it sees the teacher's observation; the student's zip, its
    evaluation and its exports read the env through it."""
    teacher_weights: list[float] = field(default_factory=list)
    """An ensemble's member weights after --teacher-weighting (0: a member that `select` left out); empty for one
    teacher."""
    student_size: str = ""
    """Why the student has its size (`policykd.students.build.default_size`, or "given")."""
    collapsed_episodes: int = 0
    """The student's evaluation episodes below half the teacher's mean return (`policykd.rollouts.collapsed_episodes`):
    falls and flips that a mean hides."""
    dataset: dict[str, object] | None = None
    seconds_by_phase: dict[str, float] = field(default_factory=dict)
    """Where the wall-clock went: teacher_eval, collect, train, evaluate (the student's), checkpoint, loaddataset,
    reinforce (RL segments with their evaluations)."""
    stages: list[dict[str, object]] | None = None
    """With --stages: a row per stage (arch, params, its teacher, returns, ratio to the first teacher)."""
    rl: dict[str, object] | None = None
    """With --rl-steps: rl_steps (RL env steps done), return_before_rl, return_after_rl, the hyperparameters' source,
    evals (each RL evaluation), scratch_evals (the baseline's) and scratch_return (its last)."""

    def to_dict(self) -> dict[str, object]:
        values = asdict(self)
        for optional in ("dataset", "rl", "stages"):
            if values[optional] is None:
                del values[optional]
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RunSummary:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


def _ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def summarize(run: Run, state: RunState) -> RunSummary:
    import numpy as np

    teacher, student = np.array(state.teacher_returns), np.array(state.student_returns or [np.nan])
    student_params = int(acting_params(run.student.policy))
    members = getattr(run.teacher, "members", [run.teacher])
    return RunSummary(
        env_id=run.settings.env_id,
        teachers=[m.name for m in members] if run.teacher else [],
        teacher_algo=run.teacher_algo,
        student_algo=run.student_algo,
        student_arch=list(run.student_arch),
        teacher_weights=[float(w) for w in getattr(run.teacher, "weights", [])],
        student_size=run.student_size,
        collapsed_episodes=collapsed_episodes(state.student_returns or [], float(teacher.mean())),
        teacher_params=run.teacher_params,
        student_params=student_params,
        params_ratio=_ratio(student_params, run.teacher_params),
        env_steps=state.env_steps,
        gradient_steps=state.gradient_steps,
        wall_seconds=round(state.wall, 2),
        seconds_by_phase=dict(state.seconds),
        teacher_return_source="live teacher, evaluation seeds" if run.teacher else "dataset episodes",
        teacher_return_mean=float(teacher.mean()),
        teacher_return_std=float(teacher.std()),
        student_return_mean=float(student.mean()),
        student_return_std=float(student.std()),
        return_ratio=return_ratio(float(student.mean()), float(teacher.mean())),
        eval_episodes=run.settings.eval_episodes,
        eval_seed=run.eval_seed,
        action_agreement=state.agreement,
        buffer_transitions=len(run.buffer),
        buffer_bytes_per_transition=run.buffer.nbytes() / run.buffer.capacity,
        teacher_returns=teacher.tolist(),
        teacher_returns_source=state.teacher_returns_source,
        student_returns=student.tolist(),
        evals=[asdict(e) for e in state.evals],
        loss=run.loss,
        driver=run.settings.driver if run.teacher else "offline",
        config=run.settings.to_dict(),
        student_path=str(run.out / "student.zip"),
        env_kwargs=dict(run.factory.env_kwargs),
        env_wrappers=list(run.factory.wrappers),
        atari_stack=("native" if run.factory.native else "sb3") if is_atari(run.factory.env_id) else "",
        device=str(run.student.device),
        student_obs=list(run.view.specs) if run.view else [],
        dataset=_dataset(run),
        rl=_rl(run, state),
    )


def _rl(run: Run, state: RunState) -> dict[str, object] | None:
    if run.rl is None or not state.rl_evals:
        return None
    scratch = state.scratch_evals
    return {
        "rl_steps": state.rl_evals[-1]["env_steps"],
        "return_before_rl": state.return_before_rl,
        "return_after_rl": state.rl_evals[-1]["return_mean"],
        "start": run.settings.rl_start,
        "kick_schedule": run.settings.kick_schedule,
        "kick_weight": run.settings.kick_weight,
        "temperature": state.rl_temperature,
        "hyperparameters": run.rl.student_config.source,
        "n_envs": run.rl.config.n_envs,
        "critic_from_teacher": state.rl_critic_from_teacher,
        "critic_warmup": run.rl.warmup_end,
        "evals": state.rl_evals,
        "scratch_evals": scratch,
        "scratch_return": scratch[-1]["return_mean"] if scratch else None,
    }


def _dataset(run: Run) -> dict[str, object] | None:
    if run.source is None:
        return None
    data = run.source.dataset
    size = data.bytes_on_disk  # one walk of the folder
    return {
        "name": data.name,
        "path": str(data.folder),
        "steps": data.total_steps,
        "episodes": data.total_episodes,
        "bytes_on_disk": size,
        "bytes_per_step": size / max(data.total_steps, 1),
        "distributions": data.has_distributions,
        "source": data.meta.source,
    }
