"""An exponential moving average (EMA) of the student's weights, kept beside the trained ones.

With a constant learning rate the last Adam steps leave the weights wherever minibatch noise
put them; on locomotion tasks a small student then loses single episodes to a fall in a state
its last steps got slightly wrong. The averaged weights (Polyak averaging, torch's
`AveragedModel`) drive DAgger collection, are evaluated and are what `student.zip` holds,
while Adam keeps training the raw weights.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch as th
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn


def make_average(policy: nn.Module, decay: float) -> AveragedModel | None:
    """The EMA of `policy`'s parameters (None when `decay` is 0: no averaging)."""
    if decay <= 0:
        return None
    return AveragedModel(policy, multi_avg_fn=get_ema_multi_avg_fn(decay))


@contextmanager
def averaged_weights(policy: nn.Module, average: AveragedModel | None) -> Iterator[nn.Module]:
    """Within the block `policy` holds the averaged weights; its trained weights come back after."""
    if average is None or int(average.n_averaged) == 0:
        yield policy
        return
    params = list(policy.parameters())
    trained = [p.detach().clone() for p in params]
    with th.no_grad():
        for p, averaged in zip(params, average.module.parameters()):
            p.copy_(averaged)
    try:
        yield policy
    finally:
        with th.no_grad():
            for p, kept in zip(params, trained):
                p.copy_(kept)
