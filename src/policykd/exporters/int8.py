"""int8 exports: calibration observations from a short seeded rollout, and the ONNX file quantised by onnxruntime.

ONNX uses onnxruntime's *static* quantisation (QDQ, int8 weights per output channel, int8
activations calibrated by MinMax on the rollout's observations; the observation entering the
first layer int16, since one scale serves all its features). Dynamic quantisation does not
apply here: onnxruntime's dynamic registry quantises MatMul but not Gemm, and every Linear of the
exported graph is a Gemm, so `quantize_dynamic` returns the float model unchanged. Only Gemm,
MatMul and Conv are quantised, and not their outputs: normalisation and the action post-processing
(argmax, tanh + rescale, clip) stay in float, as in the float file. A CNN student's convolutions
hold most of its weights: quantising the Linears alone left the Pong student's file at 50 % of the
float one, with them 27 % (+13.70 against the float file's +14.70 over the summary's 20 episodes).

The C file's int8 (per-row int8 weights with float scales, float accumulation) is in `to_c`; it
needs no calibration, since its activations stay float.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from policykd.errors import PolicykdError, option
from policykd.exporters.source import ExportSource
from policykd.storage import atomic_write

CALIBRATION_STEPS = 128  # per env: 512 observations, a few episodes' worth of states, in about a second
CALIBRATION_ENVS = 4
QUANTISED = ("Gemm", "MatMul", "Conv")  # Linears and convolutions; normalisation and post-processing stay float
CALIBRATION_SEED = 1_000  # apart from the summary's evaluation seeds, so the returns int8 is judged on are unseen


def calibration_observations(
    source: ExportSource, steps: int = CALIBRATION_STEPS, n_envs: int = CALIBRATION_ENVS, seed: int = CALIBRATION_SEED
) -> np.ndarray:
    """Raw env observations from the student's own greedy rollout (the states it will meet), seeded."""
    from policykd.rollouts import normalizing, rollout_observations, student_actor

    student = source.student
    prepare = normalizing(student.normalizer)
    try:
        observations = rollout_observations(student_actor(student.model, prepare), student.factory, steps, n_envs, seed)
    except PolicykdError:
        raise
    except Exception as err:  # gymnasium, ale-py and MuJoCo raise many types
        raise PolicykdError(
            f"{option('int8')} cannot calibrate: no rollout of the student in {source.env_id} "
            f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})"
        ) from None
    if not np.isfinite(observations.astype(np.float64)).all():
        raise PolicykdError(
            f"{option('int8')} cannot calibrate: the rollout in {source.env_id} gave non-finite observations"
        )
    return observations


def write_int8_onnx(source: ExportSource, out: Path) -> Path:
    """`out` (atomically): calibrated first (a failed rollout writes nothing), then the float ONNX file written in a
    temporary folder and quantised into `out`."""
    import tempfile

    from policykd.exporters.to_onnx import write_onnx

    if source.has_contract:
        raise PolicykdError(
            f"{option('int8')} with {option('format', 'onnx')} is not supported for a student with a view or an LSTM "
            f"(its calibration rollout would need the sensor view and the memory): use {option('format', 'c')}"
        )
    observations = calibration_observations(source)
    with tempfile.TemporaryDirectory(prefix="policykd-export-") as folder:
        float_path = write_onnx(source, Path(folder) / "float.onnx")
        return atomic_write(out, lambda tmp: quantize_onnx(float_path, tmp, observations))


def _reader(name: str, observations: np.ndarray, dtype: type, batch: int = 64):
    """onnxruntime's CalibrationDataReader over an observation array, 64 at a time, in the graph's input dtype."""
    from onnxruntime.quantization import CalibrationDataReader

    class Batches(CalibrationDataReader):
        def __init__(self) -> None:
            self._feeds: Iterator[dict[str, np.ndarray]] = iter(
                [{name: observations[i : i + batch].astype(dtype)} for i in range(0, len(observations), batch)]
            )

        def get_next(self) -> dict | None:
            return next(self._feeds, None)

    return Batches()


