"""Action distributions of any SB3 policy, as plain tensors teacher and student share.

Teachers and students are both SB3 models, so one function (`policy_dist`) reads the
distribution of either. Keeping the parameters (logits, mean, log-std) rather than a
torch `Distribution` lets the buffer store them and the losses compare them directly.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Literal, NamedTuple

import numpy as np
import torch as th
from gymnasium import spaces
from sb3_contrib.common.recurrent.policies import RecurrentActorCriticPolicy
from stable_baselines3.common.distributions import (
    CategoricalDistribution,
    DiagGaussianDistribution,
    Distribution,
    SquashedDiagGaussianDistribution,
    StateDependentNoiseDistribution,
)
from stable_baselines3.common.policies import ActorCriticPolicy, BasePolicy
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from policykd.constants import AGREEMENT_TOLERANCE, DIST_FIELDS
from policykd.errors import PolicykdError

CATEGORICAL = "categorical"
GAUSSIAN = "gaussian"
DETERMINISTIC = "deterministic"


class ActionDist(NamedTuple):
    """A batch of action distributions in the policy's own action space.

    - categorical: `logits` (B, n), unnormalised log-probabilities; Q-values when `q_values`.
    - gaussian: `mean`, `log_std` (B, d); pre-tanh when `squashed` (SAC/TQC).
    - deterministic: `mean` (B, d) is the action; in [-1, 1] when `squashed` (TD3/DDPG).
    """

    kind: str
    logits: th.Tensor | None = None
    mean: th.Tensor | None = None
    log_std: th.Tensor | None = None
    squashed: bool = False
    q_values: bool = False

    def to(self, device: th.device) -> ActionDist:
        return self._replace(**{k: getattr(self, k).to(device) for k in DIST_FIELDS if getattr(self, k) is not None})

    def detach(self) -> ActionDist:
        return self._replace(**{k: getattr(self, k).detach() for k in DIST_FIELDS if getattr(self, k) is not None})

    # Shadows `tuple.index` (a NamedTuple's): here it selects states, as tensor indexing does.
    def index(self, idx: int | slice | th.Tensor | np.ndarray) -> ActionDist:  # type: ignore[override]
        return self._replace(**{k: getattr(self, k)[idx] for k in DIST_FIELDS if getattr(self, k) is not None})

    def tensor(self, name: Literal["logits", "mean", "log_std"]) -> th.Tensor:
        """A field this kind always has (categorical: logits; gaussian: mean, log_std; deterministic: mean)."""
        value: th.Tensor | None = getattr(self, name)
        if value is None:
            raise PolicykdError(f"a {self.kind} action distribution has no {name}")
        return value


def obs_tensor(policy: BasePolicy, obs: np.ndarray) -> th.Tensor:
    """`policy.obs_to_tensor(obs)[0]`: an array of observations as a tensor on the policy's device."""
    tensor, _ = policy.obs_to_tensor(obs)
    assert isinstance(tensor, th.Tensor)  # SB3 gives a dict of tensors only for a dict of arrays
    return tensor


@contextmanager
def _unvalidated() -> Iterator[None]:
    """torch's argument validation would raise on NaN before `check_finite` can name the step."""
    previous = th.distributions.Distribution._validate_args
    th.distributions.Distribution.set_default_validate_args(False)
    try:
        yield
    finally:
        th.distributions.Distribution.set_default_validate_args(previous)


def policy_dist(policy: BasePolicy, obs: th.Tensor) -> ActionDist:
    """The action distribution of an SB3 policy (any algorithm policykd supports)."""
    with _unvalidated():
        return _policy_dist(policy, obs)


