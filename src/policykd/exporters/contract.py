"""contract.json: what the robot must feed an exported student, written beside the file for a student with a view
or memory (a plain student's file takes the env's observation, as its metadata says).

The file keeps the student's history window and LSTM state itself, but the sensor model it was trained with is the
robot's: which env entries its sensors are (mask views), their noise and latency (`noise=`, `delay=`), the rate they
arrive at. The contract writes these down, with the action space and the memory's sizes, so that the robot's side
can be checked against them; `policykd evaluate` checks the env against it before running and feeds the file the
same seeded sensor view distill evaluated the student on (`sensor_factory`).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
from gymnasium import spaces

from policykd.envs import EnvFactory
from policykd.errors import PolicykdError
from policykd.exporters.memory import Memory, memory_of
from policykd.exporters.source import ExportSource
from policykd.sb3_models import describe_space
from policykd.storage import atomic_write_text
from policykd.views import (
    Delay,
    Function,
    History,
    Mask,
    Noise,
    Probe,
    Ram,
    Stage,
    View,
    named_groups,
    probe,
    view_for,
    with_view,
)

CONTRACT = "contract.json"
VERSION = 1


def write_contract(source: ExportSource, artifact: Path) -> Path:
    """contract.json beside `artifact` (atomically), for every export: what a deployment must feed the file (the
    sensor layout, its memory, its rate) and what `evaluate` checks against the env before it runs the file."""
    return atomic_write_text(artifact.parent / CONTRACT, json.dumps(contract(source), indent=2) + "\n")


def contract(source: ExportSource) -> dict[str, object]:
    """The contract of `source`'s student, JSON-ready (no path of this machine)."""
    factory, view, memory = source.student.factory, source.view, memory_of(source)
    first, _ = probe(dataclasses.replace(factory, view=None))  # the env's own observation, before the view
    space = source.input_space
    stages = view.sensors().stages if view is not None else ()
    facts: dict[str, object] = {"producer": "policykd", "version": VERSION, "env_id": factory.env_id}
    if factory.env_kwargs:
        facts["env_kwargs"] = dict(factory.env_kwargs)
    if factory.env_wrapper:
        facts["env_wrapper"] = factory.env_wrapper
    if factory.wrappers:
        facts["env_wrappers"] = list(factory.wrappers)
    facts["student_obs"] = list(view.specs) if view is not None else []
    facts["sensors"] = {
        "size": memory.sensors,
        "dtype": str(space.dtype),
        "low": _floats(getattr(space, "low", [])),
        "high": _floats(getattr(space, "high", [])),
        "entries": _entries(first, stages),
    }
    facts["history"] = memory.history
    facts["sensor_model"] = _sensor_model(stages)
    facts["action"] = _action(source.student.action_space)
    facts.update(_rate(first.env))
    facts["lstm"] = _lstm(memory)
    facts["interface"] = _interface(memory, str(space.dtype), source.student.action_space)
    return facts


def _floats(values: Any) -> list[float | None]:
    """JSON numbers, null for an unbounded entry (JSON has no infinity)."""
    return [float(v) if np.isfinite(v) else None for v in np.asarray(values, dtype=np.float64).ravel()]


def _entries(env: Probe, stages: tuple[Stage, ...]) -> list[dict[str, object]]:
    """Each sensor entry's env observation index (null where a stage computes it) and name, where known (MuJoCo's
    `positions[j]` and `velocities[j]`, an env's `observation_groups`), followed through the view's stages."""
    size = int(env.obs.size)
    names: dict[int, str] = {}
    for group, indices in named_groups(env).items():
        names.update({i: f"{group}[{j}]" for j, i in enumerate(indices)})
    flat = env.obs.ndim == 1  # an image's pixels are not listed: its layout is the image
    entries: list[tuple[int | None, str | None]] = [(i, names.get(i)) for i in range(size)] if flat else []
    for stage in stages:
        if isinstance(stage, Mask):
            entries = [entries[i] for i in stage.keep(len(entries))]
        elif isinstance(stage, History):
            entries = [
                (i, f"t-{stage.k - 1 - j}:{name}" if name else None) for j in range(stage.k) for i, name in entries
            ]
        elif isinstance(stage, Ram):
            entries = [(None, f"ram[{i}]") for i in range(128)]
        elif isinstance(stage, Function):
            entries = [(None, f"{stage.spec}[{i}]") for i in range(int(np.prod(stage.shape)))]
        elif not isinstance(stage, (Noise, Delay)):  # a user's registered stage: what it computes is its own
            width = int(np.prod(stage.space(spaces.Box(-np.inf, np.inf, (len(entries),))).shape))
            entries = entries if width == len(entries) else [(None, None)] * width
    return [{"index": k, "env_index": i, "name": name} for k, (i, name) in enumerate(entries)]