def quantize_onnx(float_path: Path, out: Path, observations: np.ndarray) -> None:
    """Static int8 (QDQ) of the float ONNX file at `float_path`, written to `out`, its metadata kept and marked int8."""
    import json

    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    from policykd.exporters.to_onnx import METADATA_KEY

    float_model = onnx.load(str(float_path))
    (given,) = float_model.graph.input
    to_quantize = _equalize_columns(onnx.load(str(float_path)))
    dtype = {onnx.TensorProto.FLOAT: np.float32, onnx.TensorProto.DOUBLE: np.float64, onnx.TensorProto.UINT8: np.uint8}[
        given.type.tensor_type.elem_type
    ]
    reader = _reader(given.name, observations, dtype)
    quiet = logging.getLogger().level
    logging.getLogger().setLevel(logging.ERROR)  # the quantiser's advice to run its pre-processing first
    try:
        quantize_static(
            to_quantize,
            str(out),
            reader,
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(QUANTISED),
            per_channel=True,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            extra_options={
                "OpTypesToExcludeOutputQuantization": list(QUANTISED),
                "TensorQuantOverrides": _input_overrides(to_quantize),
            },
        )
    finally:
        logging.getLogger().setLevel(quiet)
    model = _short_names(onnx.load(str(out)))
    props = {p.key: p.value for p in float_model.metadata_props}
    meta = json.loads(props.get(METADATA_KEY, "{}"))
    meta.update(
        int8="onnxruntime static QDQ: int8 weights per output channel, int8 activations into each Linear "
        "and convolution (the first one's int16), MinMax-calibrated on a rollout; outputs and post-processing float",
        calibration_observations=len(observations),
    )
    props.update({METADATA_KEY: json.dumps(meta), "int8": meta["int8"]})
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, props)
    model.producer_name = "policykd"
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(out))


def _short_names(model):
    """Inner tensors and nodes renamed t0, t1, n0...: the quantiser's long generated names were over half of a small
    student's file. The input and output names, which users feed and fetch, stay."""
    graph = model.graph
    keep = {value.name for value in (*graph.input, *graph.output)}
    names: dict[str, str] = {}

    def short(name: str) -> str:
        return name if not name or name in keep else names.setdefault(name, f"t{len(names)}")

    for tensor in graph.initializer:
        tensor.name = short(tensor.name)
    for index, node in enumerate(graph.node):
        node.input[:] = [short(name) for name in node.input]
        node.output[:] = [short(name) for name in node.output]
        node.name = f"n{index}"
    del graph.value_info[:]
    return model


def _input_overrides(model) -> dict:
    """The first layer's input (the observation, after normalisation if any) in int16: one scale is shared by every
    observation feature, and a velocity's range in int8 steps would erase an angle's."""
    from onnxruntime.quantization import QuantType

    first = next(node for node in model.graph.node if node.op_type in QUANTISED)
    return {first.input[0]: [{"quant_type": QuantType.QInt16}]}


def _equalize_columns(model):
    """The first Linear's weight columns divided by their largest |weight|, the observation multiplied by it first
    (a float Mul): the same function, but each row's one int8 scale no longer rounds away the weights of large-valued
    inputs (as `to_c.column_scales`). Only the first: the observation is where input scales differ (HalfCheetah's
    angles and velocities; mean action error 0.13 -> 0.008), and each further Mul is file size for <= 0.002."""
    from onnx import numpy_helper

    graph = model.graph
    weights = {tensor.name: tensor for tensor in graph.initializer}
    index, node = next((i, n) for i, n in enumerate(graph.node) if n.op_type in QUANTISED)
    trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
    if node.op_type != "Gemm" or node.input[1] not in weights or trans_b != 1:
        return model
    from policykd.exporters.to_c import column_scales

    w = numpy_helper.to_array(weights[node.input[1]])
    columns = column_scales(w)
    weights[node.input[1]].CopyFrom(numpy_helper.from_array((w / columns).astype(w.dtype), node.input[1]))
    graph.initializer.append(numpy_helper.from_array(columns.astype(w.dtype), "columns"))
    graph.node.insert(index, onnx_node("Mul", [node.input[0], "columns"], ["scaled_obs"]))
    node.input[0] = "scaled_obs"
    return model


def onnx_node(op: str, inputs: list[str], outputs: list[str]):
    from onnx import helper

    return helper.make_node(op, inputs, outputs)
