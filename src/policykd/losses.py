"""Distillation losses: small functions of (student dist, teacher dist) -> batch-mean scalar.

Every loss is averaged over the batch (never summed over it) and summed over the action
dimensions where a distribution has several, so values do not scale with batch size.
Conventions (Hinton et al. 2015; Rusu et al. 2016, "Policy Distillation"):

- categorical KL at temperature T compares softmax(logits / T) and is scaled by T**2,
  so gradient magnitudes stay comparable across temperatures; for Q-value teachers
  softmax(Q / T) is the soft target;
- Gaussian KL at temperature T multiplies both variances by T (log-densities divided
  by T); squashed Gaussians (SAC/TQC) are compared before the tanh.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch as th
import torch.nn.functional as F
from gymnasium import spaces

from policykd.distributions import CATEGORICAL, DETERMINISTIC, GAUSSIAN, ActionDist
from policykd.errors import PolicykdError

LossFn = Callable[..., th.Tensor]
"""(student, teacher, temperature, weights=None) -> scalar: the batch mean, or with per-state `weights` (mean 1,
`--weighting`) the weighted mean."""


def _mean(per_state: th.Tensor, weights: th.Tensor | None) -> th.Tensor:
    return per_state.mean() if weights is None else (weights * per_state).mean()


def kl_categorical(
    p_logits: th.Tensor, q_logits: th.Tensor, temperature: float = 1.0, weights: th.Tensor | None = None
) -> th.Tensor:
    """T**2 * KL(softmax(p/T) || softmax(q/T)), batch mean."""
    return temperature**2 * _mean(_categorical_kl_per_state(p_logits, q_logits, temperature), weights)


def _categorical_kl_per_state(p_logits: th.Tensor, q_logits: th.Tensor, temperature: float) -> th.Tensor:
    log_p = F.log_softmax(p_logits / temperature, dim=-1)
    log_q = F.log_softmax(q_logits / temperature, dim=-1)
    return (log_p.exp() * (log_p - log_q)).sum(dim=-1)


def kl_gaussian(
    p_mean: th.Tensor,
    p_log_std: th.Tensor,
    q_mean: th.Tensor,
    q_log_std: th.Tensor,
    temperature: float = 1.0,
    weights: th.Tensor | None = None,
) -> th.Tensor:
    """KL(N_p || N_q) of diagonal Gaussians with both variances times T; summed over dims, batch mean."""
    return _mean(_gaussian_kl_per_state(p_mean, p_log_std, q_mean, q_log_std, temperature), weights)


def _gaussian_kl_per_state(
    p_mean: th.Tensor, p_log_std: th.Tensor, q_mean: th.Tensor, q_log_std: th.Tensor, temperature: float
) -> th.Tensor:
    var_p = temperature * th.exp(2 * p_log_std)
    var_q = temperature * th.exp(2 * q_log_std)
    return (q_log_std - p_log_std + (var_p + (p_mean - q_mean) ** 2) / (2 * var_q) - 0.5).sum(dim=-1)


def _check(student: ActionDist, teacher: ActionDist, loss: str, kinds: tuple[str, ...]) -> None:
    if teacher.kind not in kinds or student.kind not in kinds:
        raise PolicykdError(
            f"loss {loss!r} needs {' or '.join(kinds)} distributions; teacher is {teacher.kind}, student is {student.kind}"
        )


def _squash_check(student: ActionDist, teacher: ActionDist, loss: str) -> None:
    if student.squashed != teacher.squashed:
        raise PolicykdError(
            f"loss {loss!r}: teacher and student act in different action spaces (tanh-squashed or not); "
            "pick a student algorithm of the teacher's family"
        )


def kl(
    student: ActionDist, teacher: ActionDist, temperature: float = 1.0, weights: th.Tensor | None = None
) -> th.Tensor:
    """Forward KL(teacher || student): mode-covering, the classic distillation target."""
    _check(student, teacher, "kl", (CATEGORICAL, GAUSSIAN))
    if teacher.kind == CATEGORICAL:
        return kl_categorical(teacher.tensor("logits"), student.tensor("logits"), temperature, weights)
    _squash_check(student, teacher, "kl")
    return kl_gaussian(
        teacher.tensor("mean"),
        teacher.tensor("log_std"),
        student.tensor("mean"),
        student.tensor("log_std"),
        temperature,
        weights,
    )


def reverse_kl(
    student: ActionDist, teacher: ActionDist, temperature: float = 1.0, weights: th.Tensor | None = None
) -> th.Tensor:
    """Reverse KL(student || teacher): mode-seeking."""
    _check(student, teacher, "reverse_kl", (CATEGORICAL, GAUSSIAN))
    if teacher.kind == CATEGORICAL:
        return kl_categorical(student.tensor("logits"), teacher.tensor("logits"), temperature, weights)
    _squash_check(student, teacher, "reverse_kl")
    return kl_gaussian(
        student.tensor("mean"),
        student.tensor("log_std"),
        teacher.tensor("mean"),
        teacher.tensor("log_std"),
        temperature,
        weights,
    )


def gaussian_kl(
    student: ActionDist, teacher: ActionDist, temperature: float = 1.0, weights: th.Tensor | None = None
) -> th.Tensor:
    """KL(teacher || student) restricted to Gaussian policies (continuous control)."""
    _check(student, teacher, "gaussian_kl", (GAUSSIAN,))
    return kl(student, teacher, temperature, weights)


def hard_nll(
    student: ActionDist, teacher: ActionDist, temperature: float = 1.0, weights: th.Tensor | None = None
) -> th.Tensor:
    """Negative log-likelihood of the teacher's greedy action (cross-entropy for discrete actions)."""
    if teacher.kind == CATEGORICAL:
        _check(student, teacher, "ce", (CATEGORICAL,))
        return _mean(
            F.cross_entropy(student.tensor("logits"), teacher.tensor("logits").argmax(dim=-1), reduction="none"),
            weights,
        )
    _check(student, teacher, "ce", (GAUSSIAN,))
    _squash_check(student, teacher, "ce")
    target = teacher.tensor("mean")
    if teacher.kind == DETERMINISTIC and teacher.squashed:  # TD3 action -> pre-tanh
        target = th.atanh(target.clamp(-0.999, 0.999))
    normal = th.distributions.Normal(student.tensor("mean"), th.exp(student.tensor("log_std")))
    return _mean(-normal.log_prob(target).sum(dim=-1), weights)


