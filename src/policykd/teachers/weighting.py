"""How an ensemble's members are weighted from how they play (`--teacher-weighting return | select`).

Averaging helps where members play alike (CartPole's PPO and DQN agents), and hurts where they differ in kind: two
HalfCheetah agents with different gaits average into neither (docs/results.md, a student 27 % below its best
member's). `select` therefore keeps only the members that play as well as the best, and the best alone when even
those do not average well.
"""

from __future__ import annotations

import math

import numpy as np

from policykd.rollouts import Returns, run_episodes, teacher_actor
from policykd.teachers.ensemble import EnsembleTeacher


def member_returns(ensemble: EnsembleTeacher, episodes: int, seed: int) -> list[Returns]:
    """Each member alone on the same `episodes` seeds."""
    return [run_episodes(teacher_actor(m), m.factory, episodes, seed) for m in ensemble.members]


def return_weights(ensemble: EnsembleTeacher, episodes: int, seed: int) -> list[float]:
    """Each member's weight times its return on the evaluation seeds, shifted so the worst member keeps a tenth of
    the spread (returns may be negative: Pendulum's are); equal returns give the fixed weights."""
    returns = np.array([r.mean for r in member_returns(ensemble, episodes, seed)])
    spread = returns.max() - returns.min()
    if spread <= 0:
        return list(ensemble.weights)
    return [float(w * (g - returns.min() + 0.1 * spread)) for w, g in zip(ensemble.weights, returns)]


def select_weights(ensemble: EnsembleTeacher, episodes: int, seed: int) -> list[float]:
    """The members within one standard error of the best member's mean return keep their weights, the others get 0;
    if those kept, averaged, score below the best alone by more than that error (gaits that do not average), the
    best member alone. Costs each member's evaluation episodes, and the mixture's when two or more are kept."""
    scores = member_returns(ensemble, episodes, seed)
    best = int(np.argmax([r.mean for r in scores]))
    error = scores[best].std / math.sqrt(episodes)
    kept = [w if r.mean >= scores[best].mean - error else 0.0 for w, r in zip(ensemble.weights, scores)]
    if sum(w > 0 for w in kept) < 2:
        return kept
    mixture = EnsembleTeacher(ensemble.members, kept)
    if run_episodes(teacher_actor(mixture), mixture.factory, episodes, seed).mean >= scores[best].mean - error:
        return kept
    return [ensemble.weights[i] if i == best else 0.0 for i in range(len(kept))]
