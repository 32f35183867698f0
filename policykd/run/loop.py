"""The distillation loop: (load a dataset) -> collect -> train -> evaluate -> log, round after round."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from rich.console import Console
from stable_baselines3.common.base_class import BaseAlgorithm

from policykd.students.averaging import averaged_weights, make_average
from policykd.data.buffer import DistillationBuffer
from policykd.run.checkpoint import load_checkpoint, remove_checkpoints, resumable, save_checkpoint, unstarted
from policykd.run.collect import Collector, beta_schedule
from policykd.config import DistillConfig
from policykd.distributions import DETERMINISTIC, check_finite, policy_dist
from policykd.envs import check_env_id
from policykd.errors import PolicykdError
from policykd.run.evaluate import Returns, run_episodes, student_actor, student_eval, teacher_actor
from policykd.run.losses import LOSSES
from policykd.models import uses_images
from policykd.students.folding import ObsStats, fit_obs_stats, folded, supports_folding
from policykd.report.output import atomic_write_text, check_out, disk_full_is_one_line, prepare_out, write_student, write_summary
from policykd.report.console import build_summary, progress_bar, summary_table, tensorboard_logger
from policykd.students.build import auto_arch, build_student, default_student_algo
from policykd.teachers import Teacher, load_teachers
from policykd.data.source import DatasetTeacher, fill_buffer, label_steps, load_dataset_teacher, needs_relabelling
from policykd.run.train import train_round

EVAL_SEED_OFFSET = 10_000  # evaluation episodes never reuse the collection seeds
FALLBACK_ARCH = {False: (64, 64), True: (16, 32, 32, 32)}  # action-only datasets: no teacher size to scale from
SOFT_LOSSES = ("kl", "reverse_kl", "gaussian_kl", "mse_logits", "mse_q")


def resolve_teacher_specs(env_id: str, specs: tuple[str, ...] | list[str]) -> list[str]:
    """The given specs, or the repository's shipped teacher for the env."""
    from policykd.teachers.shipped import default_agent

    if specs:
        return list(specs)
    card = default_agent(env_id)
    if card is None:
        raise PolicykdError(f"no teacher given and none shipped for {env_id}: pass --teacher (or --dataset)")
    return [str(card.folder)]


def resolve_teachers(config: DistillConfig) -> Teacher | None:
    """The live teacher(s); None for a dataset-only (offline) run."""
    check_env_id(config.env_id)
    if config.dataset and not config.teachers:
        return None
    specs = resolve_teacher_specs(config.env_id, config.teachers)
    return load_teachers(specs, env_id=config.env_id, weights=config.teacher_weights, zoo_folder=config.zoo_folder,
                         trust=config.trust_teacher)


