"""Numbers and names several stages must agree on, defined once.

A figure changed in one place and not another would make results silently incomparable
(teacher and student evaluated on different seeds, a buffer that forgets a field).
"""

from __future__ import annotations

from typing import Literal

EVAL_SEED_OFFSET = 10_000
"""Evaluation episode i is reset with seed `EVAL_SEED_OFFSET + i` (plus the run's seed in distill): far
from the collection seeds, and the same for `policykd evaluate`, train-teacher's card and distill."""

DIST_FIELDS = ("logits", "mean", "log_std")
"""The tensor fields of `ActionDist`, in the order buffers, datasets and recordings store them."""

AGREEMENT_TOLERANCE = 0.05
"""Continuous actions agree when every dimension is within this fraction of the action space's range
(0.1 on a tanh-squashed [-1, 1] action)."""

AtariStack = Literal["native", "sb3"]
"""Which env stack steps Atari envs: ale-py's own vector env where it plays the game as SB3's stack does, or SB3's
`make_atari_env` stack (`policykd.envs.EnvFactory.atari_stack`)."""
