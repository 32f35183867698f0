"""Knowledge beyond the action distribution: feature hints (FitNets) and relations between samples (relational KD).

Both compare the student's and the teacher's *latent*: the last hidden layer the action head reads (SB3's
`mlp_extractor` actor latent for PPO/A2C, `latent_pi` for SAC/TQC, the actor's MLP before its output for TD3, the
Q-network before its output for DQN; with no hidden layers, the features extractor's output, e.g. a CNN's), or, with
`--hint-layer NAME`, the output of that module of the teacher's policy.

- Hints (Romero et al. 2015): MSE between a learned linear projection of the student's latent and the teacher's. The
  projection is training-only: it is in the optimizer and the checkpoint, never in student.zip.
- Relations (Park et al. 2019): the distance loss (Huber between the two latents' pairwise distances, each divided
  by its mean) and the angle loss (Huber between the cosines of the angles each triplet forms), within a minibatch;
  the angle loss uses the first 64 samples (it is cubic in them). No projection: distances and angles have no units.

The teacher's latent is recomputed for each minibatch from the stored observation, so the buffer keeps holding only
observations and labels (Atari: each frame once, 7.2 KB a transition); the student's is caught in the training
step's own forward pass (`latent_of_forward`). Pong, measured in docs/knowledge.md: hints cost 1.67x a plain step.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch as th
import torch.nn.functional as F
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.policies import ActorCriticPolicy, BasePolicy
from stable_baselines3.common.vec_env import VecNormalize

from policykd.distributions import obs_tensor, policy_outputs
from policykd.envs import array_obs
from policykd.errors import PolicykdError, option
from policykd.fields import spelled

if TYPE_CHECKING:
    from policykd.settings import DistillSettings
    from policykd.teachers import Teacher

ANGLE_SAMPLES = 64


def latent(policy: BasePolicy, obs: th.Tensor) -> th.Tensor:
    """The last hidden layer the policy's action head reads, for a batch of policy inputs (gradients kept)."""
    with latent_of_forward(policy) as seen:
        policy_outputs(policy, obs)
    return seen[-1]


def head(policy: BasePolicy) -> th.nn.Module:
    """The module whose input is `latent(policy, ...)`: the action head (PPO/A2C `action_net`, SAC/TQC `actor.mu`,
    TD3's and DQN's last Linear). A forward pre-hook on it reads the latent from the forward pass training runs
    anyway, where a second pass only for the latent made a hinted Pong step 3.65x a plain one instead of 1.67x."""
    if isinstance(policy, ActorCriticPolicy):
        return policy.action_net
    actor = getattr(policy, "actor", None)
    if actor is not None and hasattr(actor, "latent_pi"):
        return actor.mu
    if actor is not None and hasattr(actor, "mu"):
        return actor.mu[-2]
    q_net = getattr(policy, "q_net", None)
    if q_net is not None and hasattr(q_net, "q_net"):
        return q_net.q_net[-1]
    raise PolicykdError(f"cannot read the hidden features of a {type(policy).__name__}")


def latent_of_forward(policy: BasePolicy) -> contextlib.AbstractContextManager[list[th.Tensor]]:
    """Within the block, each forward pass of `policy` appends its latent (gradients kept) to the list yielded."""
    return _catching(head(policy), output=False)


@contextmanager
def _catching(module: th.nn.Module, *, output: bool) -> Iterator[list[th.Tensor]]:
    """Within the block, each call of `module` appends its output (or its first input) to the list yielded."""
    seen: list[th.Tensor] = []
    handle = (
        module.register_forward_hook(lambda m, inputs, out: seen.append(out))
        if output
        else module.register_forward_pre_hook(lambda m, inputs: seen.append(inputs[0]))
    )
    try:
        yield seen
    finally:
        handle.remove()


