"""Numbers and names several stages must agree on, defined once.

A figure changed in one place and not another would make results silently incomparable
(teacher and student evaluated on different seeds, a buffer that forgets a field).
"""

from __future__ import annotations

EVAL_SEED_OFFSET = 10_000
"""Evaluation episode i is reset with seed `EVAL_SEED_OFFSET + i` (plus the run's seed in distill): far
from the collection seeds, and the same for `policykd evaluate`, train-teacher's card and distill."""

DIST_FIELDS = ("logits", "mean", "log_std")
"""The tensor fields of `ActionDist`, in the order buffers, datasets and recordings store them."""

AGREEMENT_TOLERANCE = 0.05
"""Continuous actions agree when every dimension is within this fraction of the action space's range
(0.1 on a tanh-squashed [-1, 1] action)."""
