"""The multi-task loop: every task's plan walked round by round (its collection, one joint training, its evaluation),
a checkpoint of all tasks at once between steps, a summary per task and one for the student.

Each task keeps its own plan, state, progress-bar row and TensorBoard folder (`<out>/<ENV>/tb`), and writes the
files of a single-task run into `<out>/<ENV>/` (student.zip, summary.json, config.json): `evaluate`, `export` and
`PPO.load` read a task's folder as they read any run. One checkpoint in `<out>` holds every task's buffer, student
and random state and the shared optimizer, so `kill -9` at any moment resumes all tasks from the same step.
"""

from __future__ import annotations

import json
import time

import numpy as np
from rich.console import Console
from stable_baselines3.common.logger import Logger

from policykd.errors import PolicykdError
from policykd.rollouts import Returns, return_ratio
from policykd.run.build import Run
from policykd.run.checkpoint import load_checkpoint, remove_checkpoints, save_checkpoint
from policykd.run.console import print_line, progress_bar, resuming_line, tensorboard_logger
from policykd.run.folder import save_student_so_far, write_summary
from policykd.run.loop import checkpoint_parts, restore_parts, teacher_figures
from policykd.run.phases import View, collect, evaluate, prepare_round, record_round
from policykd.run.plan import Collect, Evaluate, Train
from policykd.run.state import RunState
from policykd.run.summary import summarize
from policykd.storage import atomic_write_text, disk_full_is_one_line, prepare_out
from policykd.workflows.tasks.balance import task_weights
from policykd.workflows.tasks.build import TaskRuns
from policykd.workflows.tasks.summary import tasks_summary
from policykd.workflows.tasks.train import train_tasks_round


def execute_tasks(tasks: TaskRuns, *, console: Console | None = None, quiet: bool = False) -> dict[str, object]:
    """Run (or resume) every task's plan; writes each task's folder and `<out>/summary.json`, returns the latter."""
    console = console or Console()
    out = tasks.settings.out_path
    start = time.time()
    if tasks.resuming:
        states, joint = _restore(tasks)
        if not quiet:
            print_line(console, resuming_line(out, sum(s.env_steps for s in states), states[0].gradient_steps))
    else:
        prepare_out(out, tasks.settings.overwrite or tasks.restarting)
        atomic_write_text(out / "config.json", json.dumps(tasks.settings.to_dict(), indent=2))
        states, joint = [_start(run) for run in tasks.runs], RunState()
    with disk_full_is_one_line(out, "a checkpoint or a student"):
        _walk(tasks, states, joint, console, quiet, start)
        for run, state in zip(tasks.runs, states):
            state.wall = joint.wall
            write_summary(run.out, summarize(run, state).to_dict())
        summary = tasks_summary(tasks, states, joint)
        write_summary(out, summary)
    remove_checkpoints(out)
    return summary


def _start(run: Run) -> RunState:
    """A task's folder and config.json, and its teacher's returns on the evaluation seeds (kept games or played)."""
    began = time.time()
    run.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run.out / "config.json", json.dumps(run.settings.to_dict(), indent=2))
    returns, source = teacher_figures(run)
    state = RunState(teacher_returns=returns.returns.tolist(), teacher_returns_source=source)
    state.timed("teacher_eval", began)
    return state


def _walk(
    tasks: TaskRuns, states: list[RunState], joint: RunState, console: Console, quiet: bool, start: float
) -> None:
    """Round by round: each task's collection segments, one joint training, each task's evaluation when due."""
    runs = tasks.runs
    ratios = tensorboard_logger(tasks.settings.out_path / "tb")
    views: list[View] = []
    try:
        with progress_bar(console, disable=quiet) as bar:
            for run, state in zip(runs, states):
                teacher = Returns(np.array(state.teacher_returns), np.zeros(0))
                row = bar.add_task(
                    run.settings.env_id,
                    total=run.settings.steps,
                    completed=state.env_steps,
                    sps=0.0,
                    loss=float("nan"),
                    kl=float("nan"),
                    teacher=f"{teacher.mean:.1f}",
                    student="-",
                )
                views.append(View(bar, row, tensorboard_logger(run.out / "tb"), teacher))
            while not all(state.phase == len(run.plan.phases) for run, state in zip(runs, states)):
                began = time.time()
                kind = _step(tasks, states, views)
                if kind is Train:
                    joint.timed("train", began)
                if kind is Evaluate:
                    _log_ratios(ratios, tasks, states)
                joint.wall += time.time() - start
                start = time.time()
                if kind is not Train or runs[0].plan.checkpoint_after(states[0].phase - 1):
                    _save(tasks, states, joint)
                    joint.timed("checkpoint", start)
    except KeyboardInterrupt:
        for run, state in zip(runs, states):
            save_student_so_far(run, state)
        print_line(
            console,
            f"interrupted: each task's student so far in {tasks.settings.out_path}/<ENV>/student.zip, the checkpoint "
            f"in {tasks.settings.out_path}; run the same command again to resume",
        )
        raise
    finally:
        for view in views:
            view.logger.close()
        ratios.close()
        tasks.close()


