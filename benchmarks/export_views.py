"""Exports of students with memory against their SB3 model over 10,000 consecutive steps of real episodes (issue 31).

    python benchmarks/export_views.py RUN [RUN ...]      # run folders of distilled view / recurrent students

For each run: export ONNX and C, step 2 envs x 5,000 steps of the student's view (40-step episodes, so resets come
often and at different steps; every 7th action random, off the student's path), and report the largest difference
between the file's action and SB3's `predict(deterministic=True)` (recurrent: with its state and episode starts).
The stepping, compiling and feeding are the test suite's (tests/test_export_views.py), here over more steps.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_export_views import _c_actions, _compile, _episodes  # noqa: E402  (the suite's stepping and C build)

import policykd  # noqa: E402

STEPS, ENVS = 5_000, 2


def onnx_gap(run: Path, seen: list) -> float:
    import onnxruntime as ort

    session = ort.InferenceSession(str(policykd.export(run, "onnx")), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs() if i.name not in ("obs", "reset")]
    state = {n: np.zeros((ENVS, i.shape[1]), np.float32) for i in session.get_inputs() for n in [i.name] if n in names}
    gap = 0.0
    for obs, starts, expected in seen:
        feeds = {"obs": obs.astype(np.float32), **({"reset": starts.astype(np.float32)} if names else {}), **state}
        action, *kept = session.run(["action", *(f"{n}_out" for n in names)], feeds)
        gap = max(gap, float(np.max(np.abs(np.asarray(action).reshape(expected.shape) - expected))))
        state = dict(zip(names, kept))
    return gap


def c_gap(run: Path, seen: list) -> float:
    policykd.export(run, "c")
    library = _compile(run, Path(tempfile.mkdtemp()))
    return max(float(np.max(np.abs(got - expected))) for got, expected in _c_actions(library, seen))


def main() -> None:
    print("| run | student | view | steps | episodes started | ONNX max abs gap | C max abs gap |")
    print("|---|---|---|---|---|---|---|")
    for run in map(Path, sys.argv[1:]):
        summary = json.loads((run / "summary.json").read_text())
        seen = _episodes(run, steps=STEPS, n_envs=ENVS)
        starts = int(sum(s.sum() for _, s, _ in seen))
        print(
            f"| {run} | {summary['student_algo']} | `{' '.join(summary['student_obs'])}` | {STEPS * ENVS:,} | {starts} "
            f"| {onnx_gap(run, seen):.2e} | {c_gap(run, seen):.2e} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
