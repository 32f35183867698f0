"""The acting graph: one torch module doing everything SB3's `predict(deterministic=True)` does,
from the raw env observation to the env action, so an exported file needs nothing around it.

Steps, in SB3's order: VecNormalize (frozen mean/var, epsilon, clip; float64 as VecNormalize
computes it in numpy), `preprocess_obs` (float cast; uint8 images / 255), the policy's features
extractor and actor layers, then argmax (discrete: logits or Q-values), tanh and rescale to the
action bounds (SAC; TD3's actor already ends in tanh), or clip to the bounds (Gaussian PPO/A2C).
"""

from __future__ import annotations

import torch as th
from gymnasium import spaces
from sb3_contrib.common.recurrent.policies import RecurrentActorCriticPolicy
from stable_baselines3.common.policies import ActorCriticPolicy, BasePolicy
from stable_baselines3.dqn.policies import DQNPolicy
from stable_baselines3.sac.policies import SACPolicy
from stable_baselines3.td3.policies import TD3Policy
from torch import nn

from policykd.errors import PolicykdError
from policykd.exporters.source import ExportSource


def head_kind(algo: str, policy: BasePolicy, action_space: spaces.Space) -> str:
    """`logits`, `q_values`, `gaussian` (PPO/A2C Box), `squashed` (SAC) or `deterministic` (TD3)."""
    if algo in ("ppo", "a2c", "recurrent-ppo") and isinstance(policy, ActorCriticPolicy):
        if getattr(policy, "use_sde", False):
            raise PolicykdError(
                "cannot export a gSDE policy (use_sde=True): its deterministic action is not supported yet"
            )
        if isinstance(action_space, spaces.Discrete):
            return "logits"
        if isinstance(action_space, spaces.Box):
            return "gaussian"
    elif algo == "dqn" and isinstance(policy, DQNPolicy) and isinstance(action_space, spaces.Discrete):
        return "q_values"
    elif algo == "sac" and isinstance(policy, SACPolicy) and isinstance(action_space, spaces.Box):
        if policy.actor.use_sde:
            raise PolicykdError(
                "cannot export a gSDE policy (use_sde=True): its deterministic action is not supported yet"
            )
        return "squashed"
    elif algo == "td3" and isinstance(policy, TD3Policy) and isinstance(action_space, spaces.Box):
        return "deterministic"
    raise PolicykdError(
        f"cannot export a {algo.upper()} student acting in {action_space}: "
        "supported are PPO/A2C/RecurrentPPO (Discrete or Box), DQN (Discrete), SAC and TD3 (Box)"
    )


OUTPUTS = {
    "logits": ("action", "logits"),
    "q_values": ("action", "q_values"),
    "gaussian": ("action", "mean", "log_std"),
    "squashed": ("action", "mean", "log_std"),
    "deterministic": ("action",),
}


class ActingGraph(nn.Module):
    """Raw observation batch -> (action, distribution parameters...), as `predict(deterministic=True)`."""

    obs_mean: th.Tensor
    obs_std: th.Tensor
    low: th.Tensor
    high: th.Tensor

    def __init__(self, source: ExportSource) -> None:
        super().__init__()
        student = source.student
        if not isinstance(student.observation_space, spaces.Box):
            raise PolicykdError(
                f"cannot export a policy observing {student.observation_space}: "
                "only Box observations (no Dict, Discrete)"
            )
        self.policy = student.model.policy
        self.policy.set_training_mode(False)
        self.kind = head_kind(student.algo, self.policy, student.action_space)
        norm = source.obs_normalization()
        self.normalize = norm is not None
        if norm is not None:
            self.register_buffer("obs_mean", th.as_tensor(norm.mean))
            self.register_buffer("obs_std", th.as_tensor(norm.std))
            self.clip_obs = norm.clip
        space = student.action_space
        if isinstance(space, spaces.Box):
            self.register_buffer("low", th.as_tensor(space.low, dtype=th.float32))
            self.register_buffer("high", th.as_tensor(space.high, dtype=th.float32))

    @property
    def output_names(self) -> tuple[str, ...]:
        return OUTPUTS[self.kind]

    def forward(self, obs: th.Tensor) -> tuple[th.Tensor, ...]:
        policy = self.policy  # head_kind admitted these four policy classes only
        if isinstance(policy, RecurrentActorCriticPolicy):
            raise PolicykdError(
                "a recurrent student acts through policykd.exporters.memory.MemoryGraph (its LSTM state)"
            )
        obs = self.normalized(obs)
        if isinstance(policy, ActorCriticPolicy):
            return self.actor_head(self.actor_features(obs))
        if isinstance(policy, DQNPolicy):
            q_values = policy.q_net(obs)
            return th.argmax(q_values, dim=1), q_values
        if isinstance(policy, SACPolicy):
            mean, log_std, _ = policy.actor.get_action_dist_params(obs)
            return self._rescale(th.tanh(mean)), mean, log_std
        assert isinstance(policy, TD3Policy)
        return (self._rescale(policy.actor(obs)),)

    def normalized(self, obs: th.Tensor) -> th.Tensor:
        """VecNormalize.normalize_obs, in float64 as numpy does it; the policy then casts to float32."""
        if not self.normalize:
            return obs
        return th.clamp((obs.double() - self.obs_mean) / self.obs_std, -self.clip_obs, self.clip_obs)

    def actor_features(self, obs: th.Tensor) -> th.Tensor:
        """An actor-critic policy's features of a normalised observation (preprocess_obs inside); a recurrent
        policy's are what its actor LSTM reads."""
        policy = self.policy
        assert isinstance(policy, ActorCriticPolicy)
        features: th.Tensor | tuple[th.Tensor, th.Tensor]
        if isinstance(policy, RecurrentActorCriticPolicy):  # as its get_distribution: BasePolicy's, with the actor's
            features = BasePolicy.extract_features(policy, obs, policy.pi_features_extractor)
        else:
            features = policy.extract_features(obs, policy.pi_features_extractor)
        assert isinstance(features, th.Tensor)  # one extractor given: one tensor (a tuple only for two)
        return features

    def actor_head(self, latent: th.Tensor) -> tuple[th.Tensor, ...]:
        """An actor-critic policy's action from its actor latent (a recurrent one's: the actor LSTM's output)."""
        policy = self.policy
        assert isinstance(policy, ActorCriticPolicy)
        mean = policy.action_net(policy.mlp_extractor.forward_actor(latent))
        if self.kind == "logits":
            return th.argmax(mean, dim=1), mean
        return th.minimum(th.maximum(mean, self.low), self.high), mean, policy.log_std.expand_as(mean)

    def _rescale(self, squashed: th.Tensor) -> th.Tensor:
        """SB3's `unscale_action`: [-1, 1] -> [low, high]."""
        return self.low + 0.5 * (squashed + 1.0) * (self.high - self.low)
