"""`distill --augment`: the student learns on perturbed observations while the teacher's labels are of the clean ones,
so it keeps the teacher's action where noise or an attacker moves the observation (robust distillation).

Sizes are in the student's own input units: its standardised observation (std ~1 per dimension, so 0.05 is 5 % of
each dimension's std) or, for Atari frames, x 255 pixel levels. Noise comes from torch's generator, which the run
seeds and checkpoints, so augmented runs stay reproducible and resumable. FGSM here attacks the distillation loss
itself: the perturbation of the given l-inf size that most raises the student's loss against the clean labels.
"""

from __future__ import annotations

import torch as th
from stable_baselines3.common.policies import BasePolicy

from policykd.distributions import ActionDist, policy_dist
from policykd.losses import loss_fn


def _scale(obs: th.Tensor) -> float:
    return 255.0 if obs.dim() == 4 else 1.0


def augment(
    policy: BasePolicy, obs: th.Tensor, specs: tuple[str, ...], teacher: ActionDist, loss: str, temperature: float
) -> th.Tensor:
    """The minibatch's student input with every `--augment` spec applied in order."""
    for spec in specs:
        name, _, size = spec.partition("=")
        step = float(size) * _scale(obs)
        if name == "obs-noise":
            obs = obs + step * th.randn_like(obs)
        else:  # fgsm
            x = obs.detach().clone().requires_grad_(True)
            (grad,) = th.autograd.grad(loss_fn(loss)(policy_dist(policy, x), teacher, temperature), x)
            obs = obs + step * grad.sign()
        if obs.dim() == 4:
            obs = obs.clamp(0.0, 255.0)
    return obs.detach()
