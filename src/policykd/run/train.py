"""One round of distillation updates: shuffled minibatches over the buffer, the loss, Adam.

A recurrent student's minibatch is sequences instead of states: `SEQUENCE_LENGTH` consecutive steps of one env, cut
at random places out of the buffer's streams, each run from a zero LSTM state and reset where an episode starts inside
it, the loss on every step and its gradient through the whole sequence (truncated BPTT, R2D2's "zero state"). The
student acts from a state carried through the whole episode, far beyond 32 steps; the state does not drift there
(CartPole, mask=1,3, 20,000 steps: greedy agreement with the teacher 0.67 over steps 2-16 of an episode, 0.66-0.68 over
each later stretch up to step 500).
"""

from __future__ import annotations

import functools
import math
import operator
from collections.abc import Callable, Iterable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field

import numpy as np
import torch as th
from gymnasium import spaces
from sb3_contrib.common.recurrent.policies import RecurrentActorCriticPolicy
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.policies import BasePolicy
from torch.optim.swa_utils import AveragedModel

from policykd.data.buffer import Batch, DistillationBuffer
from policykd.distributions import DETERMINISTIC, ActionDist, obs_tensor, policy_outputs, sequence_outputs
from policykd.errors import PolicykdError
from policykd.losses import LossTerms, action_agreement, distillation_loss, kl, state_weights
from policykd.robust.augment import augment
from policykd.run.knowledge import Knowledge, latent_of_forward
from policykd.settings import DistillSettings

Prep = Callable[[np.ndarray], np.ndarray]
SEQUENCE_LENGTH = 32
"""Steps per training sequence of a recurrent student (its truncated BPTT horizon). CartPole, mask=1,3, 8,000 steps,
seeds 0-2: 16 steps gave 500, 267, 179; 32 gave 498, 304, 500; 64, twice as slow, 130, 465, 466; a 4-step burn-in
(no loss on a sequence's first 4 steps) 500, 476, 304 at 16 and 500, 226, 212 at 32 - noisy, and no clear gain."""


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
    cfg, policy = config, student.policy
    recurrent = isinstance(policy, RecurrentActorCriticPolicy)
    draws = _sequence_draws(buffer, cfg, rng) if recurrent else shuffled_draws(buffer.valid_indices(), cfg, rng)
    steps = len(draws)
    policy.set_training_mode(True)
    sums = dict.fromkeys(("loss", "policy_loss", "value_loss", "entropy", "kl", "agreement"), 0.0)
    if knowledge is not None:
        sums.update(hint_loss=0.0, relation_loss=0.0)
    clipped = list(policy.parameters())  # not the hint projection's, which is in the optimizer too
    for i, rows in enumerate(draws):
        total, terms, dist, batch = minibatch_loss(policy, buffer, rows, cfg, prep, loss, knowledge, sums)
        gradient_step(total, optimizer, clipped, (i, steps), env_step, lr_span)
        if average is not None:
            average.update_parameters(policy)
        accumulate(sums, total, terms, dist, batch.teacher, student.action_space)
    policy.set_training_mode(False)
    means = {k: v / steps for k, v in sums.items()}
    means["gradient_steps"] = steps
    return RoundStats(means["loss"], means["kl"], means["agreement"], means)


def gradient_step(
    total: th.Tensor,
    optimizer: th.optim.Optimizer,
    clipped: Sequence[th.Tensor],
    step: tuple[int, int],
    env_step: int,
    lr_span: tuple[float, float] | None,
) -> None:
    """One Adam step on `total` (refused when not finite), the learning rate at step `step[0]` of `step[1]` along
    `lr_span`, the gradients of `clipped` (the student's parameters) clipped to norm 10.

    `clipped` is listed once a round by the caller: `module.parameters()` walks every submodule (an SAC student's
    critics included), 0.31 ms of a 3-task MuJoCo student's ~6.6 ms step and 0.14 of a single one's ~2.5 when done
    at each step."""
    i, steps = step
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
    clip_gradients(clipped, 10.0)
    optimizer.step()


def minibatch_loss(
    policy: BasePolicy,
    buffer: DistillationBuffer,
    rows: np.ndarray,
    cfg: DistillSettings,
    prep: Prep,
    loss: str,
    knowledge: Knowledge | None,
    sums: dict[str, float],
) -> tuple[th.Tensor, LossTerms, ActionDist, Batch]:
    """The loss on the buffer's `rows` (states, or sequences for a recurrent student): the distillation terms plus
    the hints' and relations' (whose raw values go into `sums`); also the terms, the student's distribution and the
    minibatch, for the round's statistics."""
    batch = buffer.get(rows.reshape(-1))
    obs = _as_input(policy, prep(batch.obs))
    batch = batch._replace(teacher=batch.teacher.to(obs.device), value=batch.value.to(obs.device))
    if cfg.augment:
        obs = augment(policy, obs, cfg.augment, batch.teacher, loss, cfg.temperature)
    with latent_of_forward(policy) if knowledge else nullcontext([]) as seen:
        dist, value = _outputs(policy, obs, batch, rows)
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
    return total, terms, dist, batch


