"""Structured pruning: whole hidden units and conv channels out, a smaller *dense* SB3 model left.

Masks would leave the file and the arithmetic as large as before, so nothing a user deploys
would get faster. Here a pruned student is a fresh SB3 model of the narrower architecture
(`build_student`, so its zip's `policy_kwargs` describe the new widths and `PPO.load` needs no
policykd), holding the surviving rows and columns of the old weights.

A unit's importance is its mean absolute activation on the student's own states times the norm
of the weights that read it: a unit that is rarely active, or whose output nobody listens to,
changes the action least when removed. What the removed units gave their readers on average is
added to the readers' biases (mean replacement), so a cut moves the outputs only by the removed
units' deviations from their means. The recovery (distilling again from the same teacher)
is `policykd.workflows.prune`'s business.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch as th
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.policies import ActorCriticPolicy, BasePolicy
from stable_baselines3.common.vec_env import VecEnv
from torch import nn

from policykd.distributions import obs_tensor
from policykd.errors import PolicykdError
from policykd.sb3_models import uses_images
from policykd.students.build import build_student
from policykd.students.folding import sync_targets

_TARGETS = ("q_net_target", "actor_target")  # target networks: copies of the online ones, synced after


@dataclass(frozen=True)
class Cut:
    """One layer of hidden units: the module that produces them (its rows) and the modules that read them
    (their columns, `spatial` columns per unit where a conv channel is flattened into a linear layer).
    `layer` is the unit's position in the student's arch tuple."""

    producer: str
    consumers: tuple[str, ...]
    layer: int
    spatial: int = 1


def _linears(module: nn.Module, prefix: str) -> list[str]:
    return [f"{prefix}.{name}" for name, m in module.named_children() if isinstance(m, nn.Linear)]


def _chain(names: list[str], heads: list[str], first_layer: int = 0) -> list[Cut]:
    """Cuts of a sequence of layers whose last feeds `heads`."""
    readers = [[n] for n in names[1:]] + [heads]
    return [Cut(name, tuple(reader), first_layer + i) for i, (name, reader) in enumerate(zip(names, readers))]


def _extractor_cuts(policy: BasePolicy, prefix: str, readers: list[str]) -> list[Cut]:
    """A SmallCNN's channels and features (arch positions 0..3); none for an MLP's flatten."""
    extractor = policy.get_submodule(prefix)
    if not hasattr(extractor, "cnn"):
        return []
    cnn = extractor.get_submodule("cnn")
    assert isinstance(cnn, nn.Sequential)  # SmallCNN's (policykd.networks)
    convs = [f"{prefix}.cnn.{n}" for n, m in cnn.named_children() if isinstance(m, nn.Conv2d)]
    linear = f"{prefix}.linear.0"
    last_conv = cnn[: int(convs[-1].rsplit(".", 1)[1]) + 2]  # up to the last conv's ReLU
    obs_shape = policy.observation_space.shape
    assert obs_shape is not None  # images: a Box
    with th.no_grad():
        height_width = last_conv(th.zeros((1, *obs_shape), device=policy.device)).shape[2:]
    spatial = int(np.prod(height_width))
    cuts = _chain(convs[:-1], [convs[-1]])
    return [*cuts, Cut(convs[-1], (linear,), len(cuts), spatial), Cut(linear, tuple(readers), len(cuts) + 1)]


def cuts_of(policy: BasePolicy) -> list[Cut]:
    """Every prunable layer of an SB3 student's acting (and value) networks."""
    if isinstance(policy, ActorCriticPolicy):
        if not policy.share_features_extractor:
            raise PolicykdError("pruning needs the actor and critic to share their features extractor (SB3's default)")
        pi, vf = (
            _linears(policy.mlp_extractor.policy_net, "mlp_extractor.policy_net"),
            _linears(policy.mlp_extractor.value_net, "mlp_extractor.value_net"),
        )
        readers = (pi[:1] or ["action_net"]) + (vf[:1] or ["value_net"])
        features = _extractor_cuts(policy, "features_extractor", readers)
        return [*features, *_chain(pi, ["action_net"], len(features)), *_chain(vf, ["value_net"], len(features))]
    if hasattr(policy, "q_net"):  # DQN: the last linear is the Q head
        q = _linears(policy.get_submodule("q_net.q_net"), "q_net.q_net")
        features = _extractor_cuts(policy, "q_net.features_extractor", q[:1])
        return [*features, *_chain(q[:-1], q[-1:], len(features))]
    if uses_images(policy.observation_space):
        raise PolicykdError("pruning SAC/TD3 image students is not supported (their critics have CNNs of their own)")
    actor = policy.get_submodule("actor")
    if hasattr(actor, "latent_pi"):  # SAC
        return _chain(_linears(actor.get_submodule("latent_pi"), "actor.latent_pi"), ["actor.mu", "actor.log_std"])
    mu = _linears(actor.get_submodule("mu"), "actor.mu")  # TD3: the last linear is the action head
    return _chain(mu[:-1], mu[-1:])


