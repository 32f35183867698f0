"""The RL phases of a run: segments of the student's own RL with the kick, and of the from-scratch baseline.

Each `Reinforce` phase runs SB3's `learn()` to the segment's end (`rl.model.learn_segment`), evaluates the model on
the run's evaluation seeds, sets the adaptive lambda from that evaluation, and logs `rl/*` to TensorBoard against RL
env steps (teacher, student and baseline on one chart). The loop checkpoints after each phase; the models and
replay buffers go into the checkpoint (`save_models`, `restore_models`).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.logger import Logger

from policykd.envs import array_obs
from policykd.rl.kick import Kick
from policykd.rl.model import (
    RLConfig,
    copy_teacher_critic,
    learn_segment,
    load_rl_model,
    make_env,
    restore_rl,
    save_rl,
    set_temperature,
    warm_up_critic,
)
from policykd.rollouts import Returns, run_episodes, student_actor, student_eval
from policykd.run.console import tensorboard_logger
from policykd.run.folder import save_student
from policykd.storage import atomic_write
from policykd.students.build import build_student

if TYPE_CHECKING:  # run/build.py imports this module: these only name types
    from policykd.run.build import Run
    from policykd.run.phases import View
    from policykd.run.plan import Reinforce
    from policykd.run.state import RunState

STUDENT, SCRATCH = "rl-student", "rl-scratch"


@dataclass
class RLParts:
    """A run's RL: its hyperparameters and, once RL has begun (or a checkpoint is restored), its models."""

    config: RLConfig
    """rl-zoo's hyperparameters: the from-scratch baseline's."""
    ends: tuple[int, ...]
    student_config: RLConfig
    """The RL student's: `config` with its learning rate scaled (`--rl-lr-scale`)."""
    student: BaseAlgorithm | None = None
    scratch: BaseAlgorithm | None = None
    kick: Kick | None = None
    loggers: dict[str, Logger] = field(default_factory=dict)
    warmup_end: int = 0
    """RL env steps up to which only the student's critic learns (`rl.model.warm_up_critic`); 0: none."""

    def student_kick(self) -> Kick:
        """The student's kick, which `_attach` makes with the student's model."""
        if self.kick is None:
            raise RuntimeError("the RL student has no kick before its model is attached")
        return self.kick


def _parts(run: Run) -> RLParts:
    assert run.rl is not None  # RL phases are planned only for runs with --rl-steps, which build_run gives parts
    return run.rl


def reinforce(run: Run, state: RunState, phase: Reinforce, view: View) -> None:
    """One RL segment of the student (`phase.scratch`: of the baseline), then its evaluation."""
    parts = _parts(run)
    model = _model(run, state, phase.scratch)
    settings, total = run.settings, parts.ends[-1]
    index = parts.ends.index(phase.end)
    seed = settings.seed + 104_729 * (index + 1) + (1 if phase.scratch else 0)
    task = view.bar.add_task(
        "RL from scratch" if phase.scratch else "RL + kick",
        total=phase.end,
        completed=model.num_timesteps,
        sps=0.0,
        loss=float("nan"),
        kl=float("nan"),
        teacher=f"{view.teacher.mean:.1f}",
        student="-",
    )
    venv = make_env(run.factory, parts.config.n_envs, seed, _normalizer_file(run))
    learn_segment(model, venv, seed, phase.end, total, lambda k: view.bar.update(task, advance=k))
    venv.close()
    returns, agreement = _evaluate(run, model, with_teacher=not phase.scratch)
    view.bar.update(task, student=f"{returns.mean:.1f}", visible=False)
    row: dict[str, float] = {
        "env_steps": int(model.num_timesteps),
        "return_mean": returns.mean,
        "return_std": returns.std,
    }
    if phase.scratch:
        state.scratch_evals.append(row)
        if phase.final:  # the baseline as a model too: held-out evaluations compare it with the student
            model.save(run.out / "baseline-scratch.zip")
    else:
        kick = parts.student_kick()
        row.update(kick_weight=kick.weight_now(), kick_loss=kick.take_losses(), agreement=agreement)
        state.rl_evals.append(row)
        kick.last_return = returns.mean
        state.student_returns, state.agreement = returns.returns.tolist(), agreement
        if phase.final:
            save_student(run, state)
    _log(view.logger, row, view.teacher.mean, phase.scratch)


def _model(run: Run, state: RunState, scratch: bool) -> BaseAlgorithm:
    """The RL model, built at its first segment: the student from its distilled student.zip (or, kickstarting, from
    the run's random student), the baseline from the same random weights the student started from."""
    parts = _parts(run)
    existing = parts.scratch if scratch else parts.student
    if existing is None:
        algo, venv = (
            run.student_algo,
            make_env(run.factory, parts.config.n_envs, run.settings.seed, _normalizer_file(run)),
        )
        if scratch:
            existing = load_rl_model(algo, _random_student(run), venv, parts.config, run.student.device)
        else:
            existing = load_rl_model(algo, _start(run, state), venv, parts.student_config, run.student.device)
            if run.settings.rl_start == "distilled":
                state.rl_temperature = set_temperature(existing, run.settings.rl_temperature)
            teacher_model: BaseAlgorithm | None = getattr(run.teacher, "model", None)  # an SB3Teacher's
            if teacher_model is not None:
                state.rl_critic_from_teacher = copy_teacher_critic(existing, teacher_model)
        venv.close()
        _attach(run, state, existing, scratch)
        if not scratch:
            assert state.return_before_rl is not None  # `_start` has just measured it
            parts.student_kick().last_return = state.return_before_rl
    return existing


