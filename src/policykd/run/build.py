"""Building a run: settings in, a `Run` of teacher, optional dataset, student, buffer and envs out.

Everything that can refuse the settings (the env id, the teacher files, the dataset, the output
folder, the loss against the teacher) runs here, before any env is stepped; global torch state
(threads, seeds) is the entry point's business, not this module's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.vec_env import VecEnv, VecNormalize

from policykd.constants import EVAL_SEED_OFFSET
from policykd.data.buffer import DistillationBuffer
from policykd.data.source import DatasetSource, open_source
from policykd.devices import check_device, resolve_device
from policykd.distributions import ActionDist, obs_tensor, policy_dist
from policykd.envs import EnvFactory, EnvOptions, array_obs, check_env_id
from policykd.errors import PolicykdError, option
from policykd.fields import spelled
from policykd.registry import STUDENT_FAMILIES
from policykd.rl.model import load_rl_model, make_env, rl_config, segment_ends
from policykd.run.checkpoint import resumable, unstarted
from policykd.run.collect import Collector
from policykd.run.knowledge import Knowledge, make_knowledge
from policykd.run.loss_choice import check_loss_fits
from policykd.run.plan import Plan, make_plan
from policykd.run.reinforce import RLParts
from policykd.sb3_models import uses_images
from policykd.settings import DistillSettings
from policykd.storage import check_out
from policykd.students.averaging import make_average
from policykd.students.build import Sizing, build_student, check_family_fits, default_size, default_student_algo
from policykd.students.folding import ObsStats
from policykd.teachers import Teacher, load_teachers
from policykd.teachers.ensemble import EnsembleTeacher
from policykd.teachers.shipped import default_agent
from policykd.teachers.weighting import return_weights, select_weights
from policykd.views import View, view_for, with_view

FALLBACK_ARCH = {False: (64, 64), True: (16, 32, 32, 32)}  # action-only datasets: no teacher size to scale from


@dataclass
class Run:
    """One distillation's parts. `teacher` is the live teacher (None: offline from `source` alone)."""

    settings: DistillSettings
    out: Path
    plan: Plan
    teacher: Teacher | None
    source: DatasetSource | None
    student: BaseAlgorithm
    student_algo: str
    student_arch: tuple[int, ...]
    student_size: str
    """Why the student has its size, in words (summary.json, the console)."""
    buffer: DistillationBuffer
    venv: VecEnv | None
    collector: Collector | None
    optimizer: th.optim.Optimizer
    average: th.optim.swa_utils.AveragedModel | None
    rng: np.random.Generator
    resuming: bool
    restarting: bool
    loss: str = "kl"
    relabel_with: Teacher | None = None
    """The live teacher, when the dataset's own labels cannot serve (actions only, or another kind)."""
    obs_stats: ObsStats | None = None
    """The student's input standardisation, fitted on the first round (MLP students without VecNormalize)."""
    knowledge: Knowledge | None = None
    """Feature hints and relations (--hint-weight, --relation-weight), with the hints' training-only projection."""
    rl: RLParts | None = None
    """With --rl-steps: the RL hyperparameters and segments, and (once RL has begun) the RL models."""
    view: View | None = None
    """The student's view of the env (--student-obs); None: it sees what the teacher sees."""

    @property
    def known(self) -> Teacher | DatasetSource:
        """The live teacher, else the dataset (`build_run` makes a run without a teacher from a dataset)."""
        known = self.teacher or self.source
        if known is None:
            raise PolicykdError("a run needs a teacher or a dataset")
        return known

    @property
    def live_teacher(self) -> Teacher:
        """The live teacher of a run that has one (RL and collection need it; offline runs have none)."""
        if self.teacher is None:
            raise PolicykdError("this run has no live teacher (a dataset alone)")
        return self.teacher

    @property
    def dataset_source(self) -> DatasetSource:
        """The dataset of a run that has one (offline runs always have: they have no teacher)."""
        if self.source is None:
            raise PolicykdError("this run has no dataset")
        return self.source

    @property
    def factory(self) -> EnvFactory:
        """The teacher's envs (its full observation)."""
        return self.known.factory

    @property
    def student_factory(self) -> EnvFactory:
        """The student's envs: the teacher's seen through the student's view."""
        return with_view(self.factory, self.view)

    @property
    def action_space(self) -> spaces.Space:
        return self.known.action_space

    @property
    def normalizer(self) -> VecNormalize | None:
        """The teacher's VecNormalize, which the student reads through too (not with a view: it normalises the
        teacher's observation; a view student standardises its own inputs)."""
        return self.known.normalizer if self.view is None else None

    @property
    def teacher_algo(self) -> str:
        return self.teacher.algo if self.teacher else self.dataset_source.teacher_algo

    @property
    def teacher_params(self) -> int:
        return int(self.teacher.acting_params if self.teacher else self.dataset_source.teacher_params)

    @property
    def envs(self) -> VecEnv:
        """The collection envs, which a run with a live teacher has."""
        if self.venv is None:
            raise PolicykdError("this run has no collection envs (no live teacher)")
        return self.venv

    @property
    def eval_seed(self) -> int:
        return self.settings.seed + EVAL_SEED_OFFSET

    @property
    def squashed_student(self) -> bool:
        return self.student_algo in ("sac", "td3")

    @property
    def actions_only(self) -> bool:
        """Offline from a dataset that holds actions, not distributions: behaviour cloning."""
        return self.teacher is None and not self.dataset_source.dataset.has_distributions

    def prep(self, obs: np.ndarray, *, folded: bool = False) -> np.ndarray:
        """What the student reads: the teacher's VecNormalize, then (until folded) its own standardisation."""
        if self.normalizer is not None:
            obs = array_obs(self.normalizer.normalize_obs(obs))
        if self.obs_stats is not None and not folded:
            obs = self.obs_stats.apply(obs)
        return obs

    def student_dist(self, obs: np.ndarray) -> ActionDist:
        policy = self.student.policy
        return policy_dist(policy, obs_tensor(policy, self.prep(obs)))

    def fresh_envs(self, seed: int) -> np.ndarray:
        """New collection envs seeded with `seed`; returns their first observations.

        Reseeding and resetting the old envs is not enough: Atari's EpisodicLifeEnv turns `reset()` into a
        no-op step unless the game really ended, so the old envs would play on where they stopped while a
        resumed process, whose envs are new, would start new games. New envs make both start the same.
        """
        if self.collector is None:
            raise PolicykdError("this run has no collection envs (no live teacher)")
        self.envs.close()
        self.venv = self.collector.venv = self.student_factory.make(self.settings.n_envs, seed)
        return array_obs(self.venv.reset())

    def close(self) -> None:
        if self.venv is not None:
            self.venv.close()