def _mse(a: th.Tensor, b: th.Tensor, weights: th.Tensor | None) -> th.Tensor:
    return _mean(((a - b) ** 2).mean(dim=-1), weights)


def mse_logits(
    student: ActionDist, teacher: ActionDist, temperature: float = 1.0, weights: th.Tensor | None = None
) -> th.Tensor:
    """Mean squared error between raw logits (Ba & Caruana 2014)."""
    _check(student, teacher, "mse_logits", (CATEGORICAL,))
    return _mse(student.tensor("logits"), teacher.tensor("logits"), weights)


def mse_q(
    student: ActionDist, teacher: ActionDist, temperature: float = 1.0, weights: th.Tensor | None = None
) -> th.Tensor:
    """Mean squared error between Q-values: keeps the Q scale a DQN student needs to continue RL."""
    _check(student, teacher, "mse_q", (CATEGORICAL,))
    if not (student.q_values and teacher.q_values):
        raise PolicykdError("loss 'mse_q' needs a Q-value teacher (DQN, QR-DQN) and a DQN student")
    return _mse(student.tensor("logits"), teacher.tensor("logits"), weights)


def scaled_action(dist: ActionDist) -> th.Tensor:
    """The greedy continuous action in the policy's own space ([-1, 1] when squashed)."""
    if dist.kind == GAUSSIAN and dist.squashed:
        return th.tanh(dist.tensor("mean"))
    return dist.tensor("mean")


def mse_action(
    student: ActionDist, teacher: ActionDist, temperature: float = 1.0, weights: th.Tensor | None = None
) -> th.Tensor:
    """Mean squared error between greedy actions: the loss for deterministic teachers (TD3/DDPG/ARS), and between a
    tanh-squashed teacher and an unsquashed student (each in its policy's own space: the run allows that only where
    the env's bounds are [-1, 1], `policykd.run.loss_choice`)."""
    _check(student, teacher, "mse_action", (GAUSSIAN, DETERMINISTIC))
    return _mse(scaled_action(student), scaled_action(teacher), weights)


