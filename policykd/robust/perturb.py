"""Perturbations a policy is evaluated (and distilled) under: observation noise, sticky actions, action noise, and
FGSM / PGD adversarial observations.

Every budget is relative, so one number means the same on every env: observation noise and adversarial budgets
are in units of each observation dimension's standard deviation (measured on a seeded rollout), or for Atari frames
in pixel units over 255; action noise is relative to half the action range (discrete actions: the probability of a
uniformly random action); sticky is the probability of repeating the previous action (ALE's own
`repeat_action_probability` for Atari, gymnasium's StickyAction wrapper otherwise). Noise is seeded per condition,
so a condition repeats exactly. FGSM and PGD (Goodfellow et al. 2015; Madry et al. 2018, l-inf ball, 10 steps of
budget/4) move each observation to lower the evaluated policy's log-probability of its own clean greedy action
(deterministic actors: to move its action away); they need the policy's torch graph.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.preprocessing import is_image_space
from stable_baselines3.common.vec_env import VecNormalize

from policykd.distributions import CATEGORICAL, DETERMINISTIC, policy_dist
from policykd.envs import EnvFactory, is_atari
from policykd.errors import PolicykdError
from policykd.run.losses import scaled_action
from policykd.settings import PERTURBATIONS

ActFn = Callable[[np.ndarray], np.ndarray]
PGD_STEPS = 10


@dataclass(frozen=True)
class Perturbation:
    name: str
    size: float

    @property
    def label(self) -> str:
        return f"{self.name}={self.size:g}"

    @property
    def adversarial(self) -> bool:
        return self.name in ("fgsm", "pgd")


def parse(spec: str) -> Perturbation:
    """`fgsm=0.01` -> Perturbation("fgsm", 0.01); the settings' rule has checked the form already."""
    name, _, size = spec.partition("=")
    if name not in PERTURBATIONS:
        raise PolicykdError(f"unknown perturbation {name!r}: choose from {', '.join(PERTURBATIONS)}")
    return Perturbation(name, float(size))


def perturbed_factory(factory: EnvFactory, p: Perturbation) -> EnvFactory:
    """The env stack with sticky actions, where that is the perturbation (an env property, not an agent's)."""
    if p.name != "sticky":
        return factory
    if is_atari(factory.env_id):
        return replace(factory, env_kwargs={**factory.env_kwargs, "repeat_action_probability": p.size})
    wrappers = factory.env_wrapper if isinstance(factory.env_wrapper, list) else [factory.env_wrapper] * bool(factory.env_wrapper)
    sticky = {"gymnasium.wrappers.StickyAction": {"repeat_action_probability": p.size}}
    return replace(factory, env_wrapper=[*wrappers, sticky])


@dataclass
class Differentiable:
    """A policy as a function of raw observations that torch can differentiate: its SB3 policy and the frozen
    VecNormalize in front of it (done again in torch, clip included)."""

    policy: Any
    normalizer: VecNormalize | None

    def dist(self, raw: th.Tensor) -> Any:
        obs = raw
        if self.normalizer is not None and self.normalizer.norm_obs:
            rms = self.normalizer.obs_rms
            mean, var = (th.as_tensor(a, dtype=th.float32) for a in (rms.mean, rms.var))
            obs = th.clamp((raw - mean) / th.sqrt(var + self.normalizer.epsilon), -self.normalizer.clip_obs,
                           self.normalizer.clip_obs)
        return policy_dist(self.policy, obs)


def differentiable(policy_owner: Any, what: str) -> Differentiable:
    """The SB3 model inside a loaded teacher or student; one line when there is none (an exported file, an ensemble,
    a dataset)."""
    model = getattr(policy_owner, "model", None)
    if not isinstance(model, BaseAlgorithm):
        raise PolicykdError(f"fgsm/pgd need a policy with a gradient path; {what} has none "
                            f"({type(policy_owner).__name__}: an exported file, an ensemble or a dataset)")
    return Differentiable(model.policy, getattr(policy_owner, "normalizer", None))