def resolve_teacher_specs(env_id: str, specs: tuple[str, ...] | list[str]) -> list[str]:
    """The given specs, or the shipped teacher for the env."""
    if specs:
        return list(specs)
    card = default_agent(env_id)
    if card is None:
        raise PolicykdError(
            f"no teacher given and none shipped for {env_id}: pass {spelled('teachers', '--teacher')} (or {spelled('dataset')})"
        )
    return [str(card.folder)]


def _live_teacher(settings: DistillSettings) -> Teacher | None:
    """The live teacher(s); None for a dataset-only (offline) run."""
    if settings.dataset and not settings.teachers:
        return None
    specs = resolve_teacher_specs(settings.env_id, settings.teachers)
    teacher = load_teachers(
        specs,
        env_id=settings.env_id,
        weights=settings.teacher_weights,
        zoo_folder=settings.zoo_folder,
        trust=settings.trust_teacher,
        options=EnvOptions.of(settings),
    )
    weighting = settings.teacher_weighting
    if not isinstance(teacher, EnsembleTeacher):
        if weighting not in ("fixed", "select"):  # select, the default, of one teacher is that teacher
            raise PolicykdError(
                f"{option('teacher_weighting', weighting)} weighs the members of an ensemble: "
                f"pass two or more {spelled('teachers', '--teacher')}"
            )
        return teacher
    teacher.confidence = weighting == "confidence"
    seed = settings.seed + EVAL_SEED_OFFSET
    if weighting in ("return", "select"):
        weigh = return_weights if weighting == "return" else select_weights
        teacher.weights = weigh(teacher, settings.eval_episodes, seed)
    return teacher


def build_run(settings: DistillSettings) -> Run:
    """Check and load everything the run needs; raises PolicykdError (one line) on bad input."""
    out = settings.out_path
    resuming = resumable(out, settings)
    restarting = not resuming and unstarted(out, settings)
    if not (resuming or restarting):
        check_out(out, settings.overwrite)
    return assemble_run(settings, resuming=resuming, restarting=restarting)


