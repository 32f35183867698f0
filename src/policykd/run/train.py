"""One round of distillation updates: shuffled minibatches over the buffer, the loss, Adam."""

from __future__ import annotations

import functools
import math
import operator
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.policies import BasePolicy
from torch.optim.swa_utils import AveragedModel

from policykd.data.buffer import DistillationBuffer
from policykd.distributions import DETERMINISTIC, ActionDist, obs_tensor, policy_outputs
from policykd.errors import PolicykdError
from policykd.losses import LossTerms, action_agreement, distillation_loss, kl, state_weights
from policykd.robust.augment import augment
from policykd.run.knowledge import Knowledge, latent_of_forward
from policykd.settings import DistillSettings

Prep = Callable[[np.ndarray], np.ndarray]


@dataclass
class RoundStats:
    loss: float = float("nan")
    kl: float = float("nan")
    agreement: float = float("nan")
    parts: dict[str, float] = field(default_factory=dict)


def train_round(
    student: BaseAlgorithm,
    optimizer: th.optim.Optimizer,
    buffer: DistillationBuffer,
    config: DistillSettings,
    rng: np.random.Generator,
    prep: Prep,
    *,
    loss: str,
    env_step: int,
    lr_span: tuple[float, float] | None = None,
    average: AveragedModel | None = None,
    knowledge: Knowledge | None = None,
) -> RoundStats:
    """`config.epochs` passes over the buffer; `env_step` only names the step in a NaN error.

    `lr_span` (first, last): the learning rate moves linearly between them across this round's steps.
    `average`: an EMA of the student's weights, updated after every step.
    """
    cfg, valid = config, buffer.valid_indices()
    n = len(valid)
    steps = max(1, math.ceil(cfg.epochs * n / cfg.batch_size))
    order = np.concatenate([valid[rng.permutation(n)] for _ in range(math.ceil(steps * cfg.batch_size / n))])
    policy = student.policy
    policy.set_training_mode(True)
    sums = dict.fromkeys(("loss", "policy_loss", "value_loss", "entropy", "kl", "agreement"), 0.0)
    if knowledge is not None:
        sums.update(hint_loss=0.0, relation_loss=0.0)
    for i in range(steps):
        batch = buffer.get(order[i * cfg.batch_size : (i + 1) * cfg.batch_size])
        obs = _as_input(policy, prep(batch.obs))
        if cfg.augment:
            obs = augment(policy, obs, cfg.augment, batch.teacher, loss, cfg.temperature)
        with latent_of_forward(policy) if knowledge else nullcontext([]) as seen:
            dist, value = policy_outputs(policy, obs)
        terms = distillation_loss(
            dist,
            batch.teacher,
            loss=loss,
            temperature=cfg.temperature,
            alpha=cfg.alpha,
            ent_coef=cfg.ent_coef,
            student_value=value,
            teacher_value=batch.value,
            vf_coef=cfg.vf_coef,
            weights=state_weights(cfg.weighting, dist, batch.teacher, cfg.temperature),
        )
        total = terms.total + (_knowledge_terms(knowledge, seen[-1], batch.obs, sums) if knowledge else 0.0)
        if not th.isfinite(total):
            raise PolicykdError(
                f"loss became {total.item()} at gradient step {i} after env step {env_step}; "
                "stopping (the last checkpoint is kept)"
            )
        if lr_span is not None:
            for group in optimizer.param_groups:
                group["lr"] = lr_span[0] + (lr_span[1] - lr_span[0]) * i / steps
        optimizer.zero_grad()
        total.backward()
        clip_gradients(policy, 10.0)
        optimizer.step()
        if average is not None:
            average.update_parameters(policy)
        _accumulate(sums, total, terms, dist, batch.teacher, student.action_space)
    policy.set_training_mode(False)
    means = {k: v / steps for k, v in sums.items()}
    means["gradient_steps"] = steps
    return RoundStats(means["loss"], means["kl"], means["agreement"], means)


def _knowledge_terms(
    knowledge: Knowledge, student_latent: th.Tensor, raw: np.ndarray, sums: dict[str, float]
) -> th.Tensor:
    """Weighted hint and relation losses of the minibatch (their raw values are logged)."""
    hint, relation = knowledge.loss(student_latent, raw)
    sums["hint_loss"] += hint.item()
    sums["relation_loss"] += relation.item()
    return knowledge.hint_weight * hint + knowledge.relation_weight * relation


@th.no_grad()
def _accumulate(
    sums: dict[str, float],
    total: th.Tensor,
    terms: LossTerms,
    dist: ActionDist,
    teacher: ActionDist,
    action_space: spaces.Space,
) -> None:
    sums["loss"] += total.item()
    sums["policy_loss"] += terms.policy.item()
    sums["value_loss"] += terms.value.item()
    sums["entropy"] += terms.entropy.item()
    sums["agreement"] += action_agreement(dist, teacher, action_space)
    soft = teacher.kind != DETERMINISTIC and dist.kind == teacher.kind
    sums["kl"] += kl(dist, teacher).item() if soft else float("nan")


def _as_input(policy: BasePolicy, obs: np.ndarray) -> th.Tensor:
    """The minibatch as the student reads it; images NHWC like its conv weights (run/build.py), made float in one
    pass (SB3 then only divides by 255)."""
    tensor = obs_tensor(policy, obs)
    return tensor.to(dtype=th.float32, memory_format=th.channels_last) if tensor.dim() == 4 else tensor


def clip_gradients(policy: th.nn.Module, max_norm: float) -> None:
    """`clip_grad_norm_`, except that a norm float32 cannot hold is taken in float64. A warm-started student far
    from its teacher (a pruned SAC actor whose log-std sits at SB3's floor of -20) has a KL near 1e19: the
    squared gradients overflow, torch's clip factor becomes 0, and the student would never move again."""
    params = [p for p in policy.parameters() if p.grad is not None]
    grads = [p.grad for p in policy.parameters() if p.grad is not None]
    norm = th.nn.utils.get_total_norm(grads)
    if not th.isfinite(norm):
        norm = th.sqrt(functools.reduce(operator.add, [g.double().pow(2).sum() for g in grads]))
    th.nn.utils.clip_grads_with_norm_(params, max_norm, norm)
