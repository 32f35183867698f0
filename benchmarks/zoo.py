"""Distil the classic-control rl-zoo agents in ../shared/teachers/rl-zoo with the CLI defaults; print a results table.

The zoo's MuJoCo agents are rows of benchmarks/mujoco_returns.py, beside our own MuJoCo teachers.

Run by hand (minutes on 2 cores):  python benchmarks/zoo.py [--zoo PATH] [--out runs/bench-zoo]
Each row is one `policykd distill --env ENV --teacher FOLDER --out OUT` with the env preset's settings.
Figures: OUT/zoo-<env>.png, every row of that env on one figure (returns, KL, agreement, size).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from policykd.report.compare import plot_benchmark

ROWS = [
    ("ppo/CartPole-v1_1", "CartPole-v1"),
    ("a2c/CartPole-v1_1", "CartPole-v1"),
    ("dqn/CartPole-v1_1", "CartPole-v1"),
    ("qrdqn/CartPole-v1_1", "CartPole-v1"),
    ("dqn/Acrobot-v1_1", "Acrobot-v1"),
    ("ppo/Pendulum-v1_1", "Pendulum-v1"),
    ("sac/Pendulum-v1_1", "Pendulum-v1"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--zoo", default=str(Path(__file__).resolve().parents[2] / "shared/teachers/rl-zoo"))
    parser.add_argument("--out", default="runs/bench-zoo")
    parser.add_argument("--only", default="", help="substring filter on the folder names")
    args = parser.parse_args()
    print(
        "| teacher folder | env | teacher return | student return | student / teacher params | env steps | wall-clock (s) |"
    )
    print("|---|---|---|---|---|---|---|")
    outs = []
    for folder, env_id in ROWS:
        if args.only not in folder:
            continue
        out = Path(args.out) / folder.replace("/", "-")
        outs.append(out)
        cmd = [
            "policykd",
            "distill",
            "--env",
            env_id,
            "--teacher",
            f"{args.zoo}/{folder}",
            "--out",
            str(out),
            "--overwrite",
            "--quiet",
        ]
        start = time.time()
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            print(f"| {folder} | {env_id} | failed: {result.stderr.strip()[:80]} |||||")
            continue
        s = json.loads((out / "summary.json").read_text())
        print(
            f"| {folder} | {env_id} | {s['teacher_return_mean']:.1f} ± {s['teacher_return_std']:.1f} "
            f"| {s['student_return_mean']:.1f} ± {s['student_return_std']:.1f} "
            f"| {s['student_params']:,} / {s['teacher_params']:,} ({100 * s['params_ratio']:.1f} %) "
            f"| {s['env_steps']:,} | {time.time() - start:.0f} |",
            flush=True,
        )
    for figure in plot_benchmark(outs, Path(args.out), "zoo"):
        print(f"figure: {figure}")


if __name__ == "__main__":
    sys.exit(main())
