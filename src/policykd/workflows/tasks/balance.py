"""Each task's weight in the joint loss: the given weights (`--task-weights`), or with `--task-balance adaptive` those
weights raised for the tasks furthest below their teachers at the last evaluation.

Adaptive balance is Dynamic Task Prioritization's idea (Guo et al., ECCV 2018: spend the shared capacity where the
measure of success is lowest), with the measure this run is judged by: each task's return ratio at its last
evaluation. A task at or above its teacher keeps its given weight (never 0: a task that got there must not be
forgotten), one a fraction `gap` below gets `1 + GAIN * gap` times it (5 % below: 1.5x; 20 %: 3x; at most 11x), and
the weights are scaled back to a mean of 1 so that the learning rate means what it means in a single-task run. The
weights depend only on the evaluations kept in the checkpoint, so a resumed run trains with the same ones.
"""

from __future__ import annotations

import math

import numpy as np

from policykd.rollouts import return_ratio
from policykd.run.state import RunState
from policykd.settings.tasks import MultiTaskSettings

GAIN = 10.0
"""How much a task's weight grows per unit of its gap below its teacher (a gap of 0.1, 10 % below: 2x)."""


def task_weights(settings: MultiTaskSettings, states: list[RunState]) -> list[float]:
    """The weights of the next training round, one per task, mean 1."""
    given = settings.weights
    if settings.options.task_balance == "fixed":
        return given
    raised = [w * (1.0 + GAIN * gap(state)) for w, state in zip(given, states)]
    return [len(raised) * w / sum(raised) for w in raised]


def gap(state: RunState) -> float:
    """How far below its teacher the task's student was at its last evaluation, in [0, 1] (0 before the first, or
    where the ratio is undefined: a teacher's return of 0)."""
    if not state.evals or not state.teacher_returns:
        return 0.0
    ratio = return_ratio(state.evals[-1].student_return_mean, float(np.mean(state.teacher_returns)))
    return min(max(1.0 - ratio, 0.0), 1.0) if math.isfinite(ratio) else 0.0
