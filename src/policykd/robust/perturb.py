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

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.preprocessing import is_image_space
from stable_baselines3.common.running_mean_std import RunningMeanStd
from stable_baselines3.common.vec_env import VecNormalize

from policykd.distributions import CATEGORICAL, DETERMINISTIC, ActionDist, policy_dist
from policykd.envs import EnvFactory, is_atari
from policykd.errors import PolicykdError
from policykd.losses import scaled_action
from policykd.registry import PERTURBATIONS

ActFn = Callable[[np.ndarray], np.ndarray]
PGD_STEPS = 10


@dataclass(frozen=True)
class Context:
    """What an observation perturbation needs besides the observation: the per-dimension scale of a budget of 1,
    the observation bounds, the condition's seeded generator, and (attacks) the differentiable policy."""

    scale: np.ndarray
    low: np.ndarray
    high: np.ndarray
    rng: np.random.Generator
    net: Differentiable | None = None


ObsFn = Callable[[np.ndarray, float, Context], np.ndarray]
ActionNoiseFn = Callable[[np.ndarray, float, spaces.Space, np.random.Generator], np.ndarray]
EnvFn = Callable[[EnvFactory, float], EnvFactory]


@dataclass(frozen=True)
class Effect:
    """What one registered perturbation does (`policykd.registry.PERTURBATIONS` points at these): to the
    observation before the policy, to its action after, or to the env itself (sticky actions are the env's)."""

    observation: ObsFn | None = None
    action: ActionNoiseFn | None = None
    env: EnvFn | None = None
    needs_gradient: bool = False
    """Attacks follow the policy's gradient: only for policies with a torch graph."""


@dataclass(frozen=True)
class Perturbation:
    name: str
    size: float

    @property
    def label(self) -> str:
        return f"{self.name}={self.size:g}"

    @property
    def effect(self) -> Effect:
        return PERTURBATIONS.load(self.name)

    @property
    def adversarial(self) -> bool:
        return self.effect.needs_gradient


def parse(spec: str) -> Perturbation:
    """`fgsm=0.01` -> Perturbation("fgsm", 0.01); the settings' rule has checked the form already."""
    name, _, size = spec.partition("=")
    PERTURBATIONS[name]  # an unknown name: one line naming the choices
    return Perturbation(name, float(size))


def perturbed_factory(factory: EnvFactory, p: Perturbation) -> EnvFactory:
    """The env stack under `p` where it acts on the env (sticky actions: an env property, not an agent's)."""
    return p.effect.env(factory, p.size) if p.effect.env is not None else factory


def _sticky_env(factory: EnvFactory, size: float) -> EnvFactory:
    if is_atari(factory.env_id):
        return replace(factory, env_kwargs={**factory.env_kwargs, "repeat_action_probability": size})
    wrappers = (
        factory.env_wrapper
        if isinstance(factory.env_wrapper, list)
        else [factory.env_wrapper] * bool(factory.env_wrapper)
    )
    sticky = {"gymnasium.wrappers.StickyAction": {"repeat_action_probability": size}}
    return replace(factory, env_wrapper=[*wrappers, sticky])


@dataclass
class Differentiable:
    """A policy as a function of raw observations that torch can differentiate: its SB3 policy and the frozen
    VecNormalize in front of it (done again in torch, clip included)."""

    policy: BasePolicy
    normalizer: VecNormalize | None

    def dist(self, raw: th.Tensor) -> ActionDist:
        obs = raw
        if self.normalizer is not None and self.normalizer.norm_obs:
            rms = self.normalizer.obs_rms
            if not isinstance(rms, RunningMeanStd):
                raise PolicykdError("fgsm/pgd need Box observations, not a Dict of them")
            mean, var = (th.as_tensor(a, dtype=th.float32, device=raw.device) for a in (rms.mean, rms.var))
            obs = th.clamp(
                (raw - mean) / th.sqrt(var + self.normalizer.epsilon),
                -self.normalizer.clip_obs,
                self.normalizer.clip_obs,
            )
        return policy_dist(self.policy, obs)


def differentiable(policy_owner: object, what: str) -> Differentiable:
    """The SB3 model inside a loaded teacher or student; one line when there is none (an exported file, an ensemble,
    a dataset)."""
    model = getattr(policy_owner, "model", None)
    if not isinstance(model, BaseAlgorithm):
        raise PolicykdError(
            f"fgsm/pgd need a policy with a gradient path; {what} has none "
            f"({type(policy_owner).__name__}: an exported file, an ensemble or a dataset)"
        )
    return Differentiable(model.policy, getattr(policy_owner, "normalizer", None))


