"""An MLP student as one self-contained C file pair: policy.h declares, policy.c acts.

`policykd_act(obs, action)` does what the ONNX graph does for one observation: VecNormalize in
double (as numpy does it), the layers in float with `static const float` weights, then argmax,
tanh + rescale, rescale or clip. Only libm is needed; it compiles with `-std=c99 -Wall -Werror`.
policy.h also carries the metadata as one JSON comment line, which `policykd evaluate` reads.

int8 (`policy_int8.c`): each layer's weights as `static const int8_t`, symmetric per output
channel with one float scale per row, after each input column is divided by its largest weight
(a float per column, applied to the input once); the dot product runs on float activations and is
scaled once per output. Weights shrink 4x and no calibration is needed, because no activation is
quantised (a microcontroller without an FPU would want int32 accumulation on int8 activations:
not built).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from gymnasium import spaces
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.torch_layers import FlattenExtractor
from stable_baselines3.dqn.policies import DQNPolicy
from stable_baselines3.sac.policies import SACPolicy
from stable_baselines3.td3.policies import TD3Policy
from torch import nn

from policykd.errors import PolicykdError, option
from policykd.exporters.c_memory import MemoryCode, memory_code
from policykd.exporters.graph import head_kind
from policykd.exporters.memory import actor_lstm, memory_of
from policykd.exporters.source import ExportSource
from policykd.sb3_models import uses_images
from policykd.storage import atomic_write_text

META_PREFIX = "/* policykd-metadata: "
ACTIVATIONS = {
    nn.Tanh: "tanhf(v)",
    nn.ReLU: "(v > 0.0f ? v : 0.0f)",
    nn.ELU: "(v > 0.0f ? v : expm1f(v))",
    nn.Sigmoid: "1.0f / (1.0f + expf(-v))",
    nn.SiLU: "v / (1.0f + expf(-v))",
}


def _actor_layers(source: ExportSource) -> list[nn.Module]:
    """The actor's modules in order, from the (flat) observation to the head's output (`head_kind` admitted the
    policy: one of these four classes)."""
    policy = source.student.model.policy
    extractor: nn.Module
    if isinstance(policy, ActorCriticPolicy):
        extractor, body, head = policy.pi_features_extractor, policy.mlp_extractor.policy_net, [policy.action_net]
    elif isinstance(policy, DQNPolicy):
        extractor, body, head = policy.q_net.features_extractor, policy.q_net.q_net, []
    elif isinstance(policy, SACPolicy):
        extractor, body, head = policy.actor.features_extractor, policy.actor.latent_pi, [policy.actor.mu]
    else:
        assert isinstance(policy, TD3Policy)
        extractor, body, head = policy.actor.features_extractor, policy.actor.mu, []
    if not isinstance(extractor, FlattenExtractor):
        raise PolicykdError(f"C export supports MLP students only, not a {type(extractor).__name__} features extractor")
    return [*body, *head]


def _array(name: str, values: np.ndarray, ctype: str = "float") -> str:
    if ctype == "int8_t":
        return f"static const int8_t {name}[{values.size}] = {{{', '.join(str(int(v)) for v in np.asarray(values).ravel())}}};\n"
    suffix = "f" if ctype == "float" else ""  # %e always has the point or exponent a float suffix needs
    flat = ", ".join(
        f"{float(v):.9e}{suffix}" if np.isfinite(v) else "-INFINITY" if v < 0 else "INFINITY"
        for v in np.asarray(values).ravel()
    )
    return f"static const {ctype} {name}[{values.size}] = {{{flat}}};\n"


def column_scales(w: np.ndarray) -> np.ndarray:
    """Each input column's largest |weight|: dividing it out first keeps a row's one scale from being set by the
    weights of small-valued inputs (HalfCheetah's angles) and rounding away those of large ones (its velocities,
    ±20): measured on the default HalfCheetah student, mean action error 0.13 without, 0.006 with."""
    scale = np.abs(w).max(axis=0)
    return np.where(scale > 0, scale, 1.0).astype(np.float32)


def quantize_rows(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 per output channel (row): w ~ scale[:, None] * q, q in [-127, 127]."""
    scale = np.abs(w).max(axis=1) / 127.0
    scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
    return np.clip(np.rint(w / scale[:, None]), -127, 127).astype(np.int8), scale


