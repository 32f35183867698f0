"""The kick: lambda x the distillation loss toward the teacher, added to an SB3 algorithm's own RL update.

Kickstarting (Schmitt et al. 2018) and QDagger (Agarwal et al. 2022) train a student on its RL loss plus a
distillation term on the states of the same RL batch. SB3's `train()` methods are not ours to rewrite, so the
term enters through two torch hooks on the network that acts: a forward pre-hook on its features extractor records
the observations of the RL minibatch (the call made with gradients on: PPO's `evaluate_actions`, SAC's and TD3's
actor loss, DQN's Q-values), and an optimizer step pre-hook adds lambda x grad(distillation loss) on those states
to the gradients SB3 has just computed (after its own clipping), before its optimizer steps. Everything SB3 does
stays as it is; hooks are not saved, so a saved model is a plain SB3 model. PPO and A2C students take the one-pass
path of `rl.rollout_kick` instead (the teacher labels each rollout once, the student runs once); SAC, TD3 and DQN
draw new states at every gradient step, which the teacher labels as they come.

lambda follows `--kick-schedule`: constant; linear (to 0 over the RL steps); adaptive, after QDagger,
lambda = lambda_0 x clip((G_teacher - G_student) / max(|G_teacher|, 1), 0, 1) from the last RL evaluation. For a
positive teacher return that is QDagger's lambda_0 x max(1 - G_student / G_teacher, 0); dividing the gap by the
teacher's magnitude instead keeps it meaningful for negative returns (Pendulum: teacher -150, student -300 gives
lambda_0, -200 gives lambda_0 / 3, -150 or better gives 0), and the floor of 1 keeps a teacher return near 0 from
blowing the ratio up.
"""

from __future__ import annotations

import math

import numpy as np
import torch as th
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.preprocessing import is_image_space
from stable_baselines3.common.vec_env import VecNormalize
from torch.utils.hooks import RemovableHandle

from policykd.distributions import ActionDist, obs_tensor, policy_dist
from policykd.envs import array_obs
from policykd.losses import loss_fn
from policykd.rl.model import acting_parts
from policykd.rl.rollout_kick import OnePassKick, fits, rollout_observations
from policykd.teachers import Teacher


def kick_weight(schedule: str, weight: float, done: int, total: int, student: float, teacher: float) -> float:
    """lambda for RL env step `done` of `total`, with the last evaluated student and teacher returns."""
    if schedule == "constant":
        return weight
    if schedule == "linear":
        return weight * max(0.0, 1.0 - done / max(total, 1))
    if math.isnan(student):
        return weight
    return weight * min(1.0, max(0.0, (teacher - student) / max(abs(teacher), 1.0)))


def at_unit_temperature(dist: ActionDist, temperature: float) -> ActionDist:
    """A policy set to `temperature` (`rl.model.set_temperature`) as it was at 1: the kick pulls the shape of the
    student's distribution toward the teacher's, not its sharpness back."""
    if temperature == 1.0:
        return dist
    if dist.logits is not None:
        return dist._replace(logits=dist.logits * temperature)
    return dist._replace(log_std=dist.tensor("log_std") - math.log(temperature))


