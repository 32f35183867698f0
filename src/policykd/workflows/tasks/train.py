"""One round of multi-task updates: every gradient step takes a minibatch of each task, each task's loss as its own
run computes it (`policykd.run.train.minibatch_loss`), weighted by `--task-weights` (or `--task-balance adaptive`'s weights: `workflows.tasks.balance`), and one Adam step on the sum.

A step holds every task, so the shared trunk never drifts toward one task for a stretch of steps (Rusu et al. 2016
alternated tasks in blocks; here they share each step). A round lasts as many steps as the task with the most
(`epochs` passes over its buffer); a task with fewer draws starts its shuffled passes again.
"""

from __future__ import annotations

import torch as th

from policykd.run.train import RoundStats, accumulate, gradient_step, minibatch_loss, shuffled_draws
from policykd.workflows.tasks.build import TaskRuns

SUMS = ("loss", "policy_loss", "value_loss", "entropy", "kl", "agreement")


def train_tasks_round(tasks: TaskRuns, round_index: int, env_steps: int, weights: list[float]) -> list[RoundStats]:
    """`epochs` passes over every task's buffer at once, each task's loss times its weight; returns each task's round
    statistics."""
    runs, optimizer = tasks.runs, tasks.optimizer
    draws = [shuffled_draws(run.buffer.valid_indices(), run.settings, run.rng) for run in runs]
    steps = max(len(d) for d in draws)
    lr_span = runs[0].plan.lr_span(runs[0].settings, round_index)
    policies = tasks.policies
    clipped = list(policies.parameters())  # the shared trunk's once
    policies.train()
    for run in runs:
        run.student.policy.set_training_mode(True)
    sums = [dict.fromkeys(SUMS, 0.0) for _ in runs]
    for i in range(steps):
        parts = [
            minibatch_loss(run.student.policy, run.buffer, d[i % len(d)], run.settings, run.prep, run.loss, None, s)
            for run, d, s in zip(runs, draws, sums)
        ]
        total: th.Tensor = sum(
            (w * part[0] for w, part in zip(weights, parts)), th.zeros((), device=parts[0][0].device)
        )
        gradient_step(total, optimizer, clipped, (i, steps), env_steps, lr_span)
        for run, (loss, terms, dist, batch), s in zip(runs, parts, sums):
            if run.average is not None:
                run.average.update_parameters(run.student.policy)
            accumulate(s, loss, terms, dist, batch.teacher, run.student.action_space)
    for run in runs:
        run.student.policy.set_training_mode(False)
    return [_stats(s, steps) for s in sums]


def _stats(sums: dict[str, float], steps: int) -> RoundStats:
    means = {k: v / steps for k, v in sums.items()}
    means["gradient_steps"] = steps
    return RoundStats(means["loss"], means["kl"], means["agreement"], means)