def _attach(run: Run, state: RunState, model: BaseAlgorithm, scratch: bool) -> None:
    """Hook the kick (the student only) and give the model its own TensorBoard folder (tb/rl, tb/scratch)."""
    parts = _parts(run)
    name = "scratch" if scratch else "rl"
    if name not in parts.loggers:
        parts.loggers[name] = tensorboard_logger(run.out / "tb" / name)
    model.set_logger(parts.loggers[name])
    if scratch:
        parts.scratch = model
        return
    settings = run.settings
    sharpened = state.rl_temperature or 1.0
    parts.kick = kick = parts.kick or Kick(
        run.live_teacher,
        run.loss,
        settings.temperature,
        run.normalizer,
        schedule=settings.kick_schedule,
        weight=settings.kick_weight,
        total=parts.ends[-1],
        teacher_return=float(np.mean(state.teacher_returns)),
        student_temperature=sharpened,
    )
    kick.attach(model)
    if parts.warmup_end:
        warm_up_critic(model, parts.warmup_end)
        kick.silent_until = parts.warmup_end
    parts.student = run.student = model
    run.obs_stats = run.average = None  # folded into, and averaged into, the student.zip RL started from


def _start(run: Run, state: RunState) -> Path | BaseAlgorithm:
    """What RL continues: the distilled student.zip (kept as student-distilled.zip), or the random student."""
    if run.settings.rl_start == "scratch":
        returns, _ = _evaluate(run, run.student, with_teacher=False)
        state.return_before_rl = returns.mean
        return run.student
    shutil.copyfile(run.out / "student.zip", run.out / "student-distilled.zip")
    state.return_before_rl = state.evals[-1].student_return_mean
    return run.out / "student.zip"


def _random_student(run: Run) -> BaseAlgorithm:
    """The same random weights the run's student had before any training (built with the same seed)."""
    venv = run.factory.make(1, run.settings.seed)
    try:
        return build_student(
            run.student_algo, venv, run.student_arch, seed=run.settings.seed, device=run.student.device
        )
    finally:
        venv.close()


def _normalizer_file(run: Run) -> Path | None:
    """The run's frozen VecNormalize as a file RL's envs load; kickstarting has saved no student.zip (which writes
    it) before RL, so it is written here the first time."""
    normalizer = run.normalizer
    if normalizer is None:
        return None
    path = run.out / "vecnormalize.pkl"
    if not path.is_file():
        atomic_write(path, lambda tmp: normalizer.save(str(tmp)))
    return path


def _evaluate(run: Run, model: BaseAlgorithm, *, with_teacher: bool) -> tuple[Returns, float]:
    normalizer = run.normalizer

    def prep(obs: np.ndarray) -> np.ndarray:
        return array_obs(normalizer.normalize_obs(obs)) if normalizer is not None else obs

    if with_teacher:
        return student_eval(model, prep, run.factory, run.settings.eval_episodes, run.eval_seed, run.teacher)
    returns = run_episodes(student_actor(model, prep), run.factory, run.settings.eval_episodes, run.eval_seed)
    return returns, float("nan")


def _log(logger: Logger, row: dict[str, float], teacher: float, scratch: bool) -> None:
    """`rl/*` scalars against RL env steps: the custom-scalars chart puts teacher, student and baseline together."""
    if not scratch:
        logger.record("rl/teacher_return", teacher)
    logger.record("rl/scratch_return" if scratch else "rl/student_return", row["return_mean"])
    for key in ("kick_weight", "kick_loss", "agreement"):
        if key in row and not np.isnan(row[key]):
            logger.record(f"rl/{key}", row[key])
    logger.dump(int(row["env_steps"]))


def save_models(run: Run, folder: Path) -> None:
    """Into a checkpoint folder: the RL models that exist so far."""
    parts: RLParts | None = run.rl
    if parts is None:
        return
    for name, model in ((STUDENT, parts.student), (SCRATCH, parts.scratch)):
        if model is not None:
            save_rl(model, folder, name)


def restore_models(run: Run, state: RunState, folder: Path) -> None:
    """The RL models of a checkpoint folder back into the run, hooked and logging as before."""
    parts: RLParts | None = run.rl
    if parts is None:
        return
    for name, scratch in ((STUDENT, False), (SCRATCH, True)):
        model = restore_rl(run.student_algo, folder, name, run.student.device)
        if model is not None:
            _attach(run, state, model, scratch)
    if parts.kick is not None and state.rl_evals:
        parts.kick.last_return = state.rl_evals[-1]["return_mean"]
    elif parts.kick is not None and state.return_before_rl is not None:
        parts.kick.last_return = state.return_before_rl


def close_loggers(run: Run) -> None:
    if run.rl is not None:
        for logger in run.rl.loggers.values():
            logger.close()