def _layer_code(layers: Iterable[nn.Module], obs_dim: int, int8: bool = False) -> tuple[str, str, int]:
    """(weight arrays, the statements of the forward pass, the output width)."""
    arrays, code, width, index = [], [], obs_dim, 0
    for module in layers:
        if isinstance(module, nn.Linear):
            w = module.weight.detach().cpu().numpy().astype(np.float32)
            b = module.bias.detach().cpu().numpy().astype(np.float32)
            if int8:
                columns = column_scales(w)
                q, scale = quantize_rows(w / columns)
                arrays += [
                    _array(f"W{index}", q, "int8_t"),
                    _array(f"S{index}", scale),
                    _array(f"C{index}", columns),
                    _array(f"B{index}", b),
                ]
                code.append(
                    f"    linear_q(W{index}, S{index}, C{index}, B{index}, x, {width}, y, {w.shape[0]}); swap(&x, &y);"
                )
            else:
                arrays += [_array(f"W{index}", w), _array(f"B{index}", b)]
                code.append(f"    linear(W{index}, B{index}, x, {width}, y, {w.shape[0]}); swap(&x, &y);")
            width, index = w.shape[0], index + 1
        elif type(module) in ACTIVATIONS:
            code.append(f"    for (i = 0; i < {width}; ++i) {{ float v = x[i]; x[i] = {ACTIVATIONS[type(module)]}; }}")
        elif not isinstance(module, (nn.Identity, nn.Flatten)):
            raise PolicykdError(f"C export does not know the layer {type(module).__name__}")
    return "".join(arrays), "\n".join(code), width


def _post(kind: str, space: spaces.Space, width: int) -> tuple[str, str]:
    """(bound arrays, the statements that turn the head's output x into the env action)."""
    if not isinstance(space, spaces.Box):  # logits or Q-values of a Discrete space
        return "", (
            f"    best = 0;\n    for (i = 1; i < {width}; ++i) if (x[i] > x[best]) best = i;\n"
            "    action[0] = (float)best;"
        )
    bounds = _array("LOW", space.low.astype(np.float32)) + _array("HIGH", space.high.astype(np.float32))
    if kind == "gaussian":
        body = "x[i] < LOW[i] ? LOW[i] : (x[i] > HIGH[i] ? HIGH[i] : x[i])"
    else:
        squashed = "tanhf(x[i])" if kind == "squashed" else "x[i]"
        body = f"LOW[i] + 0.5f * ({squashed} + 1.0f) * (HIGH[i] - LOW[i])"
    return bounds, f"    for (i = 0; i < POLICYKD_ACT_DIM; ++i) action[i] = {body};"


def _normalizer_code(source: ExportSource, obs_dim: int, given: str = "obs") -> tuple[str, str]:
    """(the statistics as double arrays, the statements that normalise `given` into x), as VecNormalize in numpy."""
    norm = source.obs_normalization()
    if norm is None:
        return "", f"    for (i = 0; i < {obs_dim}; ++i) x[i] = {given}[i];"
    arrays = (
        f"static const double OBS_MEAN[{obs_dim}] = {{{', '.join(f'{v:.17g}' for v in norm.mean)}}};\n"
        f"static const double OBS_STD[{obs_dim}] = {{{', '.join(f'{v:.17g}' for v in norm.std)}}};\n"
    )
    clip = f"{norm.clip:.17g}"
    code = (
        f"    for (i = 0; i < {obs_dim}; ++i) {{\n"
        f"        double v = ((double){given}[i] - OBS_MEAN[i]) / OBS_STD[i];\n"
        f"        x[i] = (float)(v < -{clip} ? -{clip} : (v > {clip} ? {clip} : v));\n    }}"
    )
    return arrays, code


LINEAR = """static void linear(const float *w, const float *b, const float *in, int n_in, float *out, int n_out) {
    int i, j;
    for (j = 0; j < n_out; ++j) {
        float sum = b[j];
        const float *row = w + j * n_in;
        for (i = 0; i < n_in; ++i) sum += row[i] * in[i];
        out[j] = sum;
    }
}
"""
LINEAR_Q = """/* w[j][i] ~ s[j] * q[j][i] * c[i]: int8 weights, a float scale per output row and per input column;
   the inputs are scaled by c once, each row's sum is in float and scaled by s once. */
static void linear_q(const int8_t *w, const float *s, const float *c, const float *b, const float *in, int n_in,
                     float *out, int n_out) {
    float scaled[MAX_WIDTH];
    int i, j;
    for (i = 0; i < n_in; ++i) scaled[i] = in[i] * c[i];
    for (j = 0; j < n_out; ++j) {
        float sum = 0.0f;
        const int8_t *row = w + j * n_in;
        for (i = 0; i < n_in; ++i) sum += (float)row[i] * scaled[i];
        out[j] = b[j] + s[j] * sum;
    }
}
"""


