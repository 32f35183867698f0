"""The distillation loop: collect -> train -> evaluate -> log, round after round."""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch as th
from rich.console import Console
from stable_baselines3.common.base_class import BaseAlgorithm

from policykd.buffers import DistillationBuffer
from policykd.collect import Collector, beta_schedule
from policykd.config import DistillConfig
from policykd.distributions import check_finite, env_action, policy_dist, policy_value
from policykd.envs import check_env_id
from policykd.errors import PolicykdError
from policykd.evaluation import Returns, run_episodes, student_actor, teacher_actor
from policykd.losses import LOSSES, action_agreement, distillation_loss, kl
from policykd.models import acting_params, uses_images
from policykd.normalization import ObsStats, fit_obs_stats, folded, supports_folding
from policykd.checkpoint import load_checkpoint, read_pointer, remove_checkpoints, save_checkpoint
from policykd.output import atomic_write_text, check_out, prepare_out, write_student, write_summary
from policykd.reporting import progress_bar, summary_table, tensorboard_logger
from policykd.students import auto_arch, build_student, default_student_algo
from policykd.teachers import Teacher, load_teachers

EVAL_SEED_OFFSET = 10_000  # evaluation episodes never reuse the collection seeds


def resolve_teachers(config: DistillConfig) -> Teacher:
    """Load the configured teachers, or the repository's shipped teacher for the env."""
    from policykd.agents import default_agent

    check_env_id(config.env_id)
    specs = list(config.teachers)
    if not specs:
        card = default_agent(config.env_id)
        if card is None:
            raise PolicykdError(f"no teacher given and none shipped for {config.env_id}: pass --teacher")
        specs = [str(card.folder)]
    return load_teachers(specs, env_id=config.env_id, weights=config.teacher_weights, zoo_folder=config.zoo_folder,
                         trust=config.trust_teacher)


def resumable(out: Path, config: DistillConfig) -> bool:
    """True when `out` holds an unfinished run of the same settings (resume it); a
    different run there is refused rather than mixed."""
    if config.overwrite or read_pointer(out) is None or (out / "summary.json").exists():
        return False
    try:
        saved = json.loads((out / "config.json").read_text())
    except (OSError, json.JSONDecodeError):
        raise PolicykdError(f"{out} holds a checkpoint without a readable config.json; pass --overwrite to start again") from None
    current = json.loads(json.dumps(config.to_dict()))
    differ = sorted(k for k in set(saved) | set(current) if k != "overwrite" and saved.get(k) != current.get(k))
    if differ:
        raise PolicykdError(
            f"{out} holds an unfinished run with other settings ({', '.join(differ)}); "
            "re-run it unchanged to resume, or pass --overwrite / another --out"
        )
    return True


@dataclass
class RoundStats:
    loss: float = float("nan")
    kl: float = float("nan")
    agreement: float = float("nan")
    parts: dict[str, float] = field(default_factory=dict)


