"""The acting graph: one torch module doing everything SB3's `predict(deterministic=True)` does,
from the raw env observation to the env action, so an exported file needs nothing around it.

Steps, in SB3's order: VecNormalize (frozen mean/var, epsilon, clip; float64 as VecNormalize
computes it in numpy), `preprocess_obs` (float cast; uint8 images / 255), the policy's features
extractor and actor layers, then argmax (discrete: logits or Q-values), tanh and rescale to the
action bounds (SAC; TD3's actor already ends in tanh), or clip to the bounds (Gaussian PPO/A2C).
"""

from __future__ import annotations

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.policies import ActorCriticPolicy
from torch import nn

from policykd.errors import PolicykdError
from policykd.export.source import ExportSource

LOG_STD_MIN, LOG_STD_MAX = -20, 2  # SAC's clamp of log_std (stable_baselines3.sac.policies)


def head_kind(algo: str, policy: nn.Module, action_space: spaces.Space) -> str:
    """`logits`, `q_values`, `gaussian` (PPO/A2C Box), `squashed` (SAC) or `deterministic` (TD3)."""
    if algo in ("ppo", "a2c") and isinstance(policy, ActorCriticPolicy):
        if getattr(policy, "use_sde", False):
            raise PolicykdError("cannot export a gSDE policy (use_sde=True): its deterministic action is not supported yet")
        if isinstance(action_space, spaces.Discrete):
            return "logits"
        if isinstance(action_space, spaces.Box):
            return "gaussian"
    elif algo == "dqn" and isinstance(action_space, spaces.Discrete):
        return "q_values"
    elif algo == "sac" and isinstance(action_space, spaces.Box):
        if policy.actor.use_sde:
            raise PolicykdError("cannot export a gSDE policy (use_sde=True): its deterministic action is not supported yet")
        return "squashed"
    elif algo == "td3" and isinstance(action_space, spaces.Box):
        return "deterministic"
    raise PolicykdError(f"cannot export a {algo.upper()} student acting in {action_space}: "
                        "supported are PPO/A2C (Discrete or Box), DQN (Discrete), SAC and TD3 (Box)")


OUTPUTS = {"logits": ("action", "logits"), "q_values": ("action", "q_values"), "gaussian": ("action", "mean", "log_std"),
           "squashed": ("action", "mean", "log_std"), "deterministic": ("action",)}


class ActingGraph(nn.Module):
    """Raw observation batch -> (action, distribution parameters...), as `predict(deterministic=True)`."""

    def __init__(self, source: ExportSource) -> None:
        super().__init__()
        obs_space = source.observation_space
        if not isinstance(obs_space, spaces.Box):
            raise PolicykdError(f"cannot export a policy observing {obs_space}: only Box observations (no Dict, Discrete)")
        self.policy = source.model.policy
        self.policy.set_training_mode(False)
        self.kind = head_kind(source.algo, self.policy, source.action_space)
        norm = source.normalizer
        self.normalize = norm is not None and bool(norm.norm_obs)
        if self.normalize:
            self.register_buffer("obs_mean", th.as_tensor(np.asarray(norm.obs_rms.mean, dtype=np.float64)))
            self.register_buffer("obs_std", th.as_tensor(np.sqrt(np.asarray(norm.obs_rms.var, dtype=np.float64) + norm.epsilon)))
            self.clip_obs = float(norm.clip_obs)
        space = source.action_space
        if isinstance(space, spaces.Box):
            self.register_buffer("low", th.as_tensor(space.low, dtype=th.float32))
            self.register_buffer("high", th.as_tensor(space.high, dtype=th.float32))

    @property
    def output_names(self) -> tuple[str, ...]:
        return OUTPUTS[self.kind]

    def forward(self, obs: th.Tensor) -> tuple[th.Tensor, ...]:
        if self.normalize:  # VecNormalize.normalize_obs, in float64 as numpy does it; the policy then casts to float32
            obs = th.clamp((obs.double() - self.obs_mean) / self.obs_std, -self.clip_obs, self.clip_obs)
        policy = self.policy
        if self.kind in ("logits", "gaussian"):
            features = policy.extract_features(obs, policy.pi_features_extractor)  # preprocess_obs inside
            mean = policy.action_net(policy.mlp_extractor.forward_actor(features))
            if self.kind == "logits":
                return th.argmax(mean, dim=1), mean
            return th.minimum(th.maximum(mean, self.low), self.high), mean, policy.log_std.expand_as(mean)
        if self.kind == "q_values":
            q_values = policy.q_net(obs)
            return th.argmax(q_values, dim=1), q_values
        if self.kind == "squashed":
            mean, log_std, _ = policy.actor.get_action_dist_params(obs)
            return self._rescale(th.tanh(mean)), mean, log_std
        return (self._rescale(policy.actor(obs)),)

    def _rescale(self, squashed: th.Tensor) -> th.Tensor:
        """SB3's `unscale_action`: [-1, 1] -> [low, high]."""
        return self.low + 0.5 * (squashed + 1.0) * (self.high - self.low)