def loss_fn(name: str) -> LossFn:
    """The loss registered under `name` (`policykd.registry.LOSSES`: the built-in ones live in this module)."""
    from policykd.registry import LOSSES

    return LOSSES.load(name)


def entropy(dist: ActionDist) -> th.Tensor:
    """Batch-mean entropy (pre-tanh for squashed Gaussians; zero for deterministic policies)."""
    if dist.kind == CATEGORICAL:
        log_p = F.log_softmax(dist.tensor("logits"), dim=-1)
        return -(log_p.exp() * log_p).sum(dim=-1).mean()
    if dist.kind == GAUSSIAN:
        return (dist.tensor("log_std") + 0.5 * math.log(2 * math.pi * math.e)).sum(dim=-1).mean()
    return th.zeros(())


class LossTerms(NamedTuple):
    """What one minibatch contributes: the total to minimise and its parts for logging."""

    total: th.Tensor
    policy: th.Tensor
    value: th.Tensor
    entropy: th.Tensor


def distillation_loss(
    student: ActionDist,
    teacher: ActionDist,
    *,
    loss: str,
    temperature: float,
    alpha: float,
    ent_coef: float,
    student_value: th.Tensor | None = None,
    teacher_value: th.Tensor | None = None,
    vf_coef: float = 0.5,
    weights: th.Tensor | None = None,
) -> LossTerms:
    """(1 - alpha) * soft loss + alpha * hard NLL - ent_coef * entropy + vf_coef * normalised value MSE;
    `weights` (per state, mean 1) weight the policy terms."""
    soft = loss_fn(loss)(student, teacher, temperature, weights)
    policy = soft if alpha == 0 else (1 - alpha) * soft + alpha * hard_nll(student, teacher, weights=weights)
    ent = entropy(student)
    value = th.zeros(())
    if student_value is not None and teacher_value is not None:
        known = ~th.isnan(teacher_value)
        if known.any():
            # Normalised by the batch variance of the teacher's values, so the value term
            # does not drown the policy term when returns are large (CartPole: ~100).
            target = teacher_value[known]
            value = F.mse_loss(student_value[known], target, reduction="mean") / (target.var(unbiased=False) + 1.0)
    return LossTerms(policy - ent_coef * ent + vf_coef * value, policy, value, ent)


def action_agreement(student: ActionDist, teacher: ActionDist, action_space: spaces.Space | None = None) -> float:
    """Fraction of states where the greedy actions are the same action, as `same_actions` defines it
    (continuous: every dim within 5 % of the action space's range, which continuous actions need;
    discrete ones may leave it out)."""
    from policykd.distributions import env_action, same_actions

    return float(
        same_actions(env_action(student, action_space), env_action(teacher, action_space), action_space).mean()
    )


def state_weights(kind: str, student: ActionDist, teacher: ActionDist, temperature: float = 1.0) -> th.Tensor | None:
    """Per-state weights of the policy loss, mean 1 over the minibatch, no gradient (`--weighting`).

    kl: proportional to each state's KL(teacher || student) (squared action error for deterministic teachers): the
    states where the student is furthest from its teacher weigh most. teacher-confidence: proportional to the
    teacher's probability of its greedy action (Gaussians: exp(-mean log-std)), so the states where the teacher is
    sure (the decisive ones: Pong's paddle next to the ball) weigh more than those where any action will do.
    """
    if kind == "uniform":
        return None
    with th.no_grad():
        if kind == "kl":
            if teacher.kind == DETERMINISTIC or student.kind == DETERMINISTIC:
                raw = ((scaled_action(student) - scaled_action(teacher)) ** 2).sum(dim=-1)
            elif teacher.kind == CATEGORICAL:
                raw = _categorical_kl_per_state(teacher.tensor("logits"), student.tensor("logits"), temperature)
            else:
                raw = _gaussian_kl_per_state(
                    teacher.tensor("mean"),
                    teacher.tensor("log_std"),
                    student.tensor("mean"),
                    student.tensor("log_std"),
                    temperature,
                )
        elif teacher.kind == CATEGORICAL:
            raw = F.softmax(teacher.tensor("logits") / temperature, dim=-1).max(dim=-1).values
        elif teacher.kind == GAUSSIAN:
            raw = th.exp(-teacher.tensor("log_std").mean(dim=-1))
        else:
            return None
        return raw / raw.mean().clamp_min(1e-12)