def _activation(producer: str) -> str:
    """The activation after a producer: the next module of its Sequential (SB3 and SmallCNN alternate them)."""
    parent, index = producer.rsplit(".", 1)
    return f"{parent}.{int(index) + 1}"


def _reader_columns(keep: th.Tensor, spatial: int) -> th.Tensor:
    return (keep[:, None] * spatial + th.arange(spatial, device=keep.device)).reshape(-1)


def activations(policy: BasePolicy, cuts: list[Cut], obs: np.ndarray) -> dict[str, th.Tensor]:
    """Per cut (by producer), its units' activations on `obs` (what the policy reads), one forward pass."""
    outputs: dict[str, th.Tensor] = {}

    def hook(name: str) -> Callable[[nn.Module, tuple[th.Tensor, ...], th.Tensor], None]:
        def store(_module: nn.Module, _inputs: tuple[th.Tensor, ...], output: th.Tensor) -> None:
            outputs[name] = output.detach()

        return store

    handles = [policy.get_submodule(_activation(c.producer)).register_forward_hook(hook(c.producer)) for c in cuts]
    try:
        with th.no_grad():
            policy(obs_tensor(policy, obs))
    finally:
        for handle in handles:
            handle.remove()
    return outputs


def importance(policy: BasePolicy, cuts: list[Cut], outputs: dict[str, th.Tensor]) -> list[th.Tensor]:
    """Per cut, each unit's mean |activation| times the norm of its readers' weights."""

    def magnitude(out: th.Tensor) -> th.Tensor:
        return out.abs().mean(dim=[d for d in range(out.dim()) if d != 1])

    def read_norm(cut: Cut) -> th.Tensor:
        norms2 = [_read_norm2(policy.get_parameter(f"{r}.weight"), cut.spatial) for r in cut.consumers]
        return functools.reduce(operator.add, norms2).sqrt()

    return [magnitude(outputs[cut.producer]) * read_norm(cut) for cut in cuts]


def compensated_biases(
    policy: BasePolicy, cuts: list[Cut], rows: dict[str, th.Tensor], outputs: dict[str, th.Tensor]
) -> dict[str, th.Tensor]:
    """Each reader's bias plus what the removed units gave it on average, so that a cut shifts the outputs by
    the removed units' deviations only, not by their means (a conv reader: its kernel's sum times the channel's mean)."""
    biases = {}
    for cut in cuts:
        mean = outputs[cut.producer].mean(dim=0)  # per unit, and per position for conv channels
        removed = th.ones(len(mean), dtype=th.bool, device=mean.device)
        removed[rows[cut.producer]] = False
        for reader in cut.consumers:
            weight = policy.get_parameter(f"{reader}.weight").detach()
            if weight.dim() == 4:
                shift = weight[:, removed].sum(dim=(2, 3)) @ mean[removed].mean(dim=(1, 2))
            else:
                columns = removed.repeat_interleave(cut.spatial)
                shift = weight[:, columns] @ mean.reshape(-1)[columns]
            biases[reader] = policy.get_parameter(f"{reader}.bias").detach() + shift
    return biases