def c_sources(source: ExportSource, int8: bool = False, header_name: str = "policy.h") -> tuple[str, str]:
    """(policy.h, policy.c) for an MLP student; a CNN or an unsupported policy is one PolicykdError line. A student
    with a view or an LSTM takes one sensor reading per call and keeps its memory (`policykd.exporters.c_memory`)."""
    obs_space, space = source.student.observation_space, source.student.action_space
    if uses_images(obs_space) or not isinstance(obs_space, spaces.Box) or len(obs_space.shape) != 1:
        raise PolicykdError(
            f"{option('format', 'c')} exports MLP students on flat observations only, not {obs_space}: "
            f"use {option('format', 'onnx')}"
        )
    kind = head_kind(source.student.algo, source.student.model.policy, space)
    layers = _actor_layers(source)
    memory, lstm = memory_of(source), actor_lstm(source)
    mem = memory_code(memory, lstm, _array) if source.has_contract else None
    obs_dim = int(obs_space.shape[0])  # the student's observation: K readings side by side with a history
    body_in = lstm.hidden_size if lstm is not None else obs_dim
    act_dim = 1 if isinstance(space, spaces.Discrete) else int(np.prod(space.shape or ()))
    widths = [obs_dim, body_in] + [m.out_features for m in layers if isinstance(m, nn.Linear)]
    norm_arrays, norm_code = _normalizer_code(source, obs_dim, "obs" if mem is None else "in")
    weights, forward, width = _layer_code(layers, body_in, int8)
    bounds, post = _post(kind, space, width)
    facts = {**source.metadata(input_dtype="float32", batched=False), "format": "c"}  # policykd_act takes `const float`
    if int8:
        facts["int8"] = "int8 weights with float scales per output row and per input column; float activations" + (
            " (the LSTM's weights stay float)" if lstm is not None else ""
        )
    discrete = act_dim == 1 and kind in ("logits", "q_values")
    header = _header(facts, memory.sensors if mem is not None else obs_dim, act_dim, discrete, mem)
    made_from = f"{source.path.name} ({source.student.algo.upper()}, {source.env_id}{', int8 weights' if int8 else ''})"
    linear = (LINEAR_Q + ("\n" + LINEAR if lstm is not None else "")) if int8 else LINEAR
    body = f"""/* Generated by policykd from {made_from}; libm only. */
#include <math.h>
{"#include <stdint.h>" + chr(10) if int8 else ""}#include "{header_name}"

#define MAX_WIDTH {max(widths)}

{norm_arrays}{weights}{bounds}
{linear}
static void swap(float **a, float **b) {{ float *t = *a; *a = *b; *b = t; }}
{"" if mem is None else chr(10) + mem.statics}
void policykd_act(const float obs[POLICYKD_OBS_DIM], float action[POLICYKD_ACT_DIM]) {{
    float buffer_a[MAX_WIDTH], buffer_b[MAX_WIDTH];
    float *x = buffer_a, *y = buffer_b;
{"" if mem is None else mem.locals}    int i{", best" if kind in ("logits", "q_values") else ""};
{"" if mem is None else mem.window + chr(10)}{norm_code}
{"" if mem is None or not mem.lstm else mem.lstm + chr(10)}{forward}
{post}
}}
"""
    return header, body


def _header(facts: dict, obs_dim: int, act_dim: int, discrete: bool, mem: MemoryCode | None) -> str:
    """policy.h: the metadata line, the sizes and the declarations (with memory: policykd_reset and the state's)."""
    meta = json.dumps(facts).replace("*/", "* /")
    return f"""{META_PREFIX}{meta} */
/* The distilled student's predict(deterministic=True), generated by policykd: observation
   normalisation, the network and the action post-processing are all inside policykd_act. */
#ifndef POLICYKD_POLICY_H
#define POLICYKD_POLICY_H

#define POLICYKD_OBS_DIM {obs_dim}
#define POLICYKD_ACT_DIM {act_dim}
/* obs: {facts["observation_layout"]}. */
{"/* Discrete actions: action[0] holds the chosen index as a float. */" if discrete else ""}
{mem.header if mem is not None else ""}void policykd_act(const float obs[POLICYKD_OBS_DIM], float action[POLICYKD_ACT_DIM]);

#endif
"""


def header_path(c_file: Path) -> Path:
    """The header written beside a .c file: its name with .h (policy.c -> policy.h, policy_int8.c -> policy_int8.h)."""
    return c_file.with_suffix(".h")


def write_c(source: ExportSource, out: Path, int8: bool = False) -> Path:
    """`out` (policy.c) and its header beside it, atomically each; returns the .c path."""
    header, body = c_sources(source, int8, header_path(out).name)
    atomic_write_text(header_path(out), header)
    return atomic_write_text(out, body)


def write_c_int8(source: ExportSource, out: Path) -> Path:
    """`write_c` with int8 weights (the registry's int8 writer for format c)."""
    return write_c(source, out, int8=True)


def read_c_metadata(header: Path) -> dict:
    """The metadata line policy.h opens with (empty if it has none)."""
    first = header.read_text().split("\n", 1)[0] if header.is_file() else ""
    if not first.startswith(META_PREFIX):
        return {}
    return json.loads(first[len(META_PREFIX) :].rsplit("*/", 1)[0])