class Distiller:
    """Trains a small SB3 student to match `teacher` under `config` and writes it to `config.out`."""

    def __init__(self, config: DistillConfig, teacher: Teacher | None = None, *, console: Console | None = None, quiet: bool = False):
        if config.loss not in LOSSES:
            raise PolicykdError(f"unknown loss {config.loss!r}: choose from {', '.join(LOSSES)}")
        beta_schedule(config.driver, 0, config.rounds, schedule=config.beta_schedule)  # validates
        self.config = config
        self.out = Path(config.out)
        self.resuming = resumable(self.out, config)
        if not self.resuming:
            check_out(self.out, config.overwrite)
        self.teacher = teacher or resolve_teachers(config)
        self.console = console or Console()
        self.quiet = quiet
        th.manual_seed(config.seed)
        self.rng = np.random.default_rng(config.seed)
        self.venv = self.teacher.factory.make(config.n_envs, config.seed)
        self.student_algo = config.student_algo or default_student_algo(self.teacher.algo, self.venv.action_space)
        # Built on a single env so the saved student has n_envs=1: `model.set_env(gym.make(...))` works.
        spaces_env = self.teacher.factory.make(1, config.seed)
        arch = config.student_arch or auto_arch(
            self.student_algo, spaces_env, int(config.student_fraction * self.teacher.acting_params)
        )
        self.student: BaseAlgorithm = build_student(self.student_algo, spaces_env, arch, seed=config.seed)
        spaces_env.close()
        self.student_arch = tuple(arch)
        images = uses_images(self.venv.observation_space)
        th.set_num_threads(config.torch_threads or ((os.cpu_count() or 1) if images else 1))
        self.normalizer = self.teacher.normalizer
        self.obs_stats: ObsStats | None = None  # fitted after the first round (MLP students)
        self.buffer = DistillationBuffer(config.buffer_size)
        self.collector = Collector(self.venv, self.teacher, self.buffer, self.rng)
        self._check_loss_fits()
        self.optimizer = th.optim.Adam(self.student.policy.parameters(), lr=config.learning_rate)

    def _check_loss_fits(self) -> None:
        """Run the loss once on a reset observation, so a bad combination fails before any work."""
        obs = self.venv.reset()
        teacher_dist, teacher_value = self.teacher.label(obs)
        check_finite(teacher_dist, teacher_value, "the teacher's output on the first observations")
        with th.no_grad():
            LOSSES[self.config.loss](self._student_dist(obs), teacher_dist, self.config.temperature)

    def _prep(self, obs: np.ndarray, *, folded: bool = False) -> np.ndarray:
        """What the student reads: the teacher's VecNormalize, then (until folded) its own standardisation."""
        if self.normalizer is not None:
            obs = self.normalizer.normalize_obs(obs)
        if self.obs_stats is not None and not folded:
            obs = self.obs_stats.apply(obs)
        return obs

    def _obs_tensor(self, obs: np.ndarray) -> th.Tensor:
        return self.student.policy.obs_to_tensor(self._prep(obs))[0]

    def _student_dist(self, obs: np.ndarray):
        return policy_dist(self.student.policy, self._obs_tensor(obs))

    def train_round(self) -> RoundStats:
        """`epochs` passes over the buffer in shuffled minibatches."""
        cfg, valid = self.config, self.buffer.valid_indices()
        n = len(valid)
        steps = max(1, math.ceil(cfg.epochs * n / cfg.batch_size))
        order = np.concatenate([valid[self.rng.permutation(n)] for _ in range(math.ceil(steps * cfg.batch_size / n))])
        self.student.policy.set_training_mode(True)
        sums: dict[str, float] = {"loss": 0.0, "policy_loss": 0.0, "value_loss": 0.0, "entropy": 0.0, "kl": 0.0, "agreement": 0.0}
        for i in range(steps):
            batch = self.buffer.get(order[i * cfg.batch_size : (i + 1) * cfg.batch_size])
            obs = self._obs_tensor(batch.obs)
            student = policy_dist(self.student.policy, obs)
            terms = distillation_loss(
                student,
                batch.teacher,
                loss=cfg.loss,
                temperature=cfg.temperature,
                alpha=cfg.alpha,
                ent_coef=cfg.ent_coef,
                student_value=policy_value(self.student.policy, obs),
                teacher_value=batch.value,
                vf_coef=cfg.vf_coef,
            )
            if not th.isfinite(terms.total):
                raise PolicykdError(
                    f"loss became {terms.total.item()} at gradient step {i} after env step {self.progress['env_steps']}; "
                    "stopping (the last checkpoint is kept)"
                )
            self.optimizer.zero_grad()
            terms.total.backward()
            th.nn.utils.clip_grad_norm_(self.student.policy.parameters(), 10.0)
            self.optimizer.step()
            with th.no_grad():
                sums["loss"] += terms.total.item()
                sums["policy_loss"] += terms.policy.item()
                sums["value_loss"] += terms.value.item()
                sums["entropy"] += terms.entropy.item()
                sums["agreement"] += action_agreement(student, batch.teacher)
                sums["kl"] += kl(student, batch.teacher).item() if batch.teacher.kind != "deterministic" else float("nan")
        self.student.policy.set_training_mode(False)
        means = {k: v / steps for k, v in sums.items()}
        means["gradient_steps"] = steps
        return RoundStats(means["loss"], means["kl"], means["agreement"], means)

    def evaluate_student(self, *, stats_folded: bool = False) -> tuple[Returns, float]:
        """Student returns on the evaluation seeds, and its agreement with the teacher on the states it visits."""
        act = student_actor(self.student, lambda obs: self._prep(obs, folded=stats_folded))
        agree = [0, 0]

        def act_and_compare(obs: np.ndarray) -> np.ndarray:
            actions = act(obs)
            teacher_actions = env_action(self.teacher.label(obs)[0], self.teacher.action_space)
            if actions.ndim > 1:
                span = self.teacher.action_space.high - self.teacher.action_space.low
                same = (np.abs(actions - teacher_actions) / span).max(axis=-1) <= 0.05
            else:
                same = actions == teacher_actions
            agree[0] += int(same.sum())
            agree[1] += len(same)
            return actions

        returns = run_episodes(act_and_compare, self.teacher.factory, self.config.eval_episodes, self._eval_seed)
        return returns, agree[0] / max(agree[1], 1)

    @property
    def _eval_seed(self) -> int:
        return self.config.seed + EVAL_SEED_OFFSET

    def _plan(self) -> list[tuple[str, int, int]]:
        """The run as phases: ("collect", round, env steps) segments of at most `checkpoint_every`
        steps, then ("train", round, 0). Whole vector steps, never more than the budget."""
        cfg = self.config
        vector_steps = max(cfg.rounds, cfg.steps // cfg.n_envs)
        segment = max(1, (cfg.checkpoint_every or cfg.steps) // cfg.n_envs)
        plan: list[tuple[str, int, int]] = []
        for r in range(cfg.rounds):
            left = vector_steps // cfg.rounds + (r < vector_steps % cfg.rounds)
            while left > 0:
                plan.append(("collect", r, min(segment, left) * cfg.n_envs))
                left -= min(segment, left)
            plan.append(("train", r, 0))
        return plan

    def _checkpoint(self, phase: int) -> None:
        meta = {**self.progress, "phase": phase, "rng": self.rng.bit_generator.state}
        tensors = {"student": self.student.policy.state_dict(), "optimizer": self.optimizer.state_dict(),
                   "torch_rng": th.get_rng_state()}
        arrays = {f"buffer.{k}": v for k, v in self.buffer.state().items()}
        if self.obs_stats is not None:
            arrays.update({"obs_stats.mean": self.obs_stats.mean, "obs_stats.std": self.obs_stats.std})
        save_checkpoint(self.out, meta, tensors, arrays)

    def _restore(self) -> int:
        """Load the checkpoint in `out`; returns the phase to continue from."""
        meta, tensors, arrays = load_checkpoint(self.out)
        self.student.policy.load_state_dict(tensors["student"])
        self.optimizer.load_state_dict(tensors["optimizer"])
        th.set_rng_state(tensors["torch_rng"])
        self.rng.bit_generator.state = meta.pop("rng")
        self.buffer.restore({k.removeprefix("buffer."): v for k, v in arrays.items() if k.startswith("buffer.")})
        if "obs_stats.mean" in arrays:
            self.obs_stats = ObsStats(arrays["obs_stats.mean"], arrays["obs_stats.std"])
        phase = meta.pop("phase")
        self.progress = meta
        return phase

    def run(self) -> dict[str, Any]:
        cfg = self.config
        start = time.time()
        plan = self._plan()
        if self.resuming:
            first = self._restore()
        else:
            prepare_out(self.out, cfg.overwrite)
            atomic_write_text(self.out / "config.json", json.dumps(cfg.to_dict(), indent=2))
            teacher = run_episodes(teacher_actor(self.teacher), self.teacher.factory, cfg.eval_episodes, self._eval_seed)
            self.progress = {"env_steps": 0, "wall": 0.0, "teacher_returns": teacher.returns.tolist(),
                             "student_returns": None, "agreement": float("nan")}
            first = 0
        logger = tensorboard_logger(self.out / "tb")
        teacher_returns = Returns(np.array(self.progress["teacher_returns"]), np.zeros(0))
        phase = first
        try:
            with progress_bar(self.console, disable=self.quiet) as bar:
                task = bar.add_task("distill", total=cfg.steps, completed=self.progress["env_steps"], sps=0.0,
                                    loss=float("nan"), kl=float("nan"), teacher=f"{teacher_returns.mean:.1f}", student="-")
                for phase in range(first, len(plan)):
                    kind, r, n_steps = plan[phase]
                    if kind == "collect":
                        self._collect_phase(phase, r, n_steps, bar, task, logger)
                    else:
                        self._train_phase(r, teacher_returns, bar, task, logger)
                    self.progress["wall"] += time.time() - start
                    start = time.time()
                    self._checkpoint(phase + 1)
        except KeyboardInterrupt:
            self._on_interrupt(phase, plan)
            raise
        finally:
            logger.close()
            self.venv.close()
        student_returns = Returns(np.array(self.progress["student_returns"]), np.zeros(0))
        summary = self._summary(teacher_returns, student_returns, self.progress["agreement"],
                                self.progress["env_steps"], self.progress["wall"])
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
        beta = beta_schedule(cfg.driver, r, cfg.rounds, schedule=cfg.beta_schedule, decay=cfg.beta_decay)
        self.venv.seed(cfg.seed + 7919 * (phase + 1))
        self.collector.obs = self.venv.reset()
        t0 = time.time()
        stats = self.collector.run(n_steps, beta, student_actor(self.student, self._prep),
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

    def _train_phase(self, r: int, teacher_returns: Returns, bar, task, logger) -> None:
        """Train on the buffer, evaluate when due; the last round evaluates and saves the student as saved."""
        cfg = self.config
        if r == 0 and self.normalizer is None and supports_folding(self.student):
            self.obs_stats = fit_obs_stats(self.buffer.get(self.buffer.valid_indices()).obs)
        round_stats = self.train_round()
        bar.update(task, loss=round_stats.loss, kl=round_stats.kl)
        last = r == cfg.rounds - 1
        if (r + 1) % cfg.eval_every == 0 or last:
            with folded(self.student, self.obs_stats if last else None):
                student_returns, agreement = self.evaluate_student(stats_folded=last)
                if last:
                    self._write_student()
            self.progress["student_returns"] = student_returns.returns.tolist()
            self.progress["agreement"] = agreement
            bar.update(task, student=f"{student_returns.mean:.1f}")
            logger.record("eval/teacher_return", teacher_returns.mean)
            logger.record("eval/student_return", student_returns.mean)
            logger.record("eval/student_return_std", student_returns.std)
            logger.record("eval/action_agreement", agreement)
        for key, value in round_stats.parts.items():
            logger.record(f"train/{'action_agreement' if key == 'agreement' else key}", value)
        logger.record("time/round", r)
        logger.dump(self.progress["env_steps"])

    def _write_student(self) -> None:
        write_student(self.out, self.student, algo=self.student_algo, env_id=self.config.env_id,
                      normalizer=self.normalizer, env_wrapper=self.teacher.factory.env_wrapper,
                      env_steps=self.progress["env_steps"])

    def _on_interrupt(self, phase: int, plan: list) -> None:
        """Ctrl-C: the student so far is written; the last checkpoint stays for resuming."""
        with folded(self.student, self.obs_stats):
            self._write_student()
        round_index = plan[min(phase, len(plan) - 1)][1]
        self.console.print(
            f"interrupted in round {round_index + 1}/{self.config.rounds}: student so far at {self.out / 'student.zip'}, "
            f"checkpoint in {self.out}; run the same command again to resume"
        )

    def _summary(self, teacher: Returns, student: Returns, agreement: float, env_steps: int, wall: float) -> dict[str, Any]:
        teacher_params = int(self.teacher.acting_params)
        student_params = int(acting_params(self.student.policy))
        return {
            "env_id": self.config.env_id,
            "teachers": [m.name for m in getattr(self.teacher, "members", [self.teacher])],
            "teacher_algo": self.teacher.algo,
            "student_algo": self.student_algo,
            "student_arch": list(self.student_arch),
            "teacher_params": teacher_params,
            "student_params": student_params,
            "params_ratio": student_params / teacher_params,
            "env_steps": env_steps,
            "wall_seconds": round(wall, 2),
            "teacher_return_mean": teacher.mean,
            "teacher_return_std": teacher.std,
            "student_return_mean": student.mean,
            "student_return_std": student.std,
            "return_ratio": student.mean / teacher.mean if teacher.mean else float("nan"),
            "eval_episodes": self.config.eval_episodes,
            "eval_seed": self._eval_seed,
            "action_agreement": agreement,
            "buffer_transitions": len(self.buffer),
            "buffer_bytes_per_transition": self.buffer.nbytes() / self.buffer.capacity,
            "teacher_returns": teacher.returns.tolist(),
            "student_returns": student.returns.tolist(),
            "loss": self.config.loss,
            "driver": self.config.driver,
            "config": self.config.to_dict(),
        }


def distill(env_id: str, teachers: list[str] | tuple[str, ...] = (), *, quiet: bool = False, **settings: Any) -> dict[str, Any]:
    """Library entry point: `policykd.distill("CartPole-v1", ["path/to/teacher.zip"], out="runs/cp")`.

    Settings are DistillConfig fields; the env's preset fills what is not given.
    Returns the summary also written to `<out>/summary.json`.
    """
    from policykd.presets import resolve_config

    config = resolve_config(env_id, teachers=tuple(str(t) for t in teachers) or None, **settings)
    return Distiller(config, quiet=quiet).run()
