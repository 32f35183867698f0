"""MuJoCo: teacher vs student returns per env, for our shipped teachers and rl-zoo's, two student sizes, two drivers.

Run by hand (HalfCheetah rows take under a minute each, Hopper and Walker2d a few minutes):

    python benchmarks/mujoco.py                          # every env
    python benchmarks/mujoco.py --env Hopper-v5          # one env

Each row is one `policykd distill --env ENV [--teacher T] [--student-arch A] [--driver D] --out OUT`;
the unmarked row of each env is the no-argument command. Returns are over 10 episodes on the same
seeds for teacher and student; params count the actor only (the part that acts).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from pathlib import Path

from policykd.agents import default_agent

ZOO = Path(__file__).resolve().parents[2] / "shared/teachers/rl-zoo"
ENVS = {  # env -> rl-zoo folders (relative to ZOO) distilled with the preset
    "HalfCheetah-v5": ["sac/HalfCheetah-v3_1", "ppo/HalfCheetah-v3_1"],
    "Hopper-v5": ["sac/Hopper-v3_1", "ppo/Hopper-v3_1"],
    "Walker2d-v5": ["sac/Walker2d-v3_1"],
}
SIZES = ([], ["--student-arch", "16,16"])  # the preset's (the widest within 5 % of the actor), then about 1 %
DRIVERS = ([], ["--driver", "teacher"])  # the preset's (DAgger), then teacher-driven


def rows(env_id: str, zoo: Path) -> list[list[str]]:
    """Shipped teacher (if the env has one yet): preset and smaller student, each with both drivers;
    then each zoo teacher with the preset."""
    base = ["policykd", "distill", "--env", env_id]
    out = [base + size + driver for size in SIZES for driver in DRIVERS] if default_agent(env_id) else []
    return out + [base + ["--teacher", str(zoo / folder)] for folder in ENVS[env_id]]


def run(cmd: list[str], out: Path, zoo: Path) -> str:
    start = time.time()
    result = subprocess.run(cmd + ["--out", str(out), "--overwrite", "--quiet"], capture_output=True, text=True)
    shown = " ".join(cmd).replace(str(zoo), "$ZOO")
    if result.returncode != 0:
        return f"| `{shown}` | failed: {result.stderr.strip().splitlines()[-1][:100]} |||||"
    s = json.loads((out / "summary.json").read_text())
    return (
        f"| `{shown}` | {s['teacher_return_mean']:,.1f} ± {s['teacher_return_std']:,.1f} "
        f"| {s['student_return_mean']:,.1f} ± {s['student_return_std']:,.1f} | {100 * s['return_ratio']:.1f} % "
        f"| {s['student_params']:,} / {s['teacher_params']:,} ({100 * s['params_ratio']:.1f} %) "
        f"| {s['env_steps']:,} | {time.time() - start:.0f} s |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", choices=sorted(ENVS), action="append", help="repeatable; default: all three")
    parser.add_argument("--zoo", type=Path, default=ZOO, help="rl-zoo agents folder ($ZOO in the table)")
    parser.add_argument("--out", type=Path, default=Path("runs/bench-mujoco"))
    args = parser.parse_args()
    print("| command | teacher return | student return | student / teacher | student / teacher actor params | env steps | wall-clock |")
    print("|---|---|---|---|---|---|---|")
    for env_id in args.env or list(ENVS):
        for i, cmd in enumerate(rows(env_id, args.zoo)):
            print(run(cmd, args.out / f"{env_id}-{i}", args.zoo), flush=True)


if __name__ == "__main__":
    main()
