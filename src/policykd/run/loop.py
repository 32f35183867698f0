"""The distillation loop: the plan's phases in order, a checkpoint between them, a summary at the end."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch as th
from rich.console import Console

from policykd.data.frames import FrameStackStore
from policykd.data.source import fill_buffer
from policykd.errors import PolicykdError
from policykd.rollouts import Returns
from policykd.run.build import Run
from policykd.run.checkpoint import (
    append_frames,
    checkpoint_folder,
    forget_frames,
    load_checkpoint,
    read_frames,
    remove_checkpoints,
    save_checkpoint,
)
from policykd.run.console import print_line, print_summary, progress_bar, resuming_line, tensorboard_logger
from policykd.run.folder import save_student_so_far, write_summary
from policykd.run.phases import PHASES, View
from policykd.run.plan import Evaluate, LoadDataset, Train
from policykd.run.reinforce import close_loggers, restore_models, save_models
from policykd.run.state import Evaluation, RunState
from policykd.run.summary import RunSummary, summarize
from policykd.storage import atomic_write_text, disk_full_is_one_line, prepare_out
from policykd.students.folding import ObsStats
from policykd.teachers.evaluated import teacher_returns

OnEvaluation = Callable[[Evaluation, float, bool], None]
"""Called after each evaluation (and its checkpoint) with the evaluation, the teacher's mean return on the same
seeds, and whether it is the final one: how a sweep's trial reports to Ray Tune."""


def execute(
    run: Run, *, console: Console | None = None, quiet: bool = False, on_evaluation: OnEvaluation | None = None
) -> RunSummary:
    """Run (or resume) every phase of `run.plan`; writes summary.json and returns the summary."""
    console = console or Console()
    start = time.time()
    if run.resuming:
        state = restore(run)
        if not quiet:
            print_line(console, resuming_line(run.out, state.env_steps, state.gradient_steps))
    else:
        prepare_out(run.out, run.settings.overwrite or run.restarting)
        atomic_write_text(run.out / "config.json", json.dumps(run.settings.to_dict(), indent=2))
        returns, source = teacher_figures(run)
        state = RunState(teacher_returns=returns.returns.tolist(), teacher_returns_source=source)
        state.timed("teacher_eval", start)
    with disk_full_is_one_line(run.out, "a checkpoint or the student"):
        _run_phases(run, state, console, quiet, start, on_evaluation)
        summary = summarize(run, state)
        write_summary(run.out, summary.to_dict())
    remove_checkpoints(run.out)
    if not quiet:
        print_summary(console, summary.to_dict(), run.out)
    return summary


def _run_phases(
    run: Run, state: RunState, console: Console, quiet: bool, start: float, on_evaluation: OnEvaluation | None
) -> None:
    teacher = Returns(np.array(state.teacher_returns), np.zeros(0))
    logger = tensorboard_logger(run.out / "tb", run.view.specs if run.view else ())
    offline = run.teacher is None
    try:
        with progress_bar(console, disable=quiet) as bar:
            done = sum(isinstance(p, Train) for p in run.plan.phases[: state.phase])
            task = bar.add_task(
                "distill (offline rounds)" if offline else "distill",
                total=run.plan.total_rounds if offline else run.settings.steps,
                completed=done if offline else state.env_steps,
                sps=0.0,
                loss=float("nan"),
                kl=float("nan"),
                teacher=f"{teacher.mean:.1f}",
                student="-",
            )
            view = View(bar, task, logger, teacher)
            while state.phase < len(run.plan.phases):
                phase = run.plan.phases[state.phase]
                began = time.time()
                if isinstance(phase, LoadDataset):
                    _load_dataset(run)
                else:
                    PHASES[type(phase)](run, state, phase, view)
                state.timed(type(phase).__name__.lower(), began)
                state.wall += time.time() - start
                start = time.time()
                state.phase += 1
                if run.plan.checkpoint_after(state.phase - 1):
                    save(run, state)
                    state.timed("checkpoint", start)
                if isinstance(phase, Evaluate) and on_evaluation is not None:
                    on_evaluation(state.evals[-1], teacher.mean, phase.final)
    except KeyboardInterrupt:
        save_student_so_far(run, state)
        print_line(
            console,
            f"interrupted in round {run.plan.round_of(state.phase) + 1}/{run.plan.total_rounds}: student "
            f"so far at {run.out / 'student.zip'}, checkpoint in {run.out}; run the same command again "
            "to resume",
        )
        raise
    finally:
        logger.close()
        close_loggers(run)
        run.close()


def _load_dataset(run: Run) -> None:
    fill_buffer(run.buffer, run.dataset_source.dataset, live=run.relabel_with, squashed=run.squashed_student)


