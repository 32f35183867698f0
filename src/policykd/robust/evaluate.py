"""`policykd evaluate --perturb`: the model (and the teacher) under each perturbation, on the same episode seeds.

Every condition replays the clean evaluation's episode seeds, so a row differs from the clean one only by the
perturbation. The observation scale (each dimension's std) is measured once, on a seeded clean rollout of the first
policy, and used for every policy and condition, so teacher and student face the same budget in raw units.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from policykd.envs import EnvFactory
from policykd.robust.perturb import (
    Perturbation,
    differentiable,
    observation_scale,
    parse,
    perturbed_actor,
    perturbed_factory,
)
from policykd.rollouts import ActFn, rollout_observations, run_episodes


class Evaluated(Protocol):
    """A policy `policykd evaluate` runs: a loaded teacher or student, or an exported file."""

    @property
    def name(self) -> str: ...

    @property
    def factory(self) -> EnvFactory: ...


SCALE_STEPS, SCALE_ENVS, SCALE_SEED = 256, 4, 2_000


def check_gradients(policies: Mapping[str, Evaluated], specs: tuple[str, ...]) -> list[Perturbation]:
    """The perturbations, after refusing (one line, before any episode) an attack on a policy without gradients."""
    perturbations = [parse(spec) for spec in specs]
    for p in perturbations:
        if p.adversarial:
            for role, policy in policies.items():
                differentiable(policy, f"--{role} {policy.name}" if role == "teacher" else f"--model {policy.name}")
    return perturbations


def robustness(
    policies: Mapping[str, Evaluated],
    actors: Mapping[str, ActFn],
    perturbations: list[Perturbation],
    episodes: int,
    seed: int,
) -> list[dict[str, object]]:
    """A row per perturbation: each policy's return (mean, std, every episode) under it."""
    first = next(iter(policies.values()))
    space, action_space = first.factory.spaces()
    rollout = (
        None
        if len(space.shape or ()) == 3
        else rollout_observations(actors[next(iter(actors))], first.factory, SCALE_STEPS, SCALE_ENVS, SCALE_SEED)
    )
    scale = observation_scale(space, rollout)
    rows = []
    for p in perturbations:
        row: dict[str, object] = {"perturbation": p.label}
        for role, policy in policies.items():
            net = differentiable(policy, role) if p.adversarial else None
            act = perturbed_actor(
                actors[role], p, space=space, action_space=action_space, scale=scale, seed=seed, net=net
            )
            returns = run_episodes(act, perturbed_factory(policy.factory, p), episodes, seed)
            row[role] = {"return_mean": returns.mean, "return_std": returns.std, "returns": returns.returns.tolist()}
        rows.append(row)
    return rows