def shuffled_draws(valid: np.ndarray, cfg: DistillSettings, rng: np.random.Generator) -> list[np.ndarray]:
    """Each gradient step's rows: `epochs` passes over the buffer in shuffled minibatches."""
    n = len(valid)
    steps = max(1, math.ceil(cfg.epochs * n / cfg.batch_size))
    order = np.concatenate([valid[rng.permutation(n)] for _ in range(math.ceil(steps * cfg.batch_size / n))])
    return [order[i * cfg.batch_size : (i + 1) * cfg.batch_size] for i in range(steps)]


def _sequence_draws(buffer: DistillationBuffer, cfg: DistillSettings, rng: np.random.Generator) -> list[np.ndarray]:
    """Each gradient step's (sequences, length) rows: `batch_size // length` sequences starting at shuffled places, as
    many steps as `epochs` passes over the buffer's steps take (each step in ~`epochs` of them). The length is
    `SEQUENCE_LENGTH`, or, while the envs have made fewer steps than that (a first round of many envs), the longest
    power-of-two fraction of it they have."""
    length = SEQUENCE_LENGTH
    firsts = buffer.sequence_firsts(length)
    while not len(firsts) and length > 1:
        length //= 2
        firsts = buffer.sequence_firsts(length)
    n = len(firsts)
    per_step = max(1, cfg.batch_size // length)
    steps = max(1, math.ceil(cfg.epochs * n / (per_step * length)))
    order = np.concatenate([firsts[rng.permutation(n)] for _ in range(math.ceil(steps * per_step / n))])
    return [buffer.sequence_rows(order[i * per_step : (i + 1) * per_step], length) for i in range(steps)]


def _outputs(policy: BasePolicy, obs: th.Tensor, batch: Batch, rows: np.ndarray) -> tuple[ActionDist, th.Tensor | None]:
    """The student's distributions and values on the minibatch: per state, or per sequence (rows of 2 dimensions).

    A recurrent student's value is not distilled: its linear value head on the (detached) actor LSTM stays far from
    the teacher's values, and that error's gradient can swamp the clipped gradient norm. In paired runs (CartPole,
    mask=1,3, 8,000 steps, mean final return of seeds 0-2, with vs without it) it never helped: 312 vs 315 on 16-step
    sequences, 337 vs 427 with a 4-step burn-in, 255 vs 313 on 32 steps with that burn-in. Its critic matters only to
    RL, which a recurrent student does not do here."""
    if rows.ndim == 1 or not isinstance(policy, RecurrentActorCriticPolicy):
        return policy_outputs(policy, obs)
    assert batch.starts is not None  # a buffer of sequences gives them
    starts = th.as_tensor(batch.starts, dtype=th.float32, device=obs.device)
    return sequence_outputs(policy, obs, starts, len(rows))[0], None


def _knowledge_terms(
    knowledge: Knowledge, student_latent: th.Tensor, raw: np.ndarray, sums: dict[str, float]
) -> th.Tensor:
    """Weighted hint and relation losses of the minibatch (their raw values are logged)."""
    hint, relation = knowledge.loss(student_latent, raw)
    sums["hint_loss"] += hint.item()
    sums["relation_loss"] += relation.item()
    return knowledge.hint_weight * hint + knowledge.relation_weight * relation


@th.no_grad()
def accumulate(
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
    soft = teacher.kind != DETERMINISTIC and dist.kind == teacher.kind and dist.squashed == teacher.squashed
    sums["kl"] += kl(dist, teacher).item() if soft else float("nan")


def _as_input(policy: BasePolicy, obs: np.ndarray) -> th.Tensor:
    """The minibatch as the student reads it; images NHWC like its conv weights (run/build.py), made float in one
    pass (SB3 then only divides by 255)."""
    tensor = obs_tensor(policy, obs)
    return tensor.to(dtype=th.float32, memory_format=th.channels_last) if tensor.dim() == 4 else tensor


def clip_gradients(parameters: Iterable[th.Tensor], max_norm: float) -> None:
    """`clip_grad_norm_`, except that a norm float32 cannot hold is taken in float64. A warm-started student far
    from its teacher (a pruned SAC actor whose log-std sits at SB3's floor of -20) has a KL near 1e19: the
    squared gradients overflow, torch's clip factor becomes 0, and the student would never move again."""
    params = [p for p in parameters if p.grad is not None]
    grads = [g for g in (p.grad for p in params) if g is not None]
    norm = th.nn.utils.get_total_norm(grads)
    if not th.isfinite(norm):
        norm = th.sqrt(functools.reduce(operator.add, [g.double().pow(2).sum() for g in grads]))
    th.nn.utils.clip_grads_with_norm_(params, max_norm, norm)
