"""--target: the smallest student whose mean return over the seeds reaches target x the teacher's, in few trials.

Bisection over the candidate sizes (smallest to largest), on the assumption users make when they
draw this curve: a larger student of the same shape is not worse. A size is first tried with one
seed; when that seed's return ratio is more than `margin` from the target it decides (a clear pass
or fail), otherwise the remaining seeds run and their mean decides. The answer is then confirmed
with every seed (a one-seed pass is not the mean over the seeds); if it fails, the next size up is
tried. Inside each trial, a Tune stopper ends students that are hopeless against the target.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

RunSeeds = Callable[[tuple[int, ...], list[int]], list[float]]
"""Runs these seeds of this size as trials and returns each one's return ratio (a stopped trial: its last one)."""


@dataclass
class Probe:
    arch: tuple[int, ...]
    ratios: dict[int, float] = field(default_factory=dict)  # seed -> return ratio

    @property
    def mean(self) -> float:
        return float(np.mean(list(self.ratios.values())))


@dataclass
class Search:
    """The answer (None: no candidate passes), every probe in the order run, and the trials it took."""

    target: float
    seeds: int
    answer: tuple[int, ...] | None = None
    probes: list[Probe] = field(default_factory=list)

    @property
    def trials(self) -> int:
        return sum(len(p.ratios) for p in self.probes)


def smallest_passing(
    candidates: list[tuple[int, ...]], seeds: int, target: float, margin: float, run_seeds: RunSeeds
) -> Search:
    """Bisection with one-seed decisions where they are clear, then confirmation of the answer with every seed."""
    search = Search(target, seeds)
    probes: dict[int, Probe] = {}

    def run(i: int, wanted: list[int]) -> Probe:
        probe = probes.setdefault(i, Probe(candidates[i]))
        if probe not in search.probes:
            search.probes.append(probe)
        missing = [s for s in wanted if s not in probe.ratios]
        if missing:
            probe.ratios.update(zip(missing, run_seeds(candidates[i], missing)))
        return probe

    def passes(i: int) -> bool:
        probe = run(i, [0])
        if len(probe.ratios) < seeds and abs(probe.mean - target) <= margin:
            probe = run(i, list(range(seeds)))
        return probe.mean >= target

    lo, hi = 0, len(candidates)
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if passes(mid) else (mid + 1, hi)
    while lo < len(candidates) and run(lo, list(range(seeds))).mean < target:
        lo += 1  # the one-seed pass was not the mean's: the next size up
    search.answer = candidates[lo] if lo < len(candidates) else None
    return search
