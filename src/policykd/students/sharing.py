"""One trunk, several students: the hidden layers that tasks of a multi-task student share, found in plain SB3 models.

A multi-task student (Rusu et al. 2016) is one SB3 model per task whose actors hold the *same* `nn.Linear` objects
after their first layer: each task keeps its own input layer (observation sizes differ between tasks) and its own
action head (so do action spaces), and the layers between are one set of tensors. Each task's model is then an
ordinary PPO, A2C, SAC, TD3 or DQN whose `save()` writes its input layer, the trunk and its head: its zip loads in
plain SB3 and acts exactly as the multi-task student does for that task, with nothing to convert.

The actor's hidden layers differ by family (PPO's `mlp_extractor.policy_net`, SAC's `actor.latent_pi`, TD3's
`actor.mu` and DQN's `q_net.q_net` without their output layer); their activations stay each family's own (SB3's
defaults: tanh for PPO and A2C, ReLU for the others), so a trunk shared between families reads the same weights
through different activations.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.policies import ActorCriticPolicy, BasePolicy
from torch import nn

from policykd.errors import PolicykdError


def hidden_layers(policy: BasePolicy) -> tuple[nn.Sequential, list[int]]:
    """The actor's hidden-layer stack and the indices of its `nn.Linear` layers in it, input layer first."""
    parts: Any = policy  # SB3's policies type their sub-networks loosely (`nn.Module`)
    if isinstance(policy, ActorCriticPolicy):
        stack, output = parts.mlp_extractor.policy_net, False
    elif hasattr(parts, "actor") and hasattr(parts.actor, "latent_pi"):  # SAC
        stack, output = parts.actor.latent_pi, False
    elif hasattr(parts, "actor") and hasattr(parts.actor, "mu"):  # TD3: mu ends in its output layer and a tanh
        stack, output = parts.actor.mu, True
    elif hasattr(parts, "q_net"):  # DQN: q_net ends in its output layer
        stack, output = parts.q_net.q_net, True
    else:
        raise PolicykdError(f"a multi-task student cannot be a {type(policy).__name__} (PPO, A2C, SAC, TD3 or DQN)")
    if not isinstance(stack, nn.Sequential):
        raise PolicykdError(f"a {type(policy).__name__} without an MLP actor cannot share a trunk")
    linear = [i for i, module in enumerate(stack) if isinstance(module, nn.Linear)]
    return stack, linear[:-1] if output else linear


def trunk(policy: BasePolicy) -> list[nn.Linear]:
    """The layers a multi-task student shares: the actor's hidden layers after its input layer."""
    stack, linear = hidden_layers(policy)
    return [cast(nn.Linear, stack[i]) for i in linear[1:]]


def share_trunk(students: Sequence[BaseAlgorithm]) -> None:
    """Make every student's trunk the first student's (the same modules, so the same tensors); their hidden sizes
    must be equal, which one `student_arch` for every task gives."""
    first = trunk(students[0].policy)
    for student in students[1:]:
        stack, linear = hidden_layers(student.policy)
        if len(linear) - 1 != len(first):
            raise PolicykdError(
                "the tasks' students have different numbers of hidden layers: they cannot share a trunk"
            )
        for index, layer in zip(linear[1:], first):
            if stack[index].weight.shape != layer.weight.shape:
                raise PolicykdError("the tasks' students have different hidden sizes: they cannot share a trunk")
            stack[index] = layer


def share_inputs(students: Sequence[BaseAlgorithm]) -> None:
    """Students whose observations have the same size share their input layer's weights, each keeping its own bias:
    a shared input with a learned task embedding (a one-hot task id through the input layer adds one column of
    weights to the bias, so the embedding is the bias), and still a plain SB3 layer in each task's zip."""
    firsts: dict[tuple[int, ...], nn.Linear] = {}
    for student in students:
        layer = input_layer(student.policy)
        shape = tuple(layer.weight.shape)
        if shape in firsts:
            layer.weight = firsts[shape].weight
        else:
            firsts[shape] = layer


def unshare_inputs(students: Sequence[BaseAlgorithm]) -> None:
    """Each student its own copy of a shared input layer's weights: folding one task's input standardisation into
    them (`policykd.students.folding.fold`) must not fold it into the other tasks' too."""
    for student in students:
        layer = input_layer(student.policy)
        layer.weight = nn.Parameter(layer.weight.detach().clone())


def input_layer(policy: BasePolicy) -> nn.Linear:
    stack, linear = hidden_layers(policy)
    return cast(nn.Linear, stack[linear[0]])


def duplicated_params(policies: Sequence[BasePolicy]) -> int:
    """Parameters that appear in more than one policy (a shared trunk, shared input weights) counted once less for
    each further policy: the sum of the policies' acting parameters minus this is the multi-task student's."""
    seen: dict[int, tuple[int, int]] = {}
    for policy in policies:
        for param in policy.parameters():
            count, size = seen.get(id(param), (0, param.numel()))
            seen[id(param)] = (count + 1, size)
    return sum((count - 1) * size for count, size in seen.values())


def shares_trunk(students: Sequence[BaseAlgorithm]) -> bool:
    """Whether every student's trunk is the first one's very tensors."""
    first = [p for layer in trunk(students[0].policy) for p in layer.parameters()]
    return all(
        all(a is b for a, b in zip(first, (p for layer in trunk(s.policy) for p in layer.parameters())))
        for s in students[1:]
    )


def trunk_params(policy: BasePolicy) -> int:
    """Parameters in the shared layers of one task's student (counted once in a multi-task student)."""
    return sum(p.numel() for layer in trunk(policy) for p in layer.parameters())