def teacher_figures(run: Run) -> tuple[Returns, str]:
    """The live teacher on the evaluation seeds (kept games where they are the same: `teachers.evaluated`); for an
    offline run, the dataset's own episodes."""
    if run.teacher is not None:
        kept = teacher_returns(run.teacher, run.settings.eval_episodes, run.eval_seed)
        return kept.returns, kept.source
    return Returns(np.array(run.dataset_source.dataset.episode_returns()), np.zeros(0)), "dataset"


def save(run: Run, state: RunState) -> None:
    """Everything a resumed run needs (`checkpoint_parts`), written as one checkpoint in `run.out`."""
    meta, tensors, arrays = checkpoint_parts(run, state)
    tensors["optimizer"] = run.optimizer.state_dict()
    save_checkpoint(run.out, meta, tensors, arrays, extra=lambda folder: save_models(run, folder))
    forget_frames(run.out, state.frame_segments)


def checkpoint_parts(run: Run, state: RunState) -> tuple[dict[str, object], dict[str, object], dict[str, np.ndarray]]:
    """(meta, tensors, arrays) of the run but its optimizer, which a multi-task run shares between its tasks; a buffer
    that holds only the dataset is rebuilt from it instead, and once RL has begun the distillation buffer is needed no
    more (the kick labels RL's own states)."""
    from_dataset = run.source is not None and state.env_steps == 0
    in_rl = run.rl is not None and run.rl.student is not None
    if in_rl:
        state.frame_segments = []
    buffer = {} if from_dataset or in_rl else run.buffer.state()
    if "obs.frames" in buffer:  # Atari: only the frames no checkpoint has written yet
        ring = {k.removeprefix("obs."): v for k, v in buffer.items() if k.startswith("obs.")}
        state.frame_segments = append_frames(run.out, ring, state.frame_segments)
        del buffer["obs.frames"]
    meta = {
        "state": state.to_json(),
        "rng": run.rng.bit_generator.state,
        "buffer_from_dataset": from_dataset,
        "buffer_dropped": in_rl,
    }
    tensors: dict[str, object] = {"student": run.student.policy.state_dict(), "torch_rng": th.get_rng_state()}
    arrays = {f"buffer.{k}": v for k, v in buffer.items()}
    if run.average is not None:
        tensors["average"] = run.average.state_dict()
    if run.knowledge is not None and run.knowledge.projection is not None:
        tensors["hint_projection"] = run.knowledge.projection.state_dict()
    if run.obs_stats is not None:
        arrays.update({"obs_stats.mean": run.obs_stats.mean, "obs_stats.std": run.obs_stats.std})
    return meta, tensors, arrays


def restore(run: Run) -> RunState:
    """Load the checkpoint in `run.out` into the run; returns the state to continue from."""
    loaded = load_checkpoint(run.out)
    if loaded is None:  # `run.resuming` was decided on the same pointer
        raise PolicykdError(f"{run.out}: its checkpoint went away while the run was starting")
    meta, tensors, arrays = loaded
    run.optimizer.load_state_dict(tensors["optimizer"])
    return restore_parts(run, meta, tensors, arrays)


def restore_parts(run: Run, meta: dict[str, Any], tensors: dict[str, Any], arrays: dict[str, np.ndarray]) -> RunState:
    """`checkpoint_parts` back into the run; returns the state to continue from."""
    run.student.policy.load_state_dict(tensors["student"])
    th.set_rng_state(tensors["torch_rng"])
    if run.average is not None and "average" in tensors:
        run.average.load_state_dict(tensors["average"])
    projection = run.knowledge.projection if run.knowledge is not None else None
    if "hint_projection" in tensors and projection is not None:
        projection.load_state_dict(tensors["hint_projection"])
    run.rng.bit_generator.state = meta["rng"]
    state = RunState.from_json(meta["state"])
    folder = checkpoint_folder(run.out)
    if meta.get("buffer_dropped") and folder is not None:
        restore_models(run, state, folder)
    elif meta["buffer_from_dataset"]:
        if state.phase > 0:
            _load_dataset(run)
    else:
        run.buffer.restore({k.removeprefix("buffer."): v for k, v in arrays.items() if k.startswith("buffer.")})
        frames = run.buffer.obs
        if state.frame_segments and isinstance(frames, FrameStackStore):
            read_frames(run.out, state.frame_segments, frames.frames, frames.next_serial)
    if "obs_stats.mean" in arrays:
        run.obs_stats = ObsStats(arrays["obs_stats.mean"], arrays["obs_stats.std"])
    return state