def _step(tasks: TaskRuns, states: list[RunState], views: list[View]) -> type:
    """The next step of every task: a collection segment of each task that has one left in this round (one after
    another, each in its own seeded envs), else the round's joint training, else each task's evaluation."""
    runs = tasks.runs
    nexts = [run.plan.phases[s.phase] if s.phase < len(run.plan.phases) else None for run, s in zip(runs, states)]
    if any(isinstance(p, Collect) for p in nexts):
        for run, state, view, phase in zip(runs, states, views, nexts):
            if isinstance(phase, Collect):
                began = time.time()
                collect(run, state, phase, view)
                state.timed("collect", began)
                state.phase += 1
        return Collect
    first = nexts[0]
    if isinstance(first, Train):
        _train(tasks, states, views, first.round)
        return Train
    _evaluate(runs, states, views)
    return Evaluate


def _train(tasks: TaskRuns, states: list[RunState], views: list[View], round_index: int) -> None:
    for run, state in zip(tasks.runs, states):
        _expect(run, state, Train)
        prepare_round(run, round_index)
    stats = train_tasks_round(
        tasks, round_index, sum(s.env_steps for s in states), task_weights(tasks.settings, states)
    )
    for run, state, view, task_stats in zip(tasks.runs, states, views, stats):
        record_round(run, state, view, task_stats, round_index)
        state.phase += 1


def _evaluate(runs: list[Run], states: list[RunState], views: list[View]) -> None:
    for run, state, view in zip(runs, states, views):
        phase = _expect(run, state, Evaluate)
        began = time.time()
        evaluate(run, state, phase, view)
        state.timed("evaluate", began)
        state.phase += 1


def _expect(run: Run, state: RunState, kind: type) -> Evaluate:
    """The task's next phase, which must be of `kind`: the tasks' plans go round by round together."""
    phase = run.plan.phases[state.phase] if state.phase < len(run.plan.phases) else None
    if not isinstance(phase, kind):
        raise PolicykdError(f"{run.settings.env_id}: its plan is out of step with the other tasks' ({phase})")
    return phase  # type: ignore[return-value]  # an Evaluate where the caller asks for one


def _log_ratios(logger: Logger, tasks: TaskRuns, states: list[RunState]) -> None:
    """`<out>/tb`: every task's return ratio on one chart (`ratio/<ENV>`), and the loss weight each task trains with
    next (`weight/<ENV>`), at the tasks' env steps together."""
    for run, state, weight in zip(tasks.runs, states, task_weights(tasks.settings, states)):
        teacher = float(np.mean(state.teacher_returns))
        logger.record(f"ratio/{run.settings.env_id}", return_ratio(state.evals[-1].student_return_mean, teacher))
        logger.record(f"weight/{run.settings.env_id}", weight)
    logger.dump(sum(s.env_steps for s in states))


def _save(tasks: TaskRuns, states: list[RunState], joint: RunState) -> None:
    """One checkpoint of every task (keys `task<i>.`) and the shared optimizer."""
    metas, tensors, arrays = [], {"optimizer": tasks.optimizer.state_dict()}, {}
    for i, (run, state) in enumerate(zip(tasks.runs, states)):
        meta, task_tensors, task_arrays = checkpoint_parts(run, state)
        metas.append(meta)
        tensors[f"task{i}"] = task_tensors
        arrays.update({f"task{i}.{k}": v for k, v in task_arrays.items()})
    save_checkpoint(tasks.settings.out_path, {"tasks": metas, "joint": joint.to_json()}, tensors, arrays)


def _restore(tasks: TaskRuns) -> tuple[list[RunState], RunState]:
    loaded = load_checkpoint(tasks.settings.out_path)
    if loaded is None:
        raise PolicykdError(f"{tasks.settings.out_path}: its checkpoint went away while the run was starting")
    meta, tensors, arrays = loaded
    tasks.optimizer.load_state_dict(tensors["optimizer"])
    states = []
    for i, run in enumerate(tasks.runs):
        prefix = f"task{i}."
        own = {k.removeprefix(prefix): v for k, v in arrays.items() if k.startswith(prefix)}
        states.append(restore_parts(run, meta["tasks"][i], tensors[f"task{i}"], own))
    return states, RunState.from_json(meta["joint"])