class Kick:
    """The distillation term of one RL model; `weight` is lambda_0 (0 switches it off)."""

    def __init__(
        self,
        teacher: Teacher,
        loss: str,
        temperature: float,
        normalizer: VecNormalize | None,
        *,
        schedule: str,
        weight: float,
        total: int,
        teacher_return: float,
        student_temperature: float = 1.0,
    ) -> None:
        self.teacher, self.loss, self.temperature, self.normalizer = teacher, loss, temperature, normalizer
        self.student_temperature = student_temperature
        """The temperature RL's policy was set to (`--rl-temperature`): undone before comparing with the teacher."""
        self.schedule, self.weight, self.total, self.teacher_return = schedule, weight, total, teacher_return
        self.last_return = float("nan")
        """The student's return at the last RL evaluation (adaptive lambda)."""
        self.silent_until = 0
        """RL env steps up to which lambda is 0: the critic's warm-up (`rl.model.warm_up_critic`)."""
        self.losses: list[float] = []
        self._obs: th.Tensor | None = None
        self._handles: list[RemovableHandle] = []
        self._model: BaseAlgorithm | None = None
        self._one_pass: OnePassKick | None = None
        self.teacher_calls = 0
        """How many times the kick asked the teacher for labels (once per rollout on the one-pass path)."""

    def attach(self, model: BaseAlgorithm) -> None:
        """Hook the model's acting network (again after a model is loaded: hooks are not saved)."""
        self.detach()
        extractor, optimizer = acting_parts(model)
        self._model = model
        if fits(model):
            assert isinstance(model, OnPolicyAlgorithm)  # what `fits` checks first
            self._one_pass = OnePassKick(model, self.weight_now, self._loss_on_rows)
            self._handles = [optimizer.register_step_pre_hook(self._log_one_pass)]
            return
        self._handles = [
            extractor.register_forward_pre_hook(self._record),
            optimizer.register_step_pre_hook(self._add_gradient),
        ]

    def weight_now(self) -> float:
        """lambda now: from the model's RL env steps (linear) or the last evaluation (adaptive); 0 while the critic
        warms up (`silent_until`), when the actor's gradients are dropped anyway, so the teacher is not asked."""
        done = int(self._model.num_timesteps) if self._model is not None else 0
        if self.silent_until and done <= self.silent_until:
            return 0.0
        return kick_weight(self.schedule, self.weight, done, self.total, self.last_return, self.teacher_return)

    def _attached(self) -> BaseAlgorithm:
        if self._model is None:
            raise RuntimeError("the kick acts only on a model it is attached to")
        return self._model

    def detach(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
        if self._one_pass is not None:
            self._one_pass.detach()
            self._one_pass = None

    def take_losses(self) -> float:
        """The mean distillation loss of the minibatches since the last call (NaN when none)."""
        mean = float(np.mean(self.losses)) if self.losses else float("nan")
        self.losses = []
        return mean

    def _label(self, obs: np.ndarray) -> ActionDist:
        """The teacher's distributions on observations as the student's policy reads them."""
        self.teacher_calls += 1
        teacher_obs = array_obs(self.normalizer.unnormalize_obs(obs)) if self.normalizer is not None else obs
        return self.teacher.label(teacher_obs)[0]

    def _loss_on_rows(self, student: ActionDist, rows: np.ndarray) -> th.Tensor:
        """The one-pass path's loss: the student's distribution on a PPO minibatch against the teacher's labels of
        those rows, labelled once per rollout."""
        assert self._one_pass is not None  # the one-pass path calls this
        buffer = self._one_pass.buffer
        if buffer.labels is None:
            buffer.labels = self._label(rollout_observations(buffer))
        student = at_unit_temperature(student, self.student_temperature)
        return loss_fn(self.loss)(student, buffer.labels.index(th.as_tensor(rows)), self.temperature)

    def _log_one_pass(self, optimizer: th.optim.Optimizer, args: tuple[object, ...], kwargs: dict[str, object]) -> None:
        """Before each of SB3's optimizer steps: lambda and the kick's loss beside SB3's own train/* logs."""
        assert self._one_pass is not None  # the hook exists only on the one-pass path
        logger = getattr(self._model, "_logger", None)
        if logger is not None:
            logger.record("train/kick_weight", self.weight_now())
        loss, self._one_pass.last_loss = self._one_pass.last_loss, None
        if loss is not None:
            self.losses.append(loss)
            if logger is not None:
                logger.record_mean("train/kick_loss", loss)

    def _record(self, module: th.nn.Module, inputs: tuple[th.Tensor, ...]) -> None:
        if th.is_grad_enabled():  # the RL loss's forward; targets and acting run without gradients
            self._obs = inputs[0].detach()

    def _policy_input(self, preprocessed: th.Tensor) -> np.ndarray:
        """The observations as the policy reads them before SB3's preprocessing (which the hook sees after: images
        / 255): the env's, behind the frozen VecNormalize where the run has one."""
        policy = self._attached().policy
        obs = preprocessed.cpu().numpy()
        if is_image_space(policy.observation_space) and getattr(policy, "normalize_images", True):
            return np.rint(obs * 255.0).astype(policy.observation_space.dtype)
        return obs.astype(policy.observation_space.dtype, copy=False)

    def _add_gradient(self, optimizer: th.optim.Optimizer, args: tuple[object, ...], kwargs: dict[str, object]) -> None:
        weight = self.weight_now()
        logger = getattr(self._model, "_logger", None)  # SB3's, dumped with its own train/* at each update
        if logger is not None:
            logger.record("train/kick_weight", weight)
        if weight <= 0 or self._obs is None:
            return
        obs, self._obs = self._policy_input(self._obs), None
        teacher_dist = self._label(obs)
        policy = self._attached().policy
        with th.enable_grad():
            student = at_unit_temperature(policy_dist(policy, obs_tensor(policy, obs)), self.student_temperature)
            loss = loss_fn(self.loss)(student, teacher_dist, self.temperature)
            (weight * loss).backward()
        self.losses.append(loss.item())
        if logger is not None:
            logger.record_mean("train/kick_loss", self.losses[-1])