def policy_outputs(policy: BasePolicy, obs: th.Tensor) -> tuple[ActionDist, th.Tensor | None]:
    """The action distribution and the state value (None without a critic) from one forward pass. SB3's
    `get_distribution` and `predict_values` each run the features extractor: for a CNN student that shares it
    (SB3's default) the second pass made a training step 2.8x slower (144 vs 51 ms at batch 256 on 2 threads)."""
    if isinstance(policy, RecurrentActorCriticPolicy):  # each observation a sequence of one, from a zero state
        return sequence_outputs(policy, obs, th.zeros(len(obs), device=obs.device), len(obs))
    if not isinstance(policy, ActorCriticPolicy):
        return policy_dist(policy, obs), None
    with _unvalidated():
        features = policy.extract_features(obs)
        if policy.share_features_extractor:
            latent_pi, latent_vf = policy.mlp_extractor(features)
        else:
            latent_pi = policy.mlp_extractor.forward_actor(features[0])
            latent_vf = policy.mlp_extractor.forward_critic(features[1])
        dist = _actor_critic_dist(policy._get_action_dist_from_latent(latent_pi), type(policy).__name__)
        return dist, policy.value_net(latent_vf).flatten()


def sequence_outputs(
    policy: RecurrentActorCriticPolicy, obs: th.Tensor, starts: th.Tensor, n_seq: int
) -> tuple[ActionDist, th.Tensor]:
    """A recurrent policy's distributions and values on `n_seq` sequences of equal length laid out sequence-major (all
    of sequence 0's steps, then sequence 1's, ...), each from a zero LSTM state, reset where `starts` (1.0: an episode
    begins there): each step's output is what sb3-contrib's `predict` gives when stepped through the sequence with
    `episode_start`, and gradients flow through the whole sequence (truncated BPTT)."""
    with _unvalidated():
        features = policy.extract_features(obs)
        pi_features, vf_features = features if isinstance(features, tuple) else (features, features)
        latent_pi = _lstm_segments(policy.lstm_actor, pi_features, starts, n_seq)
        if policy.lstm_critic is not None:
            latent_vf = _lstm_segments(policy.lstm_critic, vf_features, starts, n_seq)
        elif policy.shared_lstm:
            latent_vf = latent_pi.detach()
        else:  # a feed-forward critic
            latent_vf = policy.get_submodule("critic")(vf_features)
        latent = policy.mlp_extractor.forward_actor(latent_pi)
        dist = _actor_critic_dist(policy._get_action_dist_from_latent(latent), type(policy).__name__)
        return dist, policy.value_net(policy.mlp_extractor.forward_critic(latent_vf)).flatten()


def _lstm_segments(lstm: nn.LSTM, features: th.Tensor, starts: th.Tensor, n_seq: int) -> th.Tensor:
    """`lstm`'s outputs on sequence-major sequences from a zero state, reset where `starts`. Each run of steps up to
    the next start is then a sequence of its own from a zero state, so all of them go through the LSTM as one packed
    batch; sb3-contrib's `_process_sequence` calls the LSTM once per time step as soon as one sequence has a start
    inside (8 sequences of 32 steps, forward and backward on one CPU thread: 12.8 ms that way, 5.6 ms packed)."""
    first = starts.detach().reshape(n_seq, -1).cpu().numpy() != 0
    first[:, 0] = True
    first = first.reshape(-1)
    segment = np.cumsum(first) - 1  # each row's run of steps
    begins = np.flatnonzero(first)
    position = np.arange(len(first)) - begins[segment]
    lengths = np.diff(np.append(begins, len(first)))
    padded = features.new_zeros(len(begins), int(lengths.max()), features.shape[1])
    padded[segment, position] = features
    packed = pack_padded_sequence(padded, th.as_tensor(lengths), batch_first=True, enforce_sorted=False)
    output, _ = pad_packed_sequence(lstm(packed)[0], batch_first=True)
    return output[segment, position]


