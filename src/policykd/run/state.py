"""What a run has done so far: exactly what a checkpoint saves besides tensors and arrays."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass(frozen=True)
class Evaluation:
    """One evaluation of the student on the run's evaluation seeds."""

    round: int
    env_steps: int
    gradient_steps: int
    student_return_mean: float
    student_return_std: float = float("nan")


@dataclass
class RunState:
    """Counters and results; `phase` is the index of the next phase of the plan to run."""

    phase: int = 0
    env_steps: int = 0
    gradient_steps: int = 0
    wall: float = 0.0
    """Seconds of work in every session of this run (resumed runs add up)."""
    teacher_returns: list[float] = field(default_factory=list)
    teacher_returns_source: str = ""
    """Where the teacher's figures came from: "played" by this run, or the kept file (`teachers.evaluated`)."""
    student_returns: list[float] | None = None
    agreement: float = float("nan")
    evals: list[Evaluation] = field(default_factory=list)
    frame_segments: list[list[int]] = field(default_factory=list)
    """The Atari frame segments (serials [first, end)) the checkpoint's frame ring is rebuilt from."""
    return_before_rl: float | None = None
    """The student's return when RL began (the last distillation evaluation, or the random student's)."""
    rl_evals: list[dict[str, float]] = field(default_factory=list)
    """Each RL evaluation of the student: env_steps (RL), return_mean, return_std, kick_weight, kick_loss, agreement."""
    scratch_evals: list[dict[str, float]] = field(default_factory=list)
    """Each evaluation of the from-scratch baseline: env_steps, return_mean, return_std."""
    rl_critic_from_teacher: bool | None = None
    """Whether the RL student's critic started as a copy of the teacher's (SAC from SAC)."""
    rl_temperature: float | None = None
    """The policy temperature RL began at (--rl-temperature; None where it does not apply, or before RL)."""
    seconds: dict[str, float] = field(default_factory=dict)
    """Seconds by kind of work (teacher_eval, collect, train, evaluate, checkpoint, ...): where a run's time went,
    without a profiler."""

    def timed(self, kind: str, since: float) -> None:
        """Add the seconds from `since` (a `time.time()`) to now to `kind`."""
        self.seconds[kind] = round(self.seconds.get(kind, 0.0) + time.time() - since, 3)

    def to_json(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_json(cls, values: dict[str, Any]) -> RunState:
        known = {f.name for f in fields(cls)}
        kept = {k: v for k, v in values.items() if k in known}
        evals = [Evaluation(**e) for e in kept.pop("evals", [])]  # JSON objects, as `asdict` wrote them
        state = cls(**kept)
        state.evals = evals
        return state

    @property
    def x_step(self) -> int:
        """TensorBoard's x-axis: env steps, or for offline rounds (no env steps yet) gradient steps."""
        return self.env_steps or self.gradient_steps
