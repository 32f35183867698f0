"""An exported file with memory acting for several episodes side by side, as `policykd evaluate` runs them.

The file keeps one memory per call: ONNX takes it as inputs and returns it, C keeps it in a static struct. Evaluation
plays many episodes at once, in one batch whose rows leave as their episodes end, so each episode's memory is kept
here between steps and handed back to the file with its row (`reset` where an episode starts). This is the
`policykd.rollouts.Remembers` actor `run_episodes` tells which episode each row is.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

Memories = list[dict[str, np.ndarray] | None]
"""One memory per row: the file's state by input name, None where the row starts an episode."""
StepRows = Callable[[np.ndarray, Memories], tuple[np.ndarray, list[dict[str, np.ndarray]]]]


@dataclass
class Remembering:
    """Actions for rows of readings, each row's episode's memory kept between calls."""

    step_rows: StepRows
    memories: dict[int, dict[str, np.ndarray]] = field(default_factory=dict)
    rows: int | None = None

    def step(self, obs: np.ndarray, episodes: np.ndarray, starts: np.ndarray) -> np.ndarray:
        """`obs` rows of the given episodes; `starts`: where an episode starts with this reading."""
        given = [None if start else self.memories.get(int(e)) for e, start in zip(episodes, starts)]
        actions, kept = self.step_rows(np.asarray(obs), given)
        self.memories.update({int(e): memory for e, memory in zip(episodes, kept)})
        return actions

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        """Rows as the envs of one VecEnv (a rollout for scaling perturbations): every row starts an episode at the
        first call and when the number of rows changes (an env's automatic reset inside goes unseen)."""
        start = self.rows != len(obs)
        self.rows = len(obs)
        return self.step(obs, np.arange(len(obs)), np.full(len(obs), start))


def onnx_memory(session: Any, dtype: type) -> Remembering:
    """An onnxruntime session of a file with memory: inputs obs, its state inputs, reset; outputs action and the
    state inputs' names with `_out` (`policykd.exporters.memory`)."""
    types = {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(uint8)": np.uint8}
    states = {i.name: (int(i.shape[1]), types[i.type]) for i in session.get_inputs() if i.name not in ("obs", "reset")}
    outputs = ["action", *(f"{name}_out" for name in states)]

    def step_rows(obs: np.ndarray, memories: Memories) -> tuple[np.ndarray, list[dict[str, np.ndarray]]]:
        feeds = {"obs": obs.astype(dtype), "reset": np.array([m is None for m in memories], np.float32)}
        for name, (size, kind) in states.items():
            feeds[name] = np.stack([np.zeros(size, kind) if m is None else m[name] for m in memories])
        action, *kept = session.run(outputs, feeds)
        return action, [{name: kept[k][row] for k, name in enumerate(states)} for row in range(len(obs))]

    return Remembering(step_rows)


def c_memory(library: ctypes.CDLL, act: Callable[[np.ndarray], np.ndarray]) -> Remembering:
    """A compiled policy.c with memory: its static state (`policykd_state()`, `policykd_state_size()` bytes) put
    back before each row's `policykd_act` and saved after it; `policykd_reset()` where a row starts an episode."""
    library.policykd_state.restype = ctypes.c_void_p
    library.policykd_state_size.restype = ctypes.c_ulong
    pointer, size = library.policykd_state(), int(library.policykd_state_size())

    def step_rows(obs: np.ndarray, memories: Memories) -> tuple[np.ndarray, list[dict[str, np.ndarray]]]:
        actions, kept = [], []
        for row, memory in zip(obs, memories):
            if memory is None:
                library.policykd_reset()
            else:
                ctypes.memmove(pointer, memory["memory"].ctypes.data, size)
            actions.append(act(row[None]))
            saved = np.empty(size, np.uint8)
            ctypes.memmove(saved.ctypes.data, pointer, size)
            kept.append({"memory": saved})
        return np.concatenate(actions), kept

    return Remembering(step_rows)