def _actor_critic_dist(dist: Distribution, name: str) -> ActionDist:
    if isinstance(dist, CategoricalDistribution):
        return ActionDist(CATEGORICAL, logits=dist.distribution.logits)
    if isinstance(dist, (DiagGaussianDistribution, StateDependentNoiseDistribution)):
        squashed = isinstance(dist, SquashedDiagGaussianDistribution) or getattr(dist, "bijector", None) is not None
        return _gaussian(dist.distribution, squashed)
    raise PolicykdError(f"unsupported action distribution {type(dist).__name__} in {name}")


def _policy_dist(policy: BasePolicy, obs: th.Tensor) -> ActionDist:
    name = type(policy).__name__
    if isinstance(policy, RecurrentActorCriticPolicy):  # RecurrentPPO: each observation from a zero LSTM state
        return policy_outputs(policy, obs)[0]
    if isinstance(policy, ActorCriticPolicy):  # PPO, A2C, TRPO
        return _actor_critic_dist(policy.get_distribution(obs), name)
    q_net = _submodule(policy, "q_net")
    if q_net is not None:  # DQN
        return ActionDist(CATEGORICAL, logits=q_net(obs), q_values=True)
    quantile_net = _submodule(policy, "quantile_net")
    if quantile_net is not None:  # QR-DQN: the mean over quantiles is the Q-value
        return ActionDist(CATEGORICAL, logits=quantile_net(obs).mean(dim=1), q_values=True)
    actor = getattr(policy, "actor", None)
    if actor is not None and hasattr(actor, "get_action_dist_params"):  # SAC, TQC
        mean, log_std, kwargs = actor.get_action_dist_params(obs)
        if kwargs:  # gSDE: the std depends on the latent features
            return _gaussian(actor.action_dist.proba_distribution(mean, log_std, **kwargs).distribution, True)
        return ActionDist(GAUSSIAN, mean=mean, log_std=log_std, squashed=True)
    if actor is not None:  # TD3, DDPG: a tanh-squashed deterministic actor
        return ActionDist(DETERMINISTIC, mean=actor(obs), squashed=True)
    action_net = _submodule(policy, "action_net")
    if action_net is not None:  # ARS
        out = action_net(policy.extract_features(obs, policy.features_extractor))
        if isinstance(policy.action_space, spaces.Discrete):
            return ActionDist(CATEGORICAL, logits=out)
        if policy.squash_output:  # the net ends in tanh: already in [-1, 1], as TD3's actor
            return ActionDist(DETERMINISTIC, mean=out, squashed=True)
        if isinstance(policy.action_space, spaces.Box):
            return _clipped(out, policy.action_space)
    raise PolicykdError(f"unsupported policy class {name}")


def _submodule(policy: BasePolicy, name: str) -> nn.Module | None:
    """The network a policy class keeps under `name` (`q_net`, `quantile_net`, `action_net`), None if it has none."""
    module = getattr(policy, name, None)
    return module if isinstance(module, nn.Module) else None


def _clipped(out: th.Tensor, action_space: spaces.Box) -> ActionDist:
    """ARS's linear policy acts with its output clipped to the bounds (`predict` clips it). That
    clipped action rescaled to [-1, 1] is the quantity a TD3/SAC student's squashed action is, so
    the default TD3 student compares with it under `mse_action`, and `env_action` maps it back
    (within float rounding). The raw output would not do: beyond the bounds it is not the action
    taken, and it lives in env units. Unbounded spaces have nothing to rescale to: left raw."""
    low, high = (th.as_tensor(b, dtype=out.dtype, device=out.device) for b in (action_space.low, action_space.high))
    if not (th.isfinite(low).all() and th.isfinite(high).all()):
        return ActionDist(DETERMINISTIC, mean=out)
    clipped = th.minimum(th.maximum(out, low), high)
    return ActionDist(DETERMINISTIC, mean=2.0 * (clipped - low) / (high - low) - 1.0, squashed=True)


def _gaussian(normal: th.distributions.Normal, squashed: bool) -> ActionDist:
    return ActionDist(GAUSSIAN, mean=normal.loc, log_std=th.log(normal.scale), squashed=squashed)


