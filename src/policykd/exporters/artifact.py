"""An exported file (student.onnx, policy.c, libpolicy.so) loaded to act in the real env, for `evaluate`.

It is not a teacher (no distribution to label with), so it has its own small loader: the ONNX
file runs in onnxruntime on one thread; C source is compiled on the fly with the system `cc`
into a temporary shared library and called through ctypes, one observation at a time.
"""

from __future__ import annotations

import ctypes
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from gymnasium import spaces

from policykd.envs import EnvFactory, EnvOptions, check_env_id, env_factory
from policykd.errors import PolicykdError, option
from policykd.exporters.contract import read_contract, sensor_factory
from policykd.exporters.remembering import c_memory, onnx_memory
from policykd.sb3_models import describe_space

ARTIFACT_SUFFIXES = (".onnx", ".c", ".so")
C_FLAGS = ("-std=c99", "-O2", "-Wall", "-Werror", "-shared", "-fPIC")


def is_artifact(spec: str | Path) -> bool:
    return str(spec).endswith(ARTIFACT_SUFFIXES)


@dataclass
class Artifact:
    """An exported policy with what evaluate shows of it; `act` maps the observations `factory`'s envs emit (a
    contract's sensor view, or the raw env observation) to env actions, keeping a file's memory per episode
    (`policykd.exporters.remembering`)."""

    name: str
    algo: str
    acting_params: int
    factory: EnvFactory
    observation_space: spaces.Space
    act: Callable[[np.ndarray], np.ndarray]


def _factory(
    env_id: str, meta: dict[str, Any], path: Path, options: EnvOptions | None
) -> tuple[EnvFactory, spaces.Space, spaces.Space]:
    """The envs the file acts in: the env's own observations, or (a contract beside it) the sensor view it names;
    with the env options it was exported with, unless the caller's `options` name some."""
    saved = EnvOptions(meta.get("env_kwargs") or {}, tuple(meta.get("env_wrappers") or ()))
    options = options.with_saved(saved) if options is not None else saved
    check_env_id(env_id, options)
    stack = meta.get("frame_stack")  # null for an env without a frame stack (only Atari's has one)
    factory = env_factory(env_id, env_wrapper=meta.get("env_wrapper"), frame_stack=int(stack or 4), options=options)
    terms = read_contract(path, meta)
    if terms is not None:
        factory = sensor_factory(terms, factory, path)
    return (factory, *factory.spaces())


def _onnx(path: Path, env_id: str, env_options: EnvOptions | None) -> Artifact:
    import onnxruntime as ort

    from policykd.exporters.to_onnx import read_metadata

    try:
        meta = read_metadata(path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as err:  # protobuf / onnxruntime raise many types for a broken file
        raise PolicykdError(
            f"{path} is not a loadable ONNX model: {type(err).__name__}: {str(err).splitlines()[0]}"
        ) from None
    factory, obs_space, _ = _factory(env_id, meta, path, env_options)
    given = session.get_inputs()[0]
    if list(given.shape[1:]) != list(obs_space.shape or ()):
        raise PolicykdError(
            f"{path} takes observations of shape {given.shape[1:]}, but {env_id} emits {describe_space(obs_space)}"
        )
    dtype = {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(uint8)": np.uint8}.get(given.type)
    if dtype is None or "action" not in [o.name for o in session.get_outputs()]:
        raise PolicykdError(f"{path} is not a policykd export: it needs a float or uint8 input and an 'action' output")

    def act(obs: np.ndarray) -> np.ndarray:
        return session.run(["action"], {given.name: np.asarray(obs, dtype=dtype)})[0]

    stateful = [i.name for i in session.get_inputs()[1:]]
    return Artifact(
        str(path),
        meta.get("algo", "?") + " (onnx)",
        int(meta.get("acting_params", 0)),
        factory,
        obs_space,
        onnx_memory(session, dtype) if stateful else act,
    )


def compile_c(source: Path, library: Path) -> Path:
    """`cc -std=c99 -O2 -Wall -Werror -shared` of an exported policy.c; a failure is one line."""
    compiler = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if compiler is None:
        raise PolicykdError(f"no C compiler (cc, gcc or clang) on PATH to build {source}")
    done = subprocess.run([compiler, *C_FLAGS, "-o", str(library), str(source), "-lm"], capture_output=True, text=True)
    if done.returncode != 0:
        first = (done.stderr.strip().splitlines() or ["(no message)"])[0]
        raise PolicykdError(f"{source} does not compile with {compiler} {' '.join(C_FLAGS)}: {first}")
    return library


def _c(path: Path, env_id: str, env_options: EnvOptions | None) -> Artifact:
    from policykd.exporters.to_c import header_path, read_c_metadata

    named = header_path(path.with_name(path.stem.removeprefix("lib") + ".c"))  # policy_int8.c, libpolicy_int8.so
    header = named if named.is_file() else path.with_name("policy.h")
    meta = read_c_metadata(header)
    if path.suffix == ".c":
        with tempfile.TemporaryDirectory(prefix="policykd-c-") as folder:
            library = ctypes.CDLL(str(compile_c(path, Path(folder) / "libpolicy.so")))  # stays mapped once loaded
    else:
        try:
            library = ctypes.CDLL(str(path.resolve()))
        except OSError as err:
            raise PolicykdError(f"{path} is not a loadable shared library: {err}") from None
    if not hasattr(library, "policykd_act"):
        raise PolicykdError(f"{path} has no policykd_act function: export it with {option('format', 'c')}")
    factory, obs_space, action_space = _factory(env_id, meta, path, env_options)
    if not isinstance(obs_space, spaces.Box) or len(obs_space.shape) != 1:
        raise PolicykdError(f"{path} acts on flat observations, but {env_id} emits {describe_space(obs_space)}")
    declared = re.search(r"#define POLICYKD_OBS_DIM (\d+)", header.read_text()) if header.is_file() else None
    if declared and int(declared.group(1)) != obs_space.shape[0]:
        raise PolicykdError(
            f"{path} takes {declared.group(1)} observation values, but {env_id} emits {describe_space(obs_space)}"
        )
    discrete = isinstance(action_space, spaces.Discrete)
    shape = action_space.shape or ()
    act_dim = 1 if discrete else int(np.prod(shape))
    floats = ctypes.POINTER(ctypes.c_float)

    def act(obs: np.ndarray) -> np.ndarray:
        rows = np.ascontiguousarray(obs, dtype=np.float32).reshape(len(obs), -1)
        actions = np.zeros((len(rows), act_dim), dtype=np.float32)
        for row, action in zip(rows, actions):
            library.policykd_act(row.ctypes.data_as(floats), action.ctypes.data_as(floats))
        return actions[:, 0].astype(np.int64) if discrete else actions.reshape(len(rows), *shape)

    return Artifact(
        str(path),
        meta.get("algo", "?") + " (c)",
        int(meta.get("acting_params", 0)),
        factory,
        obs_space,
        c_memory(library, act) if hasattr(library, "policykd_state") else act,
    )


def load_artifact(path: str | Path, env_id: str, options: EnvOptions | None = None) -> Artifact:
    """An exported .onnx, .c (compiled here) or .so, ready to act in `env_id` (with `options`: `--env-kwargs` and
    `--env-wrapper`, else those it was exported with)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise PolicykdError(f"exported model not found: {path}")
    return _onnx(path, env_id, options) if path.suffix == ".onnx" else _c(path, env_id, options)
