"""What an exported student remembers between steps, and the ONNX graph that carries it as inputs and outputs.

A deployed robot feeds its policy one sensor reading per step. A student trained on a `history=K` view read the
last K readings side by side, and a RecurrentPPO student its LSTM state: both are memory that the artifact must
keep, since the robot's loop should not have to rebuild the student's view. ONNX has no state of its own, so the
memory is passed in and returned (`state` -> `state_out`, `h`/`c` -> `h_out`/`c_out`), and `reset` says where an
episode starts (the window is filled with that reading, the LSTM state zeroed), exactly as `policykd.views.History`
and sb3-contrib's `_process_sequence` do. C keeps the same memory in static variables (`policykd.exporters.c_memory`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch as th
from sb3_contrib.common.recurrent.policies import RecurrentActorCriticPolicy
from torch import nn

from policykd.errors import PolicykdError
from policykd.exporters.graph import ActingGraph
from policykd.exporters.source import ExportSource


@dataclass(frozen=True)
class Memory:
    """An exported student's inputs per step and the memory it keeps (none: a plain graph, input `obs` alone)."""

    sensors: int
    """d: entries of one sensor reading, what the artifact is fed each step."""
    history: int
    """K of the view's trailing `history=K` (1: none); the artifact keeps the K-1 readings before this one."""
    lstm_hidden: int
    """The actor LSTM's hidden size (0: not recurrent)."""

    @property
    def window(self) -> int:
        """Entries of the history state: the K-1 previous readings, oldest first."""
        return (self.history - 1) * self.sensors

    @property
    def stateful(self) -> bool:
        return self.history > 1 or self.lstm_hidden > 0

    @property
    def inputs(self) -> tuple[str, ...]:
        if not self.stateful:
            return ("obs",)
        return ("obs", *(("state",) if self.history > 1 else ()), *(("h", "c") if self.lstm_hidden else ()), "reset")

    @property
    def state_outputs(self) -> tuple[str, ...]:
        return (*(("state_out",) if self.history > 1 else ()), *(("h_out", "c_out") if self.lstm_hidden else ()))

    def state_sizes(self) -> dict[str, int]:
        """Each state input's entries per batch row (its output is the same name with `_out`)."""
        sizes = {"state": self.window} if self.history > 1 else {}
        return sizes | ({"h": self.lstm_hidden, "c": self.lstm_hidden} if self.lstm_hidden else {})


def memory_of(source: ExportSource) -> Memory:
    """The memory of the student in `source`: its view's trailing history and its actor LSTM, if any."""
    view = source.view
    space = source.student.observation_space
    history = view.history if view is not None else 1
    size = int(np.prod(space.shape or ()))
    lstm = actor_lstm(source)
    return Memory(size // history if history > 1 else size, history, lstm.hidden_size if lstm is not None else 0)


def actor_lstm(source: ExportSource) -> nn.LSTM | None:
    """A RecurrentPPO student's actor LSTM (one layer: what the C cell and the `h`/`c` inputs hold), else None."""
    policy = source.student.model.policy
    if not isinstance(policy, RecurrentActorCriticPolicy):
        return None
    lstm = policy.lstm_actor
    if lstm.num_layers != 1 or lstm.bidirectional or lstm.proj_size:
        raise PolicykdError(
            f"cannot export a recurrent student with a {lstm.num_layers}-layer"
            f"{' bidirectional' if lstm.bidirectional else ''} LSTM: one unidirectional layer (n_lstm_layers=1) only"
        )
    return lstm


class MemoryGraph(nn.Module):
    """(obs, [state], [h, c], reset) -> (the acting outputs..., [state_out], [h_out, c_out]): one step of a student
    with memory; `reset` [batch] is 1.0 where an episode starts with this reading, else 0.0."""

    def __init__(self, source: ExportSource, memory: Memory) -> None:
        super().__init__()
        self.acting = ActingGraph(source)
        self.memory = memory
        self.lstm = actor_lstm(source)

    @property
    def input_names(self) -> tuple[str, ...]:
        return self.memory.inputs

    @property
    def output_names(self) -> tuple[str, ...]:
        return (*self.acting.output_names, *self.memory.state_outputs)

    def forward(self, *inputs: th.Tensor) -> tuple[th.Tensor, ...]:
        given = dict(zip(self.memory.inputs, inputs))
        obs, reset = given["obs"], given["reset"].reshape(-1, 1)
        kept: list[th.Tensor] = []
        if self.memory.history > 1:  # views.History: shift in the reading; an episode's start fills the window with it
            window = th.where(reset > 0.5, obs.repeat(1, self.memory.history), th.cat([given["state"], obs], dim=1))
            kept.append(window[:, self.memory.sensors :])
            obs = window
        if self.lstm is None:
            return (*self.acting(obs), *kept)
        features = self.acting.actor_features(self.acting.normalized(obs))
        keep = 1.0 - reset.float()  # sb3-contrib's _process_sequence: the state times (1 - episode_start)
        state = ((given["h"] * keep)[None], (given["c"] * keep)[None])
        latent, (h, c) = self.lstm(features[None], state)
        return (*self.acting.actor_head(latent[0]), *kept, h[0], c[0])


def example_inputs(memory: Memory, obs: th.Tensor) -> tuple[th.Tensor, ...]:
    """Inputs of the right shapes and dtypes for tracing a batch of `obs` (its first rows starting episodes)."""
    batch = obs.shape[0]
    sizes = memory.state_sizes()
    named = {"obs": obs, "reset": th.tensor([1.0] + [0.0] * (batch - 1))}
    for name, size in sizes.items():
        named[name] = th.zeros(batch, size, dtype=obs.dtype if name == "state" else th.float32)
    return tuple(named[name] for name in memory.inputs)
