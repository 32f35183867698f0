"""A run as a typed list of phases, decided before any work starts.

The plan is a pure function of the settings and of what the run has (a dataset, a live
teacher), so a resumed run rebuilds the same plan and continues at the phase its checkpoint
names. Collection is cut into segments of at most `checkpoint_every` env steps, each one a
phase (and a checkpoint); every round ends with training, and an evaluation follows the
rounds that are due one (the last round always).
"""

from __future__ import annotations

from dataclasses import dataclass

from policykd.errors import PolicykdError
from policykd.settings import DistillSettings


@dataclass(frozen=True)
class LoadDataset:
    """Fill the buffer with the dataset's labelled steps (round 0 of the beta schedule)."""

    round: int = -1


@dataclass(frozen=True)
class Collect:
    """Step the envs `steps` times (all envs together), the driver chosen by the round's beta."""

    round: int
    steps: int


@dataclass(frozen=True)
class Train:
    """`epochs` passes over the buffer."""

    round: int


@dataclass(frozen=True)
class Evaluate:
    """Teacher-seeded episodes of the student; `final`: also write student.zip, the student as saved."""

    round: int
    final: bool = False


@dataclass(frozen=True)
class Reinforce:
    """RL of the student (or of the from-scratch baseline) up to `end` RL env steps, then an evaluation; `final`:
    the last segment, which writes student.zip (the baseline's: baseline-scratch.zip)."""

    round: int
    end: int
    scratch: bool = False
    final: bool = False


Phase = LoadDataset | Collect | Train | Evaluate | Reinforce


@dataclass(frozen=True)
class Plan:
    phases: tuple[Phase, ...]
    offline_rounds: int
    """Rounds on the dataset alone: all of them offline, one before DAgger with a live teacher."""
    total_rounds: int
    has_dataset: bool

    def beta(self, settings: DistillSettings, round_index: int) -> float:
        """DAgger's beta for global round r; a dataset counts as the teacher-driven round 0."""
        offset = int(self.has_dataset)
        j = round_index - self.offline_rounds + offset
        return beta_schedule(
            settings.driver, j, settings.rounds + offset, schedule=settings.beta_schedule, decay=settings.beta_decay
        )

    def lr_span(self, settings: DistillSettings, round_index: int) -> tuple[float, float] | None:
        """Round r's first and last learning rates under a linear schedule (None: constant)."""
        if settings.lr_schedule == "constant":
            return None
        lr, total = settings.learning_rate, self.total_rounds
        return lr * (1 - round_index / total), lr * (1 - (round_index + 1) / total)

    def round_of(self, phase_index: int) -> int:
        """The round a phase belongs to (0 for loading the dataset)."""
        return max(self.phases[min(phase_index, len(self.phases) - 1)].round, 0)

    def env_seed(self, settings: DistillSettings, phase_index: int) -> int:
        """The seed a collection segment resets its envs with. It counts the phases before it as they were
        numbered before evaluations became phases of their own, so earlier runs' figures reproduce exactly."""
        earlier = sum(not isinstance(p, Evaluate) for p in self.phases[:phase_index])
        return settings.seed + 7919 * (earlier + 1)

    def checkpoint_after(self, phase_index: int) -> bool:
        """Checkpoint after each phase, except a training that an evaluation follows (one checkpoint per round)."""
        following = self.phases[phase_index + 1] if phase_index + 1 < len(self.phases) else None
        return not (isinstance(self.phases[phase_index], Train) and isinstance(following, Evaluate))


def make_plan(settings: DistillSettings, *, has_dataset: bool, live: bool, rl_ends: tuple[int, ...] = ()) -> Plan:
    """The phases in order; `rl_ends`: the RL segments' cumulative env steps (`policykd.rl.model.segment_ends`)."""
    if settings.rl_start == "scratch":  # kickstarting: RL from a random student, no distillation before it
        return Plan(_reinforce(settings, 0, rl_ends), 0, 1, False)
    offline = (settings.rounds if not live else 1) if has_dataset else 0
    total = offline + (settings.rounds if live else 0)
    phases = _distill_phases(settings, has_dataset, live, offline, total)
    return Plan(phases + _reinforce(settings, total - 1, rl_ends), offline, total, has_dataset)


def _reinforce(settings: DistillSettings, r: int, ends: tuple[int, ...]) -> tuple[Phase, ...]:
    """The student's RL segments, each followed by the baseline's same segment when it is asked for."""
    phases: list[Phase] = []
    for k, end in enumerate(ends):
        phases.append(Reinforce(r, end, final=k == len(ends) - 1))
        if settings.baseline_scratch:
            phases.append(Reinforce(r, end, scratch=True, final=k == len(ends) - 1))
    return tuple(phases)


def _distill_phases(
    settings: DistillSettings, has_dataset: bool, live: bool, offline: int, total: int
) -> tuple[Phase, ...]:
    phases: list[Phase] = [LoadDataset()] if has_dataset else []
    for r in range(offline):
        phases += _train_and_maybe_evaluate(settings, r, total)
    if live:
        vector_steps = max(settings.rounds, settings.steps // settings.n_envs)
        segment = max(1, (settings.checkpoint_every or settings.steps) // settings.n_envs)
        for j in range(settings.rounds):
            r = offline + j
            left = vector_steps // settings.rounds + (j < vector_steps % settings.rounds)
            while left > 0:
                phases.append(Collect(r, min(segment, left) * settings.n_envs))
                left -= min(segment, left)
            phases += _train_and_maybe_evaluate(settings, r, total)
    return tuple(phases)


def _train_and_maybe_evaluate(settings: DistillSettings, r: int, total: int) -> list[Phase]:
    last = r == total - 1
    due = (r + 1) % settings.eval_every == 0 or last
    return [Train(r), Evaluate(r, final=last)] if due else [Train(r)]


def beta_schedule(driver: str, round_index: int, rounds: int, *, schedule: str = "linear", decay: float = 0.5) -> float:
    """Probability that the teacher's action is executed in round `round_index` (0-based).

    dagger/linear: 1 in the first round, falling linearly to 0 in the last
    (imitation's LinearBetaSchedule); dagger/exponential: decay ** round.
    """
    if driver == "teacher":
        return 1.0
    if driver == "student":
        return 0.0
    if driver != "dagger":
        raise PolicykdError(f"unknown driver {driver!r}: choose from teacher, student, dagger")
    if schedule == "exponential":
        return decay**round_index
    return 1.0 if rounds <= 1 else max(0.0, 1.0 - round_index / (rounds - 1))