def policy_value(policy: BasePolicy, obs: th.Tensor) -> th.Tensor | None:
    """State value V(s) for actor-critic policies, None for the others."""
    if isinstance(policy, ActorCriticPolicy):
        return policy.predict_values(obs).flatten()
    return None


def check_finite(dist: ActionDist, value: th.Tensor | None, where: str) -> None:
    """NaN or Inf from a teacher would silently poison the buffer: stop instead."""
    for name in DIST_FIELDS:
        tensor = getattr(dist, name)
        if tensor is not None and not th.isfinite(tensor).all():
            raise PolicykdError(f"{where} has NaN or Inf {name}; stopping (the last checkpoint is kept)")
    if value is not None and not th.isfinite(value).all():
        raise PolicykdError(f"{where} has a NaN or Inf value; stopping (the last checkpoint is kept)")


def env_action(dist: ActionDist, action_space: spaces.Space | None) -> np.ndarray:
    """The distribution's mode as an env action: what SB3's `predict(deterministic=True)` returns.
    Continuous actions need their `Box`; discrete ones need no space."""
    if dist.kind == CATEGORICAL:
        return dist.tensor("logits").argmax(dim=-1).cpu().numpy()
    if not isinstance(action_space, spaces.Box):
        raise PolicykdError(f"a {dist.kind} action distribution needs a Box action space, not {action_space}")
    mean = dist.tensor("mean")
    if not dist.squashed:
        return np.clip(mean.detach().cpu().numpy(), action_space.low, action_space.high)
    # torch's tanh, as SB3's actor applies it (numpy's differs in the last bit, and a MuJoCo
    # episode amplifies that into a different return from `evaluate_policy`'s).
    scaled = (th.tanh(mean) if dist.kind == GAUSSIAN else mean).detach().cpu().numpy()
    return action_space.low + 0.5 * (scaled + 1.0) * (action_space.high - action_space.low)


def same_actions(a: np.ndarray, b: np.ndarray, action_space: spaces.Space | None) -> np.ndarray:
    """Per state, whether two batches of env actions count as the same action: equal (discrete), or
    every dimension within `AGREEMENT_TOLERANCE` of the range (continuous). The one definition of
    "action agreement", in env units so squashed and unsquashed policies are judged alike; an
    unbounded dimension counts as a range of 2 (the [-1, 1] a squashed policy acts in)."""
    a, b = np.asarray(a), np.asarray(b)
    if not isinstance(action_space, spaces.Box):
        return (a == b).reshape(len(a), -1).all(axis=-1)
    span = np.asarray(action_space.high, dtype=np.float64) - action_space.low
    span = np.where(np.isfinite(span) & (span > 0), span, 2.0)
    return (np.abs(a - b) / span).reshape(len(a), -1).max(axis=-1) <= AGREEMENT_TOLERANCE


def sample_action(dist: ActionDist, action_space: spaces.Space | None) -> np.ndarray:
    """An env action drawn from the distribution (torch's RNG: seeded, checkpointed); Q-values and
    deterministic policies have no distribution to draw from and give their greedy action."""
    if dist.kind == CATEGORICAL and not dist.q_values:  # what Categorical(logits).sample() draws, without its checks
        probs = th.softmax(dist.tensor("logits"), dim=-1)
        return th.multinomial(probs.reshape(-1, probs.shape[-1]), 1, True).reshape(probs.shape[:-1]).cpu().numpy()
    if dist.kind != GAUSSIAN:
        return env_action(dist, action_space)
    mean = dist.tensor("mean")
    drawn = mean + th.exp(dist.tensor("log_std")) * th.randn_like(mean)
    return env_action(dist._replace(mean=drawn), action_space)