def _read_norm2(weight: th.Tensor, spatial: int) -> th.Tensor:
    """Per input unit, the squared norm of the weights reading it (a conv's input channel, or a flattened channel's columns)."""
    weight = weight.detach()
    if weight.dim() == 4:
        return weight.pow(2).sum(dim=(0, 2, 3))
    return weight.reshape(weight.shape[0], -1, spatial).pow(2).sum(dim=(0, 2))


def most_important(scores: list[th.Tensor], cuts: list[Cut], arch: tuple[int, ...]) -> dict[str, th.Tensor]:
    """Per producer, the indices (in order) of its `arch[layer]` most important units."""
    keep = {}
    for score, cut in zip(scores, cuts):
        width = arch[cut.layer]
        if width > len(score):
            raise PolicykdError(
                f"cannot prune {cut.producer} from {len(score)} to {width} units: pruning only removes units"
            )
        keep[cut.producer] = th.sort(th.topk(score, width).indices).values
    return keep


def _canonical(policy: BasePolicy, named: set[str]) -> dict[int, str]:
    """Module object -> the name a cut uses (SB3 registers the shared extractor under three names)."""
    return {id(policy.get_submodule(name)): name for name in named}


def _sliced_state(
    old: BasePolicy,
    new: BasePolicy,
    rows: dict[str, th.Tensor],
    cols: dict[str, th.Tensor],
    biases: dict[str, th.Tensor],
) -> dict:
    names = _canonical(old, set(rows) | set(cols))
    old_state, state = old.state_dict(), {}
    for key, target in new.state_dict().items():
        if key.split(".", 1)[0] in _TARGETS:
            continue  # synced from the online network below
        module, _, kind = key.rpartition(".")
        name = names.get(id(old.get_submodule(module)))
        value = biases[name] if kind == "bias" and name in biases else old_state[key]
        if name in rows:
            value = value[rows[name]]
        if name in cols and kind == "weight":
            value = value[:, cols[name]]
        if value.shape != target.shape:
            raise PolicykdError(
                f"pruning left {key} as {tuple(value.shape)}, the new student needs {tuple(target.shape)}"
            )
        state[key] = value.clone()
    return state


def prune_student(
    model: BaseAlgorithm, algo: str, arch: tuple[int, ...], obs: np.ndarray, spaces_env: VecEnv, *, seed: int = 0
) -> BaseAlgorithm:
    """A fresh, dense SB3 student of `arch` holding `model`'s most important units. `obs`: what the policy reads
    (normalised when a VecNormalize sits in front); `spaces_env`: a 1-env VecEnv giving the spaces."""
    cuts = cuts_of(model.policy)
    outputs = activations(model.policy, cuts, obs)
    keep = most_important(importance(model.policy, cuts, outputs), cuts, arch)
    return remove_units(model, algo, keep, outputs, spaces_env, seed=seed)


def remove_units(
    model: BaseAlgorithm,
    algo: str,
    keep: dict[str, th.Tensor],
    outputs: dict[str, th.Tensor],
    spaces_env: VecEnv,
    *,
    seed: int = 0,
) -> BaseAlgorithm:
    """A fresh, dense SB3 student holding only the units `keep` names (per producer, as `cuts_of` names them);
    `outputs`: the units' activations (`activations`), whose means the readers' biases take over."""
    old = model.policy
    cuts = cuts_of(old)
    arch = [0] * (1 + max(c.layer for c in cuts))
    for cut in cuts:
        arch[cut.layer] = len(keep[cut.producer])
    cols = {reader: _reader_columns(keep[c.producer], c.spatial) for c in cuts for reader in c.consumers}
    student = build_student(algo, spaces_env, tuple(arch), seed=seed)
    new = student.policy
    state = _sliced_state(old, new, keep, cols, compensated_biases(old, cuts, keep, outputs))
    missing = [k for k in new.load_state_dict(state, strict=False).missing_keys if k.split(".", 1)[0] not in _TARGETS]
    sync_targets(new)
    if missing:
        raise PolicykdError(f"pruning could not fill {sorted(missing)[0]} of the new student")
    return student
