"""Student families: how each SB3 algorithm a student can be saved as is built (`policykd.registry.STUDENT_FAMILIES`
names these). A family is the SB3 class, the action spaces it can act in, and its constructor arguments for a given
hidden size; a new family (sb3-contrib's RecurrentPPO, say) is a new `Family` and one registry line."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from gymnasium import spaces
from sb3_contrib import RecurrentPPO
from stable_baselines3 import A2C, DQN, PPO, SAC, TD3
from stable_baselines3.common.base_class import BaseAlgorithm

KwargsFn = Callable[[list[int], float, Mapping[str, object]], dict[str, Any]]
"""(hidden sizes, learning rate, features-extractor kwargs) -> the SB3 constructor's keyword arguments."""


@dataclass(frozen=True)
class Family:
    algo: type[BaseAlgorithm]
    kwargs: KwargsFn
    action_space: type[spaces.Space] | None = None
    """The action space kind it needs (None: any)."""
    image_buffer_size: int | None = None
    """Replay size for image students, where the default would allocate GBs of frames."""
    depth: int = 2
    """How many sizes the default (budget-sized) arch has, all the same width (`policykd.students.build.auto_arch`)."""
    recurrent: bool = False
    """The policy keeps a state (an LSTM): it trains on sequences and acts with a state per episode."""
    images: bool = True
    """It can read image observations (with policykd's small CNN)."""
    unsupported: tuple[str, ...] = ()
    """Settings (DistillSettings field names) a student of this family cannot be distilled with: refused before work."""


def _actor_critic(hidden: list[int], learning_rate: float, extractor: Mapping[str, object]) -> dict[str, Any]:
    return {"policy_kwargs": {"net_arch": {"pi": hidden, "vf": hidden}, **extractor}, "learning_rate": learning_rate}


def _q_network(hidden: list[int], learning_rate: float, extractor: Mapping[str, object]) -> dict[str, Any]:
    # A distilled Q-network should not restart from epsilon = 1 when RL continues.
    return {
        "policy_kwargs": {"net_arch": hidden, **extractor},
        "buffer_size": 50_000,
        "exploration_initial_eps": 0.05,
        "exploration_final_eps": 0.05,
        "learning_rate": learning_rate,
    }


def _actor_and_critics(hidden: list[int], learning_rate: float, extractor: Mapping[str, object]) -> dict[str, Any]:
    # The critics stay rl-zoo sized: they only matter when RL continues, and they are not part of the acting net.
    return {
        "policy_kwargs": {"net_arch": {"pi": hidden, "qf": [256, 256]}, **extractor},
        "buffer_size": 100_000,
        "learning_rate": learning_rate,
    }


def _lstm(hidden: list[int], learning_rate: float, extractor: Mapping[str, object]) -> dict[str, Any]:
    """`H` or `H,a,b,...`: an LSTM of H units, then the heads' hidden layers a, b, ... (none by default: the action and
    value heads read the LSTM). The critic reads the actor's LSTM (sb3-contrib's `shared_lstm`, without its gradient):
    one LSTM to run while distilling and to export (the value head is not distilled: `policykd.run.train._outputs`)."""
    size, net = hidden[0], hidden[1:]
    return {
        "policy_kwargs": {
            "lstm_hidden_size": size,
            "n_lstm_layers": 1,
            "shared_lstm": True,
            "enable_critic_lstm": False,
            "net_arch": {"pi": net, "vf": net},
            **extractor,
        },
        "learning_rate": learning_rate,
    }


ppo = Family(PPO, _actor_critic)
a2c = Family(A2C, _actor_critic)
dqn = Family(DQN, _q_network, spaces.Discrete, image_buffer_size=10_000)
sac = Family(SAC, _actor_and_critics, spaces.Box)
td3 = Family(TD3, _actor_and_critics, spaces.Box)
recurrent_ppo = Family(
    RecurrentPPO,
    _lstm,
    depth=1,
    recurrent=True,
    images=False,
    # each of these reads the student one state at a time (or its buffer rows out of order), not a sequence
    unsupported=(
        "rl_steps",
        "hint_weight",
        "relation_weight",
        "augment",
        "dataset",
        "stages",
        "init_student",
        "prune_to",
    ),
)