def assemble_run(settings: DistillSettings, *, resuming: bool, restarting: bool) -> Run:
    """The run's parts, its output folder already judged (`build_run`'s, or a multi-task run's for each task)."""
    out = settings.out_path
    check_device(settings.device)
    check_env_id(settings.env_id, EnvOptions.of(settings))
    check_family_fits(settings)
    teacher = _live_teacher(settings)
    source = open_source(settings.dataset, settings.env_id, EnvOptions.of(settings)) if settings.dataset else None
    view = view_for(teacher.factory, settings.student_obs, settings.seed) if teacher else None
    device = _device(settings, teacher, source, view)
    if teacher is not None:
        teacher.to(device)
    student, algo, size = make_student(settings, teacher, source, view, device)
    online = settings.steps if teacher else 0
    capacity = max(settings.buffer_size, source.dataset.total_steps + online) if source else settings.buffer_size
    buffer = DistillationBuffer(capacity, sequences=STUDENT_FAMILIES.load(algo).recurrent)
    rng = np.random.default_rng(settings.seed)
    venv = with_view(teacher.factory, view).make(settings.n_envs, settings.seed) if teacher else None
    collector = Collector(venv, teacher, buffer, rng, sample=settings.sample_actions) if teacher and venv else None
    rl = _rl_parts(settings, algo, teacher) if settings.rl_steps else None
    plan = make_plan(settings, has_dataset=source is not None, live=teacher is not None, rl_ends=rl.ends if rl else ())
    run = Run(
        settings=settings,
        out=out,
        plan=plan,
        teacher=teacher,
        source=source,
        student=student,
        student_algo=algo,
        student_arch=size.arch,
        student_size=size.reason,
        buffer=buffer,
        venv=venv,
        collector=collector,
        optimizer=th.optim.Adam(student.policy.parameters(), lr=settings.learning_rate),
        average=make_average(student.policy, settings.ema),
        rng=rng,
        resuming=resuming,
        restarting=restarting,
        rl=rl,
        view=view,
    )
    check_loss_fits(run)
    if settings.hint_weight or settings.relation_weight:
        _add_knowledge(run)
    if rl is not None:
        _check_rl_fits(run)
    return run


def _add_knowledge(run: Run) -> None:
    """Hints and relations; the hints' projection trains with the student (a second parameter group)."""
    probe = array_obs(run.envs.reset()) if run.teacher is not None else None
    run.knowledge = knowledge = make_knowledge(
        run.settings, run.teacher, run.student, probe, run.prep(probe) if probe is not None else None
    )
    if knowledge is not None and knowledge.projection is not None:
        run.optimizer.add_param_group({"params": list(knowledge.projection.parameters())})


