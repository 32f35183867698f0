"""Which loss a run trains with, checked once on a few labelled observations before any work.

The configured loss applies where it can; where it cannot (a deterministic teacher, a teacher and student of
different squashing, action-only data) the run says which one it uses instead, or refuses in one line.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch as th
from gymnasium import spaces

from policykd.data.source import label_steps, needs_relabelling
from policykd.distributions import DETERMINISTIC, GAUSSIAN, check_finite
from policykd.envs import array_obs
from policykd.errors import PolicykdError, option
from policykd.losses import loss_fn
from policykd.registry import LOSSES
from policykd.views import full_obs

if TYPE_CHECKING:
    from policykd.run.build import Run


def choose_loss(run: Run, teacher_kind: str, squashed: bool = False) -> str:
    """The configured loss, except where the default KL cannot apply: a deterministic teacher (TD3/DDPG/ARS), or a
    tanh-squashed teacher (SAC/TQC) with a student of another family (a PPO or recurrent PPO student), is matched by
    MSE on the greedy action; action-only data by the hard-label loss."""
    loss = run.settings.loss
    across = teacher_kind == GAUSSIAN and squashed != run.squashed_student
    if across and loss in ("kl", "mse_action"):
        _check_unit_bounds(run)
        return "mse_action"
    if teacher_kind == DETERMINISTIC and not run.actions_only and loss == "kl":
        return "mse_action"
    if not run.actions_only or not LOSSES[loss].meta.get("needs_distribution"):
        return loss
    if loss != "kl":
        raise PolicykdError(
            f"dataset {run.settings.dataset} holds only actions: loss {loss!r} needs the teacher's "
            f"distributions; use {option('loss', 'nll')} (behaviour cloning) or record with a teacher"
        )
    continuous = isinstance(run.action_space, spaces.Box)
    return "mse_action" if continuous and run.student_algo == "td3" else "nll"


def check_loss_fits(run: Run) -> None:
    """Run the loss once on a few labelled observations, so a bad combination fails before any work."""
    if run.teacher is not None:
        obs = array_obs(run.envs.reset())
        teacher_dist, teacher_value = run.teacher.label(full_obs(run.envs, obs))
        check_finite(teacher_dist, teacher_value, "the teacher's output on the first observations")
        if run.source is not None and needs_relabelling(run.source.dataset, run.teacher, teacher_dist):
            run.relabel_with = run.teacher
    else:
        dataset = run.dataset_source.dataset
        obs, actions, labels, values = next(dataset.episodes())
        teacher_dist, _ = label_steps(
            dataset, obs, actions, labels, values, slice(0, 8), live=None, squashed=run.squashed_student
        )
        check_finite(teacher_dist, None, f"the distributions stored in dataset {run.settings.dataset}")
        obs = obs[:8]
    run.loss = choose_loss(run, teacher_dist.kind, teacher_dist.squashed)
    with th.no_grad():
        loss_fn(run.loss)(run.student_dist(obs), teacher_dist, run.settings.temperature)


def _check_unit_bounds(run: Run) -> None:
    """A squashed policy's greedy action is in [-1, 1] and an unsquashed one's in the env's units: `mse_action`
    compares them as they are, which is right only where the env's bounds are [-1, 1] (MuJoCo locomotion)."""
    space = run.action_space
    if not (isinstance(space, spaces.Box) and np.all(space.low == -1) and np.all(space.high == 1)):
        raise PolicykdError(
            f"a {run.student_algo} student of a tanh-squashed {run.teacher_algo} teacher is matched on the greedy "
            f"action, which needs action bounds of [-1, 1] ({run.settings.env_id} has {space}): pick a student "
            "algorithm of the teacher's family"
        )