def _own_action_score(net: Differentiable, raw: th.Tensor, clean: ActionDist) -> th.Tensor:
    """Per observation: the log-probability of the clean greedy action (deterministic: minus its squared distance)."""
    dist = net.dist(raw)
    if dist.kind == CATEGORICAL:
        greedy = clean.tensor("logits").argmax(dim=-1, keepdim=True)
        return th.log_softmax(dist.tensor("logits"), dim=-1).gather(1, greedy).squeeze(1)
    target = scaled_action(clean).detach()
    if dist.kind == DETERMINISTIC:
        return -((scaled_action(dist) - target) ** 2).sum(dim=-1)
    normal = th.distributions.Normal(dist.tensor("mean"), th.exp(dist.tensor("log_std")))
    return normal.log_prob(clean.tensor("mean").detach()).sum(dim=-1)


def adversarial(
    net: Differentiable, obs: np.ndarray, budget: np.ndarray, steps: int, low: np.ndarray, high: np.ndarray
) -> np.ndarray:
    """FGSM (steps=1, one step of the whole budget) or PGD (steps of budget/4, projected on the l-inf ball)."""
    device = net.policy.device
    raw = th.as_tensor(obs, dtype=th.float32, device=device)
    eps = th.as_tensor(budget, dtype=th.float32, device=device)
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
            x = th.clamp(x, *(th.as_tensor(b, dtype=th.float32, device=device) for b in (low, high)))
    return x.detach().cpu().numpy()


def observation_scale(space: spaces.Space, rollout: np.ndarray | None) -> np.ndarray:
    """What a budget of 1 is per observation dimension: the std over a rollout, or 255 for images."""
    if is_image_space(space):
        assert space.shape is not None  # images: a Box
        return np.full(space.shape, 255.0, dtype=np.float32)
    if rollout is None:
        raise PolicykdError("the observation scale of a non-image space is measured on a rollout: pass one")
    std = rollout.std(axis=0).astype(np.float32)
    return np.where(std > 0, std, 1.0)


def _bounds(space: spaces.Space) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(space, spaces.Box):
        raise PolicykdError(f"observation perturbations need Box observations, not {space}")
    low, high = np.asarray(space.low, dtype=np.float32), np.asarray(space.high, dtype=np.float32)
    return np.maximum(low, -1e6), np.minimum(high, 1e6)


def perturbed_actor(
    act: ActFn,
    p: Perturbation,
    *,
    space: spaces.Space,
    action_space: spaces.Space,
    scale: np.ndarray,
    seed: int,
    net: Differentiable | None = None,
) -> ActFn:
    """`act` under `p` (env perturbations act in the env, see `perturbed_factory`): observations perturbed before
    it, actions after it."""
    low, high = _bounds(space)
    context = Context(scale, low, high, np.random.default_rng(seed), net)
    effect = p.effect
    image = is_image_space(space)

    def finish(obs: np.ndarray) -> np.ndarray:
        obs = np.clip(obs, low, high)
        return np.rint(obs).astype(space.dtype) if image else obs.astype(space.dtype)

    def perturbed(obs: np.ndarray) -> np.ndarray:
        if effect.observation is not None:
            obs = finish(effect.observation(obs, p.size, context))
        actions = act(obs)
        return effect.action(actions, p.size, action_space, context.rng) if effect.action is not None else actions

    return perturbed


def _obs_noise(obs: np.ndarray, size: float, context: Context) -> np.ndarray:
    return obs + size * context.scale * context.rng.standard_normal(obs.shape)


def _attack(steps: int) -> ObsFn:
    def attack(obs: np.ndarray, size: float, context: Context) -> np.ndarray:
        assert context.net is not None, "checked before any episode (robust.evaluate.check_gradients)"
        return adversarial(context.net, obs, size * context.scale, steps, context.low, context.high)

    return attack


def _noisy_actions(
    actions: np.ndarray, size: float, action_space: spaces.Space, rng: np.random.Generator
) -> np.ndarray:
    if isinstance(action_space, spaces.Discrete):
        random = rng.random(len(actions)) < size
        return np.where(random, rng.integers(action_space.n, size=len(actions)), actions)
    if not isinstance(action_space, spaces.Box):
        raise PolicykdError(f"action noise needs Discrete or Box actions, not {action_space}")
    half = (action_space.high - action_space.low) / 2
    noisy = actions + size * half * rng.standard_normal(actions.shape)
    return np.clip(noisy, action_space.low, action_space.high).astype(actions.dtype)


# The built-in perturbations, as policykd.registry.PERTURBATIONS names them.
obs_noise = Effect(observation=_obs_noise)
sticky = Effect(env=_sticky_env)
action_noise = Effect(action=_noisy_actions)
fgsm = Effect(observation=_attack(1), needs_gradient=True)
pgd = Effect(observation=_attack(PGD_STEPS), needs_gradient=True)