def entropy_per_state(dist: ActionDist) -> th.Tensor:
    """Each state's entropy (categorical, Q-values as softmax(Q); Gaussian, pre-tanh; deterministic: 0)."""
    if dist.kind == CATEGORICAL:
        log_p = th.log_softmax(dist.tensor("logits"), dim=-1)
        return -(log_p.exp() * log_p).sum(dim=-1)
    if dist.kind == GAUSSIAN:
        return (dist.tensor("log_std") + 0.5 * np.log(2 * np.pi * np.e)).sum(dim=-1)
    mean = dist.tensor("mean")
    return th.zeros(mean.shape[0], device=mean.device)


def unsquashed(dist: ActionDist, action_space: spaces.Box) -> ActionDist:
    """A squashed continuous distribution (SAC/TQC pre-tanh Gaussian, TD3 action in [-1, 1]) re-expressed in env
    units, as PPO's is, so members of different families can be mixed: the mean through tanh and the bounds'
    rescaling, the std by that map's local slope (delta method: half-range x (1 - tanh^2))."""
    if dist.kind == CATEGORICAL or not dist.squashed:
        return dist
    squashed_mean = dist.tensor("mean")
    low, high = (
        th.as_tensor(b, dtype=squashed_mean.dtype, device=squashed_mean.device)
        for b in (action_space.low, action_space.high)
    )
    half = (high - low) / 2
    unit = th.tanh(squashed_mean) if dist.kind == GAUSSIAN else squashed_mean
    mean = low + half * (unit + 1)
    if dist.kind == DETERMINISTIC:
        return ActionDist(DETERMINISTIC, mean=mean)
    log_std = dist.tensor("log_std") + th.log(half) + th.log((1 - unit**2).clamp_min(1e-6))
    return ActionDist(GAUSSIAN, mean=mean, log_std=log_std)


def mix(dists: Sequence[ActionDist], weights: Sequence[float] | th.Tensor) -> ActionDist:
    """One distribution for an ensemble: Q-values or probabilities averaged, Gaussians moment-matched. `weights`: one
    per member, or per state and member (B, M) for confidence weighting; normalised here."""
    kinds = {(d.kind, d.squashed) for d in dists}
    if len(kinds) != 1:
        raise PolicykdError(f"ensemble teachers disagree on their action distribution: {sorted(kinds)}")
    device = dists[0].tensor("logits" if dists[0].kind == CATEGORICAL else "mean").device
    table = th.as_tensor(
        weights if isinstance(weights, th.Tensor) else np.asarray(weights, dtype=np.float32), device=device
    )
    table = table.unsqueeze(0) if table.dim() == 1 else table
    table = table / table.sum(dim=1, keepdim=True)
    w = [
        table[:, i : i + 1] for i in range(table.shape[1])
    ]  # a column per member: broadcasts over states and action dims
    first = dists[0]
    if first.kind == CATEGORICAL:
        if all(d.q_values for d in dists):
            return first._replace(logits=_weighted_sum(wi * d.tensor("logits") for wi, d in zip(w, dists)))
        probs = _weighted_sum(wi * th.softmax(d.tensor("logits"), dim=-1) for wi, d in zip(w, dists))
        return ActionDist(CATEGORICAL, logits=th.log(probs.clamp_min(1e-12)))
    mean = _weighted_sum(wi * d.tensor("mean") for wi, d in zip(w, dists))
    if first.kind == DETERMINISTIC:
        return first._replace(mean=mean)
    second_moment = _weighted_sum(
        wi * (th.exp(2 * d.tensor("log_std")) + d.tensor("mean") ** 2) for wi, d in zip(w, dists)
    )
    var = (second_moment - mean**2).clamp_min(1e-12)
    return first._replace(mean=mean, log_std=0.5 * th.log(var))


def _weighted_sum(terms: Iterator[th.Tensor]) -> th.Tensor:
    """`sum(terms)` typed as a tensor (the builtin starts from the int 0, which adds nothing)."""
    return functools.reduce(operator.add, terms)
