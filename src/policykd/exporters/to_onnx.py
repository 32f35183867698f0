"""The acting graph as an ONNX file: opset 17, a dynamic batch dimension, checked, with metadata.

torch's TorchScript exporter (`dynamo=False`) is used: it needs only `onnx`, where the default
dynamo exporter would also need `onnxscript`, and it handles these small static graphs exactly.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import torch as th

from policykd.exporters.graph import ActingGraph
from policykd.exporters.memory import MemoryGraph, example_inputs, memory_of
from policykd.exporters.source import ExportSource
from policykd.storage import atomic_write

OPSET = 17
METADATA_KEY = "policykd"  # the full metadata as JSON; the main facts also have keys of their own


def write_onnx(source: ExportSource, out: Path) -> Path:
    """`out` (atomically): the student's `predict(deterministic=True)` as ONNX, input `obs`; a student with memory
    (a view's history, an LSTM) also takes and returns its state, and `reset` (`policykd.exporters.memory`)."""
    import onnx

    memory = memory_of(source)
    graph: ActingGraph | MemoryGraph = MemoryGraph(source, memory) if memory.stateful else ActingGraph(source)
    graph.eval()
    space = source.input_space
    obs = th.as_tensor(np.stack([space.sample(), space.sample()]))  # the env's own dtype: float32/64 or uint8
    example = example_inputs(memory, obs)
    inputs, names = memory.inputs, graph.output_names
    dynamic = {name: {0: "batch"} for name in (*inputs, *names)}

    def export(path: Path) -> None:
        with warnings.catch_warnings(), th.no_grad():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
            th.onnx.export(
                graph,
                example,
                str(path),
                dynamo=False,
                opset_version=OPSET,
                input_names=list(inputs),
                output_names=list(names),
                dynamic_axes=dynamic,
            )
        model = onnx.load(str(path))
        onnx.checker.check_model(model, full_check=True)
        meta = source.metadata()
        meta["outputs"] = list(names)
        if memory.stateful:
            meta["inputs"] = list(inputs)
            meta["state_sizes"] = memory.state_sizes()
        entries = {METADATA_KEY: json.dumps(meta)}
        entries.update(
            {
                k: _text(meta[k])
                for k in (
                    "env_id",
                    "algo",
                    "observation_layout",
                    "observation_space",
                    "action_space",
                    "env_wrapper",
                    "teachers",
                    "student_return_mean",
                    "teacher_return_mean",
                )
                if k in meta
            }
        )
        onnx.helper.set_model_props(model, entries)
        model.producer_name = "policykd"
        onnx.save(model, str(path))

    return atomic_write(out, export)


def _text(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def read_metadata(path: Path) -> dict:
    """The policykd metadata of an exported ONNX file (empty if it has none)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    props = {p.key: p.value for p in model.metadata_props}
    return json.loads(props[METADATA_KEY]) if METADATA_KEY in props else {}