def _rl_parts(settings: DistillSettings, algo: str, teacher: Teacher | None) -> RLParts:
    """RL's hyperparameters (rl-zoo's for the student's algorithm and env) and its segments' ends."""
    if teacher is None:  # DistillSettings refuses it first
        raise PolicykdError(f"{spelled('rl_steps')} needs a live teacher")
    config = rl_config(algo, settings.env_id, teacher.action_space)
    every = settings.rl_eval_every or -(-settings.rl_steps // 10)
    ends = tuple(segment_ends(settings.rl_steps, every, config.rollout(algo)))
    scale = settings.rl_lr_scale or (FINE_TUNING_LR_SCALE if settings.rl_start == "distilled" else 1.0)
    return RLParts(
        config,
        ends,
        student_config=config.with_learning_rate_scaled(algo, scale),
        warmup_end=_warmup_end(settings, ends, config.rollout(algo)),
    )


FINE_TUNING_LR_SCALE = 1 / 3
"""RL continuing a distilled student runs at a third of rl-zoo's learning rate: on CartPole from a weak teacher
(10 seeds, docs/rl.md) the continued student reached 450-500 within 12k steps at rl-zoo's rate and then fell back
(final mean 290), where a third of it kept it there (`python benchmarks/rl_start.py`)."""


def _warmup_end(settings: DistillSettings, ends: tuple[int, ...], rollout: int) -> int:
    """The RL env step up to which only the critic learns: the first segment's end by default, else the asked steps
    rounded up to a whole rollout; 0 (none) when RL starts from scratch."""
    if settings.rl_start == "scratch" or settings.rl_critic_warmup == 0:
        return 0
    if settings.rl_critic_warmup is None:
        return ends[0] if len(ends) > 1 else 0
    return -(-settings.rl_critic_warmup // rollout) * rollout


def _check_rl_fits(run: Run) -> None:
    """Build the RL model from the fresh student once, so hyperparameters that do not fit fail before any work."""
    assert run.rl is not None  # called for runs with --rl-steps
    config = run.rl.config
    venv = make_env(run.factory, config.n_envs, run.settings.seed, None)
    try:
        load_rl_model(run.student_algo, run.student, venv, config)
    finally:
        venv.close()


def _device(
    settings: DistillSettings, teacher: Teacher | None, source: DatasetSource | None, view: View | None
) -> th.device:
    """`--device`; auto: a GPU where the teacher or the student reads images (`policykd.devices`)."""
    seen: list[gym.Space] = [known.observation_space for known in (teacher, source) if known is not None]
    seen += [view.space] if view is not None else []
    return resolve_device(settings.device, images=any(uses_images(space) for space in seen))


def make_student(
    settings: DistillSettings,
    teacher: Teacher | None,
    source: DatasetSource | None,
    view: View | None = None,
    device: th.device | str = "cpu",
) -> tuple[BaseAlgorithm, str, Sizing]:
    """A fresh SB3 student of the teacher's family, sized by `_size` unless `student_arch` says;
    built for its view's observation space when it has one."""
    known: Teacher | DatasetSource
    if teacher is not None:
        known, teacher_algo, teacher_params = teacher, teacher.algo, teacher.acting_params
    elif source is not None:
        known, teacher_algo, teacher_params = source, source.teacher_algo, source.teacher_params
    else:
        raise PolicykdError("a run needs a teacher or a dataset")
    algo = settings.student_algo or default_student_algo(teacher_algo, known.action_space)
    # Built on a single env so the saved student has n_envs=1: `model.set_env(gym.make(...))` works.
    spaces_env = with_view(known.factory, view).make(1, settings.seed)
    try:
        size = _size(settings, algo, spaces_env, teacher_params)
        student = build_student(algo, spaces_env, size.arch, seed=settings.seed, device=device)
        if settings.init_student:
            _load_weights(student, settings)
        # conv weights in NHWC: a CNN student's training step on CPU took 32 instead of 51 ms (batch 256)
        if uses_images(spaces_env.observation_space):
            student.policy.to(memory_format=th.channels_last)  # type: ignore[call-overload]  # torch's stub lacks it
        return student, algo, size
    finally:
        spaces_env.close()


def _size(settings: DistillSettings, algo: str, spaces_env: VecEnv, teacher_params: int) -> Sizing:
    """--student-arch, else the default for the teacher's size (`policykd.students.build.default_size`)."""
    if settings.student_arch:
        return Sizing(tuple(settings.student_arch), f"given ({spelled('student_arch')})")
    if not teacher_params:
        images = uses_images(spaces_env.observation_space)
        return Sizing(FALLBACK_ARCH[images], "a dataset of actions only: no teacher size to scale from")
    return default_size(
        algo, spaces_env, teacher_params, settings.student_fraction, min_width=settings.student_min_width
    )


def _load_weights(student: BaseAlgorithm, settings: DistillSettings) -> None:
    """--init-student: its policy's weights into the fresh student, which must have the same algorithm and arch."""
    from policykd.teachers import load_teacher

    assert settings.init_student  # called only with --init-student
    init = load_teacher(
        settings.init_student, env_id=settings.env_id, trust=settings.trust_teacher, options=EnvOptions.of(settings)
    )
    if type(init.model) is not type(student):
        raise PolicykdError(
            f"{option('init_student', settings.init_student)} is {init.algo.upper()}, the student is "
            f"{type(student).__name__}: pass {option('student_algo', init.algo)}"
        )
    try:
        student.policy.load_state_dict(init.model.policy.state_dict())
    except RuntimeError:
        raise PolicykdError(
            f"{option('init_student', settings.init_student)} has other layer sizes than the student "
            f"({init.model.policy_kwargs.get('net_arch')}): pass its arch as {spelled('student_arch')}"
        ) from None
