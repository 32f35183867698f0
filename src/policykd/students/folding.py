"""Input normalisation for MLP and LSTM students, folded into their first layer (an LSTM's input weights) when saved.

A teacher trained on raw MuJoCo observations (rl-zoo's SAC agents) leaves the student to
learn from inputs whose scales differ by orders of magnitude, which slows distillation
badly. The student trains on standardised inputs, (x - mean) / std with statistics from
the first round's observations, and the affine map is folded into its first linear
layer(s) on save: W' = W / std, b' = b - W @ (mean / std). The saved student is still a
plain SB3 model that takes raw observations, with no extra file.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NamedTuple

import numpy as np
import torch as th
from sb3_contrib.common.recurrent.policies import RecurrentActorCriticPolicy
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.policies import ActorCriticPolicy, BasePolicy
from stable_baselines3.common.torch_layers import FlattenExtractor
from torch import nn

from policykd.errors import PolicykdError

MIN_STD = 1e-2  # a nearly constant input must not get a huge weight after folding


class ObsStats(NamedTuple):
    mean: np.ndarray
    std: np.ndarray

    def apply(self, obs: np.ndarray) -> np.ndarray:
        return ((obs - self.mean) / self.std).astype(np.float32)


def fit_obs_stats(obs: np.ndarray) -> ObsStats:
    obs = obs.reshape(len(obs), -1).astype(np.float64)
    return ObsStats(obs.mean(axis=0).astype(np.float32), np.maximum(obs.std(axis=0), MIN_STD).astype(np.float32))


def _first_linear(seq: nn.Module, head: nn.Module) -> nn.Linear:
    layers = [m for m in seq.modules() if isinstance(m, nn.Linear)]
    return layers[0] if layers else _linear(head)


def _linear(module: nn.Module) -> nn.Linear:
    if not isinstance(module, nn.Linear):
        raise PolicykdError(f"cannot fold the input normalisation into a {type(module).__name__}")
    return module


def input_layers(policy: BasePolicy) -> list[nn.Linear]:
    """The linear layers that read the (flattened) observation directly."""
    if isinstance(policy, ActorCriticPolicy):
        extractor = policy.mlp_extractor
        return [
            _first_linear(extractor.policy_net, policy.action_net),
            _first_linear(extractor.value_net, policy.value_net),
        ]
    if hasattr(policy, "q_net"):  # DQN
        q_net = policy.get_submodule("q_net.q_net")
        return [_first_linear(q_net, q_net)]
    actor = policy.get_submodule("actor")
    if hasattr(actor, "latent_pi"):  # SAC: the heads read latent_pi, or the obs when it is empty
        first = [m for m in actor.get_submodule("latent_pi").modules() if isinstance(m, nn.Linear)]
        return first[:1] or [_linear(actor.get_submodule("mu")), _linear(actor.get_submodule("log_std"))]
    mu = actor.get_submodule("mu")
    return [_first_linear(mu, mu)]  # TD3


def input_maps(policy: BasePolicy) -> list[tuple[th.Tensor, th.Tensor]]:
    """(weight, bias) of every affine map that reads the observation: the input layers, or for a recurrent policy its
    LSTMs' input-to-gates maps (`weight_ih_l0`, `bias_ih_l0`: the gates are W_ih x + b_ih + W_hh h + b_hh, so folding
    x's standardisation into W_ih and b_ih alone is exact) and a feed-forward critic's layer."""
    if isinstance(policy, RecurrentActorCriticPolicy):
        lstms = [lstm for lstm in (policy.lstm_actor, policy.lstm_critic) if lstm is not None]
        maps = [(lstm.get_parameter("weight_ih_l0"), lstm.get_parameter("bias_ih_l0")) for lstm in lstms]
        critic = policy.critic if isinstance(policy.critic, nn.Linear) else None
        return maps + ([(critic.weight, critic.bias)] if critic is not None else [])
    return [(layer.weight, layer.bias) for layer in input_layers(policy)]


def supports_folding(model: BaseAlgorithm) -> bool:
    """Flat Box observations read by SB3's FlattenExtractor (MLP students)."""
    policy = model.policy
    owner = getattr(policy, "actor", None) or getattr(policy, "q_net", None) or policy
    extractor = getattr(owner, "features_extractor", None)
    return len(getattr(model.observation_space, "shape", ())) == 1 and isinstance(extractor, FlattenExtractor)


def sync_targets(policy: BasePolicy) -> None:
    """Target networks (DQN's, TD3's) equal to their online networks, as a saved student's must."""
    for online, target in (("q_net", "q_net_target"), ("actor", "actor_target")):
        if getattr(policy, target, None) is not None:
            getattr(policy, target).load_state_dict(getattr(policy, online).state_dict())


@contextmanager
def folded(model: BaseAlgorithm, stats: ObsStats | None) -> Iterator[BaseAlgorithm]:
    """Within the block, `model`'s first layers take raw observations (target networks synced)."""
    if stats is None:
        yield model
        return
    saved = copy.deepcopy(model.policy.state_dict())
    fold(model, stats)
    try:
        yield model
    finally:
        model.policy.load_state_dict(saved)


def _on_policy_device(policy: th.nn.Module, stats: ObsStats) -> tuple[th.Tensor, th.Tensor]:
    """The statistics as tensors beside the policy's weights (a student trained on a GPU folds there)."""
    weight = next(policy.parameters())
    mean, std = (th.as_tensor(a, dtype=weight.dtype, device=weight.device) for a in (stats.mean, stats.std))
    return mean, std


def fold(model: BaseAlgorithm, stats: ObsStats) -> None:
    """In place: the first layers take raw observations (W' = W / std, b' = b - W @ (mean / std)), targets synced."""
    policy = model.policy
    mean, std = _on_policy_device(policy, stats)
    with th.no_grad():
        for weight, bias in input_maps(policy):
            bias.sub_(weight @ (mean / std))
            weight.div_(std)
        sync_targets(policy)


def unfold(model: BaseAlgorithm, stats: ObsStats) -> None:
    """The inverse of folding, in place: a student that read raw observations now reads standardised ones and acts
    the same (W = W' * std, b = b' + W' @ mean). A warm-started student trains on standardised inputs like a fresh one
    and is folded back on save."""
    policy = model.policy
    mean, std = _on_policy_device(policy, stats)
    with th.no_grad():
        for weight, bias in input_maps(policy):
            bias.add_(weight @ mean)
            weight.mul_(std)
        sync_targets(policy)