def _sensor_model(stages: tuple[Stage, ...]) -> dict[str, object]:
    """The noise and latency the student was trained with: the robot's sensors have their own, so they are not
    inside the file (several noise stages add up as independent Gaussians)."""
    sigmas = [s.sigma for s in stages if isinstance(s, Noise)]
    return {
        "noise_sigma": float(np.sqrt(np.sum(np.square(sigmas)))) if sigmas else None,
        "delay_steps": int(sum(s.k for s in stages if isinstance(s, Delay))),
        "stages": [s.spec for s in stages],
        "inside_the_file": False,
    }


def _action(space: spaces.Space) -> dict[str, object]:
    if isinstance(space, spaces.Discrete):
        return {"space": describe_space(space), "n": int(space.n), "start": int(space.start)}
    if isinstance(space, spaces.Box):
        return {"space": describe_space(space), "low": _floats(space.low), "high": _floats(space.high)}
    return {"space": describe_space(space)}


def _rate(env: object) -> dict[str, object]:
    """The policy's step rate: MuJoCo's `dt` (frame skip x timestep), else the env's `render_fps` (null if neither)."""
    dt = getattr(env, "dt", None)
    if isinstance(dt, (int, float)) and dt > 0:
        return {"rate_hz": 1.0 / float(dt), "dt": float(dt), "rate_from": "env.unwrapped.dt"}
    fps = (getattr(env, "metadata", None) or {}).get("render_fps")
    if isinstance(fps, (int, float)) and fps > 0:
        return {"rate_hz": float(fps), "dt": 1.0 / float(fps), "rate_from": 'env.metadata["render_fps"]'}
    return {"rate_hz": None, "dt": None, "rate_from": None}


def _lstm(memory: Memory) -> dict[str, object] | None:
    if not memory.lstm_hidden:
        return None
    return {
        "hidden_size": memory.lstm_hidden,
        "layers": 1,
        "state": {"h": memory.lstm_hidden, "c": memory.lstm_hidden},
        "gates": "i, f, g, o (torch.nn.LSTM)",
    }


def _interface(memory: Memory, dtype: str, action_space: spaces.Space) -> dict[str, object]:
    """How each format takes the reading and keeps the memory (docs/export.md)."""
    act_dim = 1 if isinstance(action_space, spaces.Discrete) else int(np.prod(action_space.shape or ()))
    onnx: dict[str, Any] = {"obs": [memory.sensors, dtype]}
    for name, size in memory.state_sizes().items():
        onnx[name] = [size, dtype if name == "state" else "float32"]
    if memory.stateful:
        onnx["reset"] = [None, "float32"]
    c = {
        "act": f"void policykd_act(const float obs[{memory.sensors}], float action[{act_dim}])",
        "reset": "void policykd_reset(void)",
        "state": "void *policykd_state(void), unsigned long policykd_state_size(void)",
    }
    return {
        "onnx_inputs": {
            k: {"shape": ["batch", *([v[0]] if v[0] is not None else [])], "dtype": v[1]} for k, v in onnx.items()
        },
        "onnx_state_outputs": [f"{name}_out" for name in memory.state_sizes()],
        "reset": "1.0 where an episode starts with this reading (the window filled with it, the LSTM state zeroed)",
        "c": c,
    }


def read_contract(artifact: Path, meta: dict[str, Any]) -> dict[str, Any] | None:
    """contract.json beside `artifact`: None for a plain student's file; one line when the file says it has one and
    it is missing or broken."""
    path = artifact.parent / CONTRACT
    if not meta.get("contract"):
        return None
    if not path.is_file():
        raise PolicykdError(f"{artifact} acts on a student view or keeps memory, but no {CONTRACT} is beside it")
    try:
        value = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise PolicykdError(f"{path} is not valid JSON ({err.msg}, line {err.lineno})") from None
    if not isinstance(value, dict) or value.get("producer") != "policykd" or "sensors" not in value:
        raise PolicykdError(f"{path} is not a policykd contract")
    return value


def sensor_factory(terms: dict[str, Any], factory: EnvFactory, artifact: Path) -> EnvFactory:
    """The envs `factory` makes as the contract's sensors see them (its view without the trailing history; noise
    and delay applied with the same seeds as distill's evaluation); a mismatch with the contract is one line."""
    specs = list(terms.get("student_obs") or [])
    view: View | None = view_for(factory, specs)
    sensors = view.sensors() if view is not None else None
    factory = with_view(factory, sensors if sensors is not None and sensors.stages else None)
    obs_space, action_space = factory.spaces()
    size, want, env_id = int(np.prod(obs_space.shape or ())), int(terms["sensors"]["size"]), factory.env_id
    if size != want:
        seen = f" seen through {' '.join(specs)}" if specs else ""
        raise PolicykdError(
            f"{artifact.name}'s {CONTRACT} expects {want} sensor entries, but {env_id}{seen} gives {size}"
        )
    saved = terms.get("action", {}).get("space")
    if saved != describe_space(action_space):
        raise PolicykdError(
            f"{artifact.name}'s {CONTRACT} acts in {saved}, but {env_id}'s actions are {describe_space(action_space)}"
        )
    return factory
