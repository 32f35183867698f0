"""The kick inside PPO's and A2C's own backward: the teacher labels each rollout once, the student runs once.

The general kick (`rl.kick`) labels every RL minibatch with the teacher and runs a second forward and backward of the
student on it: PPO's 4-20 epochs label each rollout 4-20 times, and on Pong that was 48 % of RL's time. For SB3's
on-policy algorithms two things make it unnecessary:

- the minibatches are drawn from a rollout buffer: `LabelledRollouts` (SB3's `RolloutBuffer`, swapped in for the
  model's at attach, never saved) notes which rows each minibatch is, so the teacher labels the rollout's
  observations once, at the first minibatch that needs them, and each minibatch reads its rows;
- PPO's loss already runs the student's action head on the minibatch: a forward hook on `action_net` wraps its output
  in `_AddGradient`, an identity whose backward adds lambda x dL/d(output) (and dL/d(log_std) for Gaussians), so the
  distillation gradient joins SB3's in its one backward, before its gradient clipping, as kickstarting's summed loss
  would. dL/d(output) is the loss's own gradient on the head's output: no network pass.

The buffer and the hooks live on the model object only: `model.save` writes SB3's own classes and no hook.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch as th
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.distributions import CategoricalDistribution, DiagGaussianDistribution
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.type_aliases import RolloutBufferSamples
from stable_baselines3.common.vec_env import VecNormalize
from torch.utils.hooks import RemovableHandle

from policykd.distributions import CATEGORICAL, GAUSSIAN, ActionDist


class LabelledRollouts(RolloutBuffer):
    """SB3's rollout buffer, plus the rows of the minibatch it last gave and the teacher's labels of this rollout."""

    def __init__(self, model: OnPolicyAlgorithm) -> None:
        buffer = model.rollout_buffer
        super().__init__(
            buffer.buffer_size,
            buffer.observation_space,
            buffer.action_space,
            device=buffer.device,
            gae_lambda=buffer.gae_lambda,
            gamma=buffer.gamma,
            n_envs=buffer.n_envs,
        )

    def reset(self) -> None:
        super().reset()
        self.rows: np.ndarray | None = None
        """The rows of the last minibatch `get` gave (after SB3 flattened the rollout), None before the first."""
        self.labels: ActionDist | None = None
        """The teacher's distributions on every row of this rollout, once the kick has asked for them."""

    def _get_samples(self, batch_inds: np.ndarray, env: VecNormalize | None = None) -> RolloutBufferSamples:
        self.rows = batch_inds
        return super()._get_samples(batch_inds, env)


def fits(model: BaseAlgorithm) -> bool:
    """Whether the one-pass kick applies: an on-policy model with SB3's plain rollout buffer and an actor-critic policy
    whose action head gives logits (categorical) or a mean with a state-independent log-std (Gaussian)."""
    policy = getattr(model, "policy", None)
    return (
        isinstance(model, OnPolicyAlgorithm)
        and type(model.rollout_buffer) in (RolloutBuffer, LabelledRollouts)
        and isinstance(policy, ActorCriticPolicy)
        and isinstance(policy.action_dist, (CategoricalDistribution, DiagGaussianDistribution))
        and not model.use_sde
    )


class _AddGradient(th.autograd.Function):
    """Identity on the action head's output; its backward adds the kick's gradients (`extra`) to what flows back."""

    @staticmethod
    def forward(
        ctx: th.autograd.function.FunctionCtx,
        output: th.Tensor,
        log_std: th.Tensor | None,
        extra_output: th.Tensor,
        extra_log_std: th.Tensor | None,
    ) -> th.Tensor:
        ctx.extra = (extra_output, extra_log_std)  # type: ignore[attr-defined]
        return output.view_as(output)

    @staticmethod
    def backward(ctx: th.autograd.function.FunctionCtx, grad: th.Tensor) -> tuple[th.Tensor | None, ...]:
        extra_output, extra_log_std = ctx.extra  # type: ignore[attr-defined]
        return grad + extra_output, extra_log_std, None, None


LossOnHead = Callable[[ActionDist, np.ndarray], th.Tensor]
"""The kick's loss for a minibatch: the student's distribution (built on the head's output) and the minibatch's rows."""


class OnePassKick:
    """The hooks and buffer of the one-pass kick on one PPO/A2C model."""

    def __init__(self, model: OnPolicyAlgorithm, weight: Callable[[], float], loss: LossOnHead) -> None:
        self.model, self.weight, self.loss = model, weight, loss
        self.last_loss: float | None = None
        """The kick's loss on the last minibatch it acted on (taken by the caller)."""
        if not isinstance(model.rollout_buffer, LabelledRollouts):
            model.rollout_buffer = LabelledRollouts(model)
        self._handle: RemovableHandle = model.policy.action_net.register_forward_hook(self._with_kick)

    @property
    def buffer(self) -> LabelledRollouts:
        buffer = self.model.rollout_buffer
        assert isinstance(buffer, LabelledRollouts)  # set in __init__; SB3 keeps the instance for the model's life
        return buffer

    def detach(self) -> None:
        self._handle.remove()

    def _with_kick(self, module: th.nn.Module, inputs: tuple[th.Tensor, ...], output: th.Tensor) -> th.Tensor | None:
        """PPO's `evaluate_actions` on a minibatch (the only call with gradients on): the output, with the kick's
        gradient waiting in its backward."""
        rows = self.buffer.rows
        if not th.is_grad_enabled() or rows is None or len(rows) != len(output):
            return None
        weight = self.weight()
        if weight <= 0:
            return None
        policy = self.model.policy
        head = output.detach().requires_grad_()
        log_std = policy.log_std if isinstance(policy.action_dist, DiagGaussianDistribution) else None
        free_log_std = log_std.detach().requires_grad_() if log_std is not None else None
        if free_log_std is None:
            student = ActionDist(CATEGORICAL, logits=head)
        else:
            student = ActionDist(GAUSSIAN, mean=head, log_std=free_log_std.expand_as(head))
        with th.enable_grad():
            loss = self.loss(student, rows)
            wrt = [head] if free_log_std is None else [head, free_log_std]
            grads = th.autograd.grad(weight * loss, wrt)
        self.last_loss = loss.item()
        extra_log_std = grads[1] if free_log_std is not None else None
        return _AddGradient.apply(output, log_std, grads[0], extra_log_std)


def rollout_observations(buffer: LabelledRollouts) -> np.ndarray:
    """The rollout's observations as the student's policy reads them: SB3 stores them as float32 and has flattened
    them by the first minibatch; frames go back to the env's integers (exact: SB3 stored whole numbers)."""
    space = buffer.observation_space
    obs = buffer.observations.reshape(len(buffer.observations), *buffer.obs_shape)
    return obs.astype(space.dtype, copy=False) if np.issubdtype(space.dtype, np.integer) else obs
