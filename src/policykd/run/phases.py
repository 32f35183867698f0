"""What each phase of the plan does to a run: collect, train, evaluate.

Each function takes the run, its state and the phase, does the work, updates the state and
logs what it measured; none of them writes a checkpoint (the loop does, between phases).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch as th
from rich.progress import Progress, TaskID
from stable_baselines3.common.logger import Logger

from policykd.rollouts import Returns, student_actor, student_eval
from policykd.run.build import Run
from policykd.run.folder import save_student
from policykd.run.plan import Collect, Evaluate, Reinforce, Train
from policykd.run.reinforce import reinforce
from policykd.run.state import Evaluation, RunState
from policykd.run.train import RoundStats, train_round
from policykd.students.averaging import averaged_weights
from policykd.students.folding import fit_obs_stats, fold, folded, supports_folding, unfold


@dataclass
class View:
    """Where a phase reports: the progress bar's task and the TensorBoard logger."""

    bar: Progress
    task: TaskID
    logger: Logger
    teacher: Returns


def collect(run: Run, state: RunState, phase: Collect, view: View) -> None:
    """One segment of collection, in new envs seeded for the segment, so a resumed run sees the same states."""
    settings = run.settings
    beta = run.plan.beta(settings, phase.round)
    collector = run.collector
    assert collector is not None  # collection is planned only with a live teacher, whose run has a collector
    collector.restart(run.fresh_envs(run.plan.env_seed(settings, state.phase)))
    t0 = time.time()
    with averaged_weights(run.student.policy, run.average):
        act = student_actor(run.student, run.prep, deterministic=not settings.sample_actions)
        stats = collector.run(
            phase.steps,
            beta,
            act,
            on_step=lambda k: view.bar.update(view.task, advance=k),
            steps_before=state.env_steps,
        )
    state.env_steps += stats.steps
    view.bar.update(view.task, sps=stats.steps / max(time.time() - t0, 1e-9))
    log = view.logger
    log.record("collect/beta", beta)
    log.record("collect/teacher_action_fraction", stats.teacher_actions / max(stats.steps, 1))
    if stats.episode_returns:
        log.record("collect/episode_return", float(np.mean(stats.episode_returns)))
    log.record("collect/buffer_size", len(run.buffer))
    log.record("time/env_steps", state.env_steps)
    log.dump(state.env_steps)


def train(run: Run, state: RunState, phase: Train, view: View) -> None:
    """`epochs` passes over the buffer; the first round fits the student's input standardisation."""
    prepare_round(run, phase.round)
    stats = train_round(
        run.student,
        run.optimizer,
        run.buffer,
        run.settings,
        run.rng,
        run.prep,
        loss=run.loss,
        env_step=state.env_steps,
        lr_span=run.plan.lr_span(run.settings, phase.round),
        average=run.average,
        knowledge=run.knowledge,
    )
    record_round(run, state, view, stats, phase.round)


def prepare_round(run: Run, round_index: int) -> None:
    """Before the first round's training: fit the student's input standardisation on the buffer."""
    if round_index == 0 and run.normalizer is None and supports_folding(run.student):
        run.obs_stats = fit_obs_stats(run.buffer.get(run.buffer.valid_indices()).obs)
        if run.settings.init_student:  # its weights read raw observations: from now on they read standardised ones
            unfold(run.student, run.obs_stats)


def record_round(run: Run, state: RunState, view: View, stats: RoundStats, round_index: int) -> None:
    """Count a training round's gradient steps, and show and log what it measured."""
    state.gradient_steps += int(stats.parts["gradient_steps"])
    if run.teacher is None:  # offline: the bar counts rounds
        view.bar.update(view.task, advance=1)
    view.bar.update(view.task, loss=stats.loss, kl=stats.kl)
    log = view.logger
    for key, value in stats.parts.items():
        if not (key == "kl" and np.isnan(value)):
            log.record(f"train/{'action_agreement' if key == 'agreement' else key}", value)
    log.record("train/learning_rate", run.optimizer.param_groups[0]["lr"])
    log.record("time/round", round_index)
    log.record("time/gradient_steps", state.gradient_steps)
    log.dump(state.x_step)


def evaluate(run: Run, state: RunState, phase: Evaluate, view: View) -> None:
    """The student on the teacher's evaluation seeds; the final one is of the student as saved, and saves it."""
    settings = run.settings
    with averaged_weights(run.student.policy, run.average), folded(run.student, run.obs_stats if phase.final else None):
        returns, agreement = student_eval(
            run.student,
            lambda obs: run.prep(obs, folded=phase.final),
            run.student_factory,
            settings.eval_episodes,
            run.eval_seed,
            run.teacher if run.view is None else None,  # agreement needs the teacher's observation of each state
        )
        if phase.final:
            save_student(run, state)
    state.student_returns = returns.returns.tolist()
    state.agreement = agreement
    state.evals.append(Evaluation(phase.round, state.env_steps, state.gradient_steps, returns.mean, returns.std))
    view.bar.update(view.task, student=f"{returns.mean:.1f}")
    log = view.logger
    log.record("eval/teacher_return", view.teacher.mean)
    log.record("eval/student_return", returns.mean)
    log.record("eval/student_return_std", returns.std)
    if not np.isnan(agreement):
        log.record("eval/action_agreement", agreement)
    log.dump(state.x_step)


def become_saved(run: Run) -> None:
    """At the end, in place: `run.student` becomes the student.zip it wrote (averaged weights, input standardisation
    folded in), so that the library's `DistillResult.student` acts on raw observations as `PPO.load` of it does."""
    if run.average is not None and int(run.average.n_averaged) > 0:
        with th.no_grad():
            for param, averaged in zip(run.student.policy.parameters(), run.average.module.parameters()):
                param.copy_(averaged)
    if run.obs_stats is not None:
        fold(run.student, run.obs_stats)
        run.obs_stats = None


PhaseFn = Callable[[Run, RunState, Any, View], None]
PHASES: dict[type, PhaseFn] = {Collect: collect, Train: train, Evaluate: evaluate, Reinforce: reinforce}
"""What each kind of phase does (LoadDataset is the loop's own: it runs before the progress bar counts)."""