class Distiller:
    """Trains a small SB3 student to match a teacher (live, recorded, or both) and writes it to `config.out`."""

    def __init__(self, config: DistillConfig, teacher: Teacher | None = None, *, console: Console | None = None, quiet: bool = False):
        if config.loss not in LOSSES:
            raise PolicykdError(f"unknown loss {config.loss!r}: choose from {', '.join(LOSSES)}")
        beta_schedule(config.driver, 0, config.rounds, schedule=config.beta_schedule)  # validates
        self.config = config
        self.out = Path(config.out)
        self.resuming = resumable(self.out, config)
        self.restarting = not self.resuming and unstarted(self.out, config)
        if not (self.resuming or self.restarting):
            check_out(self.out, config.overwrite)
        self.live = teacher or resolve_teachers(config)
        self.recorded: DatasetTeacher | None = load_dataset_teacher(config.dataset, config.env_id) if config.dataset else None
        self.teacher: Teacher = self.live or self.recorded  # gives the env, the algorithm family and the size
        self.console = console or Console()
        self.quiet = quiet
        th.manual_seed(config.seed)
        self.rng = np.random.default_rng(config.seed)
        self.venv = self.live.factory.make(config.n_envs, config.seed) if self.live else None
        action_space = self.teacher.action_space
        self.student_algo = config.student_algo or default_student_algo(self.teacher.algo, action_space)
        # Built on a single env so the saved student has n_envs=1: `model.set_env(gym.make(...))` works.
        spaces_env = self.teacher.factory.make(1, config.seed)
        images = uses_images(spaces_env.observation_space)
        budget = int(config.student_fraction * self.teacher.acting_params)
        arch = config.student_arch or (auto_arch(self.student_algo, spaces_env, budget) if budget else FALLBACK_ARCH[images])
        self.student: BaseAlgorithm = build_student(self.student_algo, spaces_env, arch, seed=config.seed)
        spaces_env.close()
        self.student_arch = tuple(arch)
        th.set_num_threads(config.torch_threads or ((os.cpu_count() or 1) if images else 1))
        self.normalizer = self.teacher.normalizer
        self.obs_stats: ObsStats | None = None  # fitted after the first round (MLP students)
        online = config.steps if self.live else 0
        capacity = max(config.buffer_size, self.recorded.dataset.total_steps + online) if self.recorded else config.buffer_size
        self.buffer = DistillationBuffer(capacity)
        self.collector = Collector(self.venv, self.live, self.buffer, self.rng, sample=config.sample_actions) if self.live else None
        self.relabel_with: Teacher | None = None  # the live teacher, when the dataset's own labels cannot serve
        self._check_loss_fits()
        self.optimizer = th.optim.Adam(self.student.policy.parameters(), lr=config.learning_rate)
        self.average = make_average(self.student.policy, config.ema)  # None unless --ema

    @property
    def _actions_only(self) -> bool:
        """Offline from a dataset that holds actions, not distributions: behaviour cloning."""
        return self.live is None and not self.recorded.dataset.has_distributions

    @property
    def _squashed_student(self) -> bool:
        return self.student_algo in ("sac", "td3")

    def _choose_loss(self, teacher_kind: str) -> str:
        """The configured loss, except where the default KL cannot apply: a deterministic teacher
        (TD3/DDPG/ARS) is matched by MSE on the action, action-only data by the hard-label loss."""
        loss = self.config.loss
        if teacher_kind == DETERMINISTIC and not self._actions_only and loss == "kl":
            return "mse_action"
        if not self._actions_only or loss not in SOFT_LOSSES:
            return loss
        if loss != "kl":
            raise PolicykdError(f"dataset {self.config.dataset} holds only actions: loss {loss!r} needs the teacher's "
                                "distributions; use --loss nll (behaviour cloning) or record with a teacher")
        continuous = isinstance(self.teacher.action_space, spaces.Box)
        return "mse_action" if continuous and self.student_algo == "td3" else "nll"

    def _check_loss_fits(self) -> None:
        """Run the loss once on a few labelled observations, so a bad combination fails before any work."""
        if self.live is not None:
            obs = self.venv.reset()
            teacher_dist, teacher_value = self.live.label(obs)
            check_finite(teacher_dist, teacher_value, "the teacher's output on the first observations")
            if self.recorded is not None and needs_relabelling(self.recorded.dataset, self.live, teacher_dist):
                self.relabel_with = self.live
        else:
            obs, actions, labels, values = next(self.recorded.dataset.episodes())
            teacher_dist, _ = label_steps(self.recorded.dataset, obs, actions, labels, values, slice(0, 8),
                                          live=None, squashed=self._squashed_student)
            check_finite(teacher_dist, None, f"the distributions stored in dataset {self.config.dataset}")
            obs = obs[:8]
        self.loss = self._choose_loss(teacher_dist.kind)
        with th.no_grad():
            LOSSES[self.loss](self._student_dist(obs), teacher_dist, self.config.temperature)

    def _prep(self, obs: np.ndarray, *, folded: bool = False) -> np.ndarray:
        """What the student reads: the teacher's VecNormalize, then (until folded) its own standardisation."""
        if self.normalizer is not None:
            obs = self.normalizer.normalize_obs(obs)
        if self.obs_stats is not None and not folded:
            obs = self.obs_stats.apply(obs)
        return obs

    def _student_dist(self, obs: np.ndarray):
        return policy_dist(self.student.policy, self.student.policy.obs_to_tensor(self._prep(obs))[0])

    @property
    def _eval_seed(self) -> int:
        return self.config.seed + EVAL_SEED_OFFSET

    @property
    def _offline_rounds(self) -> int:
        """Rounds on the dataset alone: all of them offline, one before DAgger with a live teacher."""
        if self.recorded is None:
            return 0
        return self.config.rounds if self.live is None else 1

    @property
    def _total_rounds(self) -> int:
        return self._offline_rounds + (self.config.rounds if self.live else 0)

    def _plan(self) -> list[tuple[str, int, int]]:
        """The run as phases: ("load", -1, 0) for a dataset, its offline ("train", r, 0) rounds, then per
        online round ("collect", r, env steps) segments of at most `checkpoint_every` steps and ("train", r, 0)."""
        cfg = self.config
        plan: list[tuple[str, int, int]] = [("load", -1, 0)] if self.recorded else []
        plan += [("train", r, 0) for r in range(self._offline_rounds)]
        if self.live is None:
            return plan
        vector_steps = max(cfg.rounds, cfg.steps // cfg.n_envs)
        segment = max(1, (cfg.checkpoint_every or cfg.steps) // cfg.n_envs)
        for j in range(cfg.rounds):
            r = self._offline_rounds + j
            left = vector_steps // cfg.rounds + (j < vector_steps % cfg.rounds)
            while left > 0:
                plan.append(("collect", r, min(segment, left) * cfg.n_envs))
                left -= min(segment, left)
            plan.append(("train", r, 0))
        return plan

    def _beta(self, r: int) -> float:
        """DAgger's beta for global round r; a dataset counts as the teacher-driven round 0."""
        cfg, offset = self.config, int(self.recorded is not None)
        j = r - self._offline_rounds + offset
        return beta_schedule(cfg.driver, j, cfg.rounds + offset, schedule=cfg.beta_schedule, decay=cfg.beta_decay)

    def _checkpoint(self, phase: int) -> None:
        """Everything a resumed run needs; a buffer that holds only the dataset is rebuilt from it instead."""
        from_dataset = self.recorded is not None and self.progress["env_steps"] == 0
        meta = {**self.progress, "phase": phase, "rng": self.rng.bit_generator.state, "buffer_from_dataset": from_dataset}
        tensors = {"student": self.student.policy.state_dict(), "optimizer": self.optimizer.state_dict(),
                   "torch_rng": th.get_rng_state()}
        arrays = {} if from_dataset else {f"buffer.{k}": v for k, v in self.buffer.state().items()}
        if self.average is not None:
            tensors["average"] = self.average.state_dict()
        if self.obs_stats is not None:
            arrays.update({"obs_stats.mean": self.obs_stats.mean, "obs_stats.std": self.obs_stats.std})
        save_checkpoint(self.out, meta, tensors, arrays)

    def _restore(self) -> int:
        """Load the checkpoint in `out`; returns the phase to continue from."""
        meta, tensors, arrays = load_checkpoint(self.out)
        self.student.policy.load_state_dict(tensors["student"])
        self.optimizer.load_state_dict(tensors["optimizer"])
        th.set_rng_state(tensors["torch_rng"])
        if self.average is not None and "average" in tensors:
            self.average.load_state_dict(tensors["average"])
        self.rng.bit_generator.state = meta.pop("rng")
        if meta.pop("buffer_from_dataset", False):
            if meta["phase"] > 0:
                self._load_dataset()
        else:
            self.buffer.restore({k.removeprefix("buffer."): v for k, v in arrays.items() if k.startswith("buffer.")})
        if "obs_stats.mean" in arrays:
            self.obs_stats = ObsStats(arrays["obs_stats.mean"], arrays["obs_stats.std"])
        phase = meta.pop("phase")
        self.progress = {"gradient_steps": 0, "evals": [], **meta}  # checkpoints of earlier versions lack these
        return phase

    def _load_dataset(self) -> None:
        fill_buffer(self.buffer, self.recorded.dataset, live=self.relabel_with, squashed=self._squashed_student)

    def _teacher_returns(self) -> Returns:
        """The live teacher on the evaluation seeds; for an offline run, the dataset's own episodes."""
        if self.live is not None:
            return run_episodes(teacher_actor(self.live), self.live.factory, self.config.eval_episodes, self._eval_seed)
        return Returns(np.array(self.recorded.dataset.episode_returns()), np.zeros(0))

    def run(self) -> dict[str, Any]:
        cfg = self.config
        start = time.time()
        plan = self._plan()
        if self.resuming:
            first = self._restore()
        else:
            prepare_out(self.out, cfg.overwrite or self.restarting)
            atomic_write_text(self.out / "config.json", json.dumps(cfg.to_dict(), indent=2))
            teacher = self._teacher_returns()
            self.progress = {"env_steps": 0, "gradient_steps": 0, "wall": 0.0, "teacher_returns": teacher.returns.tolist(),
                             "student_returns": None, "agreement": float("nan"), "evals": []}
            first = 0
        logger = tensorboard_logger(self.out / "tb")
        teacher_returns = Returns(np.array(self.progress["teacher_returns"]), np.zeros(0))
        with disk_full_is_one_line(self.out, "a checkpoint or the student"):
            return self._run_phases(plan, first, teacher_returns, logger, start)

    def _run_phases(self, plan: list, first: int, teacher_returns: Returns, logger, start: float) -> dict[str, Any]:
        cfg, phase, offline_only = self.config, first, self.live is None
        try:
            with progress_bar(self.console, disable=self.quiet) as bar:
                done = len([p for p in plan[:first] if p[0] == "train"]) if offline_only else self.progress["env_steps"]
                task = bar.add_task("distill (offline rounds)" if offline_only else "distill",
                                    total=self._total_rounds if offline_only else cfg.steps, completed=done, sps=0.0,
                                    loss=float("nan"), kl=float("nan"), teacher=f"{teacher_returns.mean:.1f}", student="-")
                for phase in range(first, len(plan)):
                    kind, r, n_steps = plan[phase]
                    if kind == "load":
                        self._load_dataset()
                    elif kind == "collect":
                        self._collect_phase(phase, r, n_steps, bar, task, logger)
                    else:
                        self._train_phase(r, teacher_returns, bar, task, logger)
                        if offline_only:
                            bar.update(task, advance=1)
                    self.progress["wall"] += time.time() - start
                    start = time.time()
                    self._checkpoint(phase + 1)
        except KeyboardInterrupt:
            self._on_interrupt(phase, plan)
            raise
        finally:
            logger.close()
            if self.venv is not None:
                self.venv.close()
        summary = build_summary(self, teacher_returns, Returns(np.array(self.progress["student_returns"]), np.zeros(0)))
        summary["student_path"] = str(self.out / "student.zip")
        write_summary(self.out, summary)
        remove_checkpoints(self.out)
        if not self.quiet:
            self.console.print(summary_table(summary))
            self.console.print(f"student: {summary['student_path']}   TensorBoard: tensorboard --logdir {self.out / 'tb'}")
        return summary

    def _collect_phase(self, phase: int, r: int, n_steps: int, bar, task, logger) -> None:
        """One segment of collection; envs are reseeded per segment, so a resumed run sees the same states."""
        cfg = self.config
        beta = self._beta(r)
        self.venv.seed(cfg.seed + 7919 * (phase + 1))
        self.collector.obs = self.venv.reset()
        t0 = time.time()
        with averaged_weights(self.student.policy, self.average):
            act = student_actor(self.student, self._prep, deterministic=not cfg.sample_actions)
            stats = self.collector.run(n_steps, beta, act,
                                       on_step=lambda k: bar.update(task, advance=k), steps_before=self.progress["env_steps"])
        self.progress["env_steps"] += stats.steps
        bar.update(task, sps=stats.steps / max(time.time() - t0, 1e-9))
        logger.record("collect/beta", beta)
        logger.record("collect/teacher_action_fraction", stats.teacher_actions / max(stats.steps, 1))
        if stats.episode_returns:
            logger.record("collect/episode_return", float(np.mean(stats.episode_returns)))
        logger.record("collect/buffer_size", len(self.buffer))
        logger.record("time/env_steps", self.progress["env_steps"])
        logger.dump(self.progress["env_steps"])

    def _lr_span(self, r: int) -> tuple[float, float] | None:
        """Round r's first and last learning rates under a linear schedule (None: constant)."""
        if self.config.lr_schedule == "constant":
            return None
        lr, total = self.config.learning_rate, self._total_rounds
        return lr * (1 - r / total), lr * (1 - (r + 1) / total)

    def _train_phase(self, r: int, teacher_returns: Returns, bar, task, logger) -> None:
        """Train on the buffer, evaluate when due; the last round evaluates and saves the student as saved."""
        cfg = self.config
        if r == 0 and self.normalizer is None and supports_folding(self.student):
            self.obs_stats = fit_obs_stats(self.buffer.get(self.buffer.valid_indices()).obs)
        stats = train_round(self.student, self.optimizer, self.buffer, cfg, self.rng, self._prep, loss=self.loss,
                            env_step=self.progress["env_steps"], lr_span=self._lr_span(r), average=self.average)
        self.progress["gradient_steps"] += int(stats.parts["gradient_steps"])
        bar.update(task, loss=stats.loss, kl=stats.kl)
        last = r == self._total_rounds - 1
        if (r + 1) % cfg.eval_every == 0 or last:
            with averaged_weights(self.student.policy, self.average), folded(self.student, self.obs_stats if last else None):
                prep = lambda obs: self._prep(obs, folded=last)  # noqa: E731
                student_returns, agreement = student_eval(self.student, prep, self.teacher.factory, cfg.eval_episodes,
                                                          self._eval_seed, self.live)
                if last:
                    self._write_student()
            self.progress["student_returns"] = student_returns.returns.tolist()
            self.progress["agreement"] = agreement
            self.progress["evals"].append({"round": r, "env_steps": self.progress["env_steps"],
                                           "gradient_steps": self.progress["gradient_steps"],
                                           "student_return_mean": student_returns.mean})
            bar.update(task, student=f"{student_returns.mean:.1f}")
            logger.record("eval/teacher_return", teacher_returns.mean)
            logger.record("eval/student_return", student_returns.mean)
            logger.record("eval/student_return_std", student_returns.std)
            if not np.isnan(agreement):
                logger.record("eval/action_agreement", agreement)
        for key, value in stats.parts.items():
            if not (key == "kl" and np.isnan(value)):
                logger.record(f"train/{'action_agreement' if key == 'agreement' else key}", value)
        logger.record("train/learning_rate", self.optimizer.param_groups[0]["lr"])
        logger.record("time/round", r)
        logger.record("time/gradient_steps", self.progress["gradient_steps"])
        logger.dump(self._log_step())

    def _log_step(self) -> int:
        """TensorBoard's x-axis: env steps, or for offline rounds (no env steps yet) gradient steps."""
        return self.progress["env_steps"] if self.progress["env_steps"] else self.progress["gradient_steps"]

    def _write_student(self) -> None:
        write_student(self.out, self.student, algo=self.student_algo, env_id=self.config.env_id,
                      normalizer=self.normalizer, env_wrapper=self.teacher.factory.env_wrapper,
                      env_steps=self.progress["env_steps"])

    def _on_interrupt(self, phase: int, plan: list) -> None:
        """Ctrl-C: the student so far is written; the last checkpoint stays for resuming."""
        with averaged_weights(self.student.policy, self.average), folded(self.student, self.obs_stats):
            self._write_student()
        round_index = max(plan[min(phase, len(plan) - 1)][1], 0)
        self.console.print(
            f"interrupted in round {round_index + 1}/{self._total_rounds}: student so far at {self.out / 'student.zip'}, "
            f"checkpoint in {self.out}; run the same command again to resume"
        )


def distill(env_id: str, teachers: list[str] | tuple[str, ...] = (), *, quiet: bool = False, **settings: Any) -> dict[str, Any]:
    """Library entry point: `policykd.run.loop("CartPole-v1", ["path/to/teacher.zip"], out="runs/cp")`.

    Settings are DistillConfig fields (`dataset="cartpole/teacher-v0"` distils from a recording);
    the env's preset fills what is not given. Returns the summary also written to `<out>/summary.json`.
    """
    from policykd.presets import resolve_config

    config = resolve_config(env_id, teachers=tuple(str(t) for t in teachers) or None, **settings)
    return Distiller(config, quiet=quiet).run()