def _own_action_score(net: Differentiable, raw: th.Tensor, clean: Any) -> th.Tensor:
    """Per observation: the log-probability of the clean greedy action (deterministic: minus its squared distance)."""
    dist = net.dist(raw)
    if dist.kind == CATEGORICAL:
        return th.log_softmax(dist.logits, dim=-1).gather(1, clean.logits.argmax(dim=-1, keepdim=True)).squeeze(1)
    target = scaled_action(clean).detach()
    if dist.kind == DETERMINISTIC:
        return -((scaled_action(dist) - target) ** 2).sum(dim=-1)
    normal = th.distributions.Normal(dist.mean, th.exp(dist.log_std))
    return normal.log_prob(clean.mean.detach()).sum(dim=-1)


def adversarial(net: Differentiable, obs: np.ndarray, budget: np.ndarray, steps: int, low: Any, high: Any) -> np.ndarray:
    """FGSM (steps=1, one step of the whole budget) or PGD (steps of budget/4, projected on the l-inf ball)."""
    raw = th.as_tensor(obs, dtype=th.float32)
    eps = th.as_tensor(budget, dtype=th.float32)
    with th.no_grad():
        clean = net.dist(raw)
    x = raw.clone()
    step = eps if steps == 1 else eps / 4
    for _ in range(steps):
        x.requires_grad_(True)
        score = _own_action_score(net, x, clean).sum()
        (grad,) = th.autograd.grad(score, x)
        with th.no_grad():
            x = x - step * grad.sign()
            x = th.max(th.min(x, raw + eps), raw - eps)
            x = th.clamp(x, th.as_tensor(low, dtype=th.float32), th.as_tensor(high, dtype=th.float32))
    return x.detach().numpy()


def observation_scale(space: spaces.Space, rollout: np.ndarray | None) -> np.ndarray:
    """What a budget of 1 is per observation dimension: the std over a rollout, or 255 for images."""
    if is_image_space(space):
        return np.full(space.shape, 255.0, dtype=np.float32)
    std = rollout.std(axis=0).astype(np.float32)
    return np.where(std > 0, std, 1.0)


def _bounds(space: spaces.Space) -> tuple[np.ndarray, np.ndarray]:
    low, high = np.asarray(space.low, dtype=np.float32), np.asarray(space.high, dtype=np.float32)
    return np.maximum(low, -1e6), np.minimum(high, 1e6)


def perturbed_actor(act: ActFn, p: Perturbation, *, space: spaces.Space, action_space: spaces.Space,
                    scale: np.ndarray, seed: int, net: Differentiable | None = None) -> ActFn:
    """`act` under `p` (sticky acts in the env, see `perturbed_factory`): observations noised or attacked before it,
    actions noised after it."""
    rng = np.random.default_rng(seed)
    low, high = _bounds(space)
    image = is_image_space(space)

    def finish(obs: np.ndarray) -> np.ndarray:
        obs = np.clip(obs, low, high)
        return np.rint(obs).astype(space.dtype) if image else obs.astype(space.dtype)

    def perturbed(obs: np.ndarray) -> np.ndarray:
        if p.name == "obs-noise":
            obs = finish(obs + p.size * scale * rng.standard_normal(obs.shape))
        elif p.adversarial:
            obs = finish(adversarial(net, obs, p.size * scale, 1 if p.name == "fgsm" else PGD_STEPS, low, high))
        actions = act(obs)
        return _noisy_actions(actions, p, action_space, rng) if p.name == "action-noise" else actions

    return perturbed


def _noisy_actions(actions: np.ndarray, p: Perturbation, action_space: spaces.Space, rng: np.random.Generator) -> np.ndarray:
    if isinstance(action_space, spaces.Discrete):
        random = rng.random(len(actions)) < p.size
        return np.where(random, rng.integers(action_space.n, size=len(actions)), actions)
    half = (action_space.high - action_space.low) / 2
    noisy = actions + p.size * half * rng.standard_normal(actions.shape)
    return np.clip(noisy, action_space.low, action_space.high).astype(actions.dtype)