def relation_loss(student: th.Tensor, teacher: th.Tensor) -> th.Tensor:
    """Relational KD's distance + angle losses between two batches of embeddings (any widths)."""
    s, t = student.flatten(1), teacher.flatten(1)
    distance = F.smooth_l1_loss(_normalised_distances(s), _normalised_distances(t))
    return distance + F.smooth_l1_loss(_angles(s[:ANGLE_SAMPLES]), _angles(t[:ANGLE_SAMPLES]))


def _normalised_distances(e: th.Tensor) -> th.Tensor:
    d = th.cdist(e, e)
    mean = d[d > 0].mean() if (d > 0).any() else d.new_ones(())
    return d / mean


def _angles(e: th.Tensor) -> th.Tensor:
    diff = F.normalize(e.unsqueeze(0) - e.unsqueeze(1), p=2, dim=2)  # diff[j, i] = e_i - e_j, unit length
    return th.bmm(diff, diff.transpose(1, 2)).flatten()


@dataclass
class Knowledge:
    """The run's hint and relation terms: the teacher's policy and VecNormalize, the projection, the weights."""

    policy: BasePolicy
    normalizer: VecNormalize | None
    projection: th.nn.Linear | None
    hint_weight: float
    relation_weight: float
    layer: th.nn.Module | None = None

    def teacher_latent(self, raw: np.ndarray) -> th.Tensor:
        obs = array_obs(self.normalizer.normalize_obs(raw)) if self.normalizer is not None else raw
        catching = latent_of_forward(self.policy) if self.layer is None else _catching(self.layer, output=True)
        with th.no_grad(), catching as seen:
            policy_outputs(self.policy, obs_tensor(self.policy, obs))
        return seen[-1].flatten(1)

    def loss(self, student_latent: th.Tensor, raw: np.ndarray) -> tuple[th.Tensor, th.Tensor]:
        """(hint loss, relation loss) of one minibatch, unweighted (zeros where off); `student_latent` as
        `latent_of_forward` caught it in the training step's forward pass."""
        s, t = student_latent.flatten(1), self.teacher_latent(raw)
        hint = F.mse_loss(self.projection(s), t) if self.projection is not None else s.new_zeros(())
        relation = relation_loss(s, t) if self.relation_weight > 0 else s.new_zeros(())
        return hint, relation


def make_knowledge(
    settings: DistillSettings,
    teacher: Teacher | None,
    student: BaseAlgorithm,
    probe: np.ndarray | None,
    student_input: np.ndarray | None,
) -> Knowledge | None:
    """The run's Knowledge, or None without --hint-weight / --relation-weight; one line when the teacher's features
    cannot be read (a dataset, an ensemble, an exported file, an unknown --hint-layer)."""
    if not (settings.hint_weight or settings.relation_weight):
        return None
    model: BaseAlgorithm | None = getattr(teacher, "model", None)  # SB3Teacher's
    if model is None:
        what = (
            "a dataset"
            if teacher is None
            else f"{type(teacher).__name__} (an ensemble: one member's features would not be the ensemble's)"
        )
        raise PolicykdError(
            f"{spelled('hint_weight')}/{spelled('relation_weight')} need a single live SB3 teacher whose features can be read; "
            f"the teacher here is {what}"
        )
    layer = None
    if settings.hint_layer:
        modules = dict(model.policy.named_modules())
        if settings.hint_layer not in modules:
            names = ", ".join(n for n in modules if n) or "none"
            raise PolicykdError(
                f"{option('hint_layer', settings.hint_layer)} is not a module of the teacher's policy ({names})"
            )
        layer = modules[settings.hint_layer]
    knowledge = Knowledge(
        model.policy, getattr(teacher, "normalizer", None), None, settings.hint_weight, settings.relation_weight, layer
    )
    assert probe is not None and student_input is not None  # a live teacher's envs were probed
    with th.no_grad():
        width_t = knowledge.teacher_latent(probe).shape[1]
        width_s = latent(student.policy, obs_tensor(student.policy, student_input)).flatten(1).shape[1]
    if settings.hint_weight:
        knowledge.projection = th.nn.Linear(width_s, width_t).to(student.device)
    return knowledge
