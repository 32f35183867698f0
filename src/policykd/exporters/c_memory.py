"""The memory of a C export: a student's history window and its actor LSTM, kept in one static struct.

`policykd_act(obs, action)` takes one sensor reading, as the robot's loop has it, and keeps what the student
remembers itself: a ring of the last K readings (a trailing `history=K` view; the first call after
`policykd_reset()` fills it with that reading, exactly as `policykd.views.History`) and the LSTM's h and c
(zero after a reset; gates in torch.nn.LSTM's order i, f, g, o). The struct is reachable through
`policykd_state()` / `policykd_state_size()`, so a caller that runs several episodes side by side (`policykd
evaluate`, a fleet of robots on one controller) saves and restores it between calls.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from torch import nn

from policykd.exporters.memory import Memory

ArrayFn = Callable[[str, np.ndarray], str]
"""`to_c._array`: a `static const float` array of that name and values."""


@dataclass(frozen=True)
class MemoryCode:
    """The pieces of policy.c (and policy.h) that keep a student's memory."""

    header: str
    """#defines and the declarations of policykd_reset, policykd_state and policykd_state_size."""
    statics: str
    """The state struct, the LSTM's weights and step, policykd_reset and the state accessors."""
    locals: str
    """Declarations at the top of policykd_act."""
    window: str
    """Statements of policykd_act that put the reading into the window and leave the K readings, oldest first, at
    `in` (nothing without a history: `in` is `obs`)."""
    lstm: str
    """The statement that runs the LSTM on x (width `lstm_input`) into x (nothing when not recurrent)."""


def memory_code(memory: Memory, lstm: nn.LSTM | None, array: ArrayFn) -> MemoryCode:
    """C for `memory`; `array(name, values)` writes a `static const float` array (`to_c._array`)."""
    k, d, hidden = memory.history, memory.sensors, memory.lstm_hidden
    fields = ["    int started; /* 0 after policykd_reset: the next reading starts an episode */"]
    resets = ["    memory.started = 0;"]
    if k > 1:
        fields += [f"    float ring[{k * d}]; /* the last {k} readings; the oldest at head */", "    int head;"]
    if hidden:
        fields += [f"    float h[{hidden}];", f"    float c[{hidden}];"]
        resets += [f"    for (i = 0; i < {hidden}; ++i) {{ memory.h[i] = 0.0f; memory.c[i] = 0.0f; }}"]
    reset_locals = "    int i;\n" if hidden else ""
    statics = (
        "static struct {\n" + "\n".join(fields) + "\n} memory;\n\n"
        f"void policykd_reset(void) {{\n{reset_locals}" + "\n".join(resets) + "\n}\n\n"
        "void *policykd_state(void) { return &memory; }\n\n"
        "unsigned long policykd_state_size(void) { return (unsigned long)sizeof memory; }\n"
    )
    if lstm is not None:
        statics += "\n" + _lstm_statics(lstm, array)
    return MemoryCode(
        header=_header(k, hidden),
        statics=statics,
        locals=(
            f"    float stacked[{k * d}];\n    const float *in = stacked;\n    int j;\n"
            if k > 1
            else "    const float *in = obs;\n"
        ),
        window=_window(k, d) if k > 1 else "    memory.started = 1;",
        lstm="    lstm_step(x, y); swap(&x, &y);" if lstm is not None else "",
    )


def _header(k: int, hidden: int) -> str:
    return f"""#define POLICYKD_HISTORY {k}
#define POLICYKD_LSTM_HIDDEN {hidden}
/* Memory (contract.json): {f"the last {k} readings" if k > 1 else "no history window"}{f", an LSTM of {hidden} units" if hidden else ""}.
   Call policykd_reset() where an episode starts, before its first policykd_act: that call fills the window with
   its reading and starts the LSTM from zeros (policykd_act before any reset does the same). */
void policykd_reset(void);
/* The whole memory, for several episodes side by side: copy policykd_state_size() bytes from policykd_state()
   after an episode's step, and back before its next one. */
void *policykd_state(void);
unsigned long policykd_state_size(void);
"""


def _window(k: int, d: int) -> str:
    return f"""    if (!memory.started) {{
        for (j = 0; j < {k}; ++j) for (i = 0; i < {d}; ++i) memory.ring[j * {d} + i] = obs[i];
        memory.head = 0;
        memory.started = 1;
    }} else {{
        for (i = 0; i < {d}; ++i) memory.ring[memory.head * {d} + i] = obs[i];
        memory.head = (memory.head + 1) % {k};
    }}
    for (j = 0; j < {k}; ++j) for (i = 0; i < {d}; ++i) stacked[j * {d} + i] = memory.ring[((memory.head + j) % {k}) * {d} + i];"""


def _lstm_statics(lstm: nn.LSTM, array: ArrayFn) -> str:
    hidden, inputs = lstm.hidden_size, lstm.input_size

    def weights(name: str) -> np.ndarray:
        return getattr(lstm, name).detach().cpu().numpy().astype(np.float32)

    arrays = "".join(
        array(c_name, weights(name))
        for c_name, name in (
            ("LSTM_WI", "weight_ih_l0"),
            ("LSTM_BI", "bias_ih_l0"),
            ("LSTM_WH", "weight_hh_l0"),
            ("LSTM_BH", "bias_hh_l0"),
        )
    )
    h = hidden
    return f"""{arrays}
static float logistic(float v) {{ return 1.0f / (1.0f + expf(-v)); }}

/* One step of torch.nn.LSTM (gates i, f, g, o): reads `in` ({inputs} values), updates h and c, writes h to `out`. */
static void lstm_step(const float *in, float *out) {{
    float gi[{4 * h}], gh[{4 * h}];
    int i;
    linear(LSTM_WI, LSTM_BI, in, {inputs}, gi, {4 * h});
    linear(LSTM_WH, LSTM_BH, memory.h, {h}, gh, {4 * h});
    for (i = 0; i < {h}; ++i) {{
        float ig = logistic(gi[i] + gh[i]);
        float fg = logistic(gi[{h} + i] + gh[{h} + i]);
        float gg = tanhf(gi[{2 * h} + i] + gh[{2 * h} + i]);
        float og = logistic(gi[{3 * h} + i] + gh[{3 * h} + i]);
        memory.c[i] = fg * memory.c[i] + ig * gg;
        memory.h[i] = og * tanhf(memory.c[i]);
        out[i] = memory.h[i];
    }}
}}
"""
