"""MuJoCo: teacher vs student returns per env, for our shipped teachers and rl-zoo's, two student sizes, two drivers.

Run by hand (HalfCheetah rows take under a minute each, Hopper and Walker2d a few minutes):

    python benchmarks/mujoco_returns.py                          # every env
    python benchmarks/mujoco_returns.py --env Hopper-v5          # one env

Each row is one `policykd distill --env ENV [--teacher T] [--student-arch A] [--driver D] --out OUT`;
the unmarked row of each env is the no-argument command. Returns are over 10 episodes on the same
seeds for teacher and student; params count the actor only (the part that acts).

    python benchmarks/mujoco_returns.py --env Walker2d-v5 --holdout 50

adds, per row, teacher and student over 50 more episodes on held-out seeds (20000+, never used
for collection or for the summary's evaluation). Ten episodes on an env where the robot can fall
are a small sample: one fall moves a Walker2d mean by about 5 %.

Figures: OUT/mujoco-<env>.png, every row of that env on one figure (returns, KL, agreement, size).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from pathlib import Path

from common import ZOO, held_out  # noqa: E402  (benchmarks/ is on sys.path when run as a script)

from policykd.report.compare import plot_benchmark
from policykd.teachers.shipped import default_agent

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


def teacher_of(cmd: list[str]) -> str:
    """The row's teacher spec: its --teacher, else the env's shipped agent."""
    return (
        cmd[cmd.index("--teacher") + 1]
        if "--teacher" in cmd
        else str(default_agent(cmd[cmd.index("--env") + 1]).folder)
    )


def holdout_returns(env_id: str, model: str, episodes: int) -> tuple[float, float]:
    """Mean and std of `policykd evaluate` over `episodes` held-out seeds."""
    result = held_out(env_id, model, episodes)
    return result["return_mean"], result["return_std"]


def run(cmd: list[str], out: Path, zoo: Path, holdout: int, teacher_holdout: dict[str, tuple[float, float]]) -> str:
    start = time.time()
    result = subprocess.run(cmd + ["--out", str(out), "--overwrite", "--quiet"], capture_output=True, text=True)
    wall = time.time() - start
    shown = " ".join(cmd).replace(str(zoo), "$ZOO")
    if result.returncode != 0:
        return f"| `{shown}` | failed: {result.stderr.strip().splitlines()[-1][:100]} |||||" + "||" * bool(holdout)
    s = json.loads((out / "summary.json").read_text())
    row = (
        f"| `{shown}` | {s['teacher_return_mean']:,.1f} ± {s['teacher_return_std']:,.1f} "
        f"| {s['student_return_mean']:,.1f} ± {s['student_return_std']:,.1f} | {100 * s['return_ratio']:.1f} % "
        f"| {s['student_params']:,} / {s['teacher_params']:,} ({100 * s['params_ratio']:.1f} %) "
        f"| {s['env_steps']:,} | {wall:.0f} s |"
    )
    if holdout:
        env_id, teacher = s["env_id"], teacher_of(cmd)
        if teacher not in teacher_holdout:
            teacher_holdout[teacher] = holdout_returns(env_id, teacher, holdout)
        (t_mean, t_std), (s_mean, s_std) = (
            teacher_holdout[teacher],
            holdout_returns(env_id, str(out / "student.zip"), holdout),
        )
        row += f" {t_mean:,.1f} ± {t_std:,.1f} / {s_mean:,.1f} ± {s_std:,.1f} | {100 * s_mean / t_mean:.1f} % |"
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", choices=sorted(ENVS), action="append", help="repeatable; default: all three")
    parser.add_argument("--zoo", type=Path, default=ZOO, help="rl-zoo agents folder ($ZOO in the table)")
    parser.add_argument("--out", type=Path, default=Path("runs/bench-mujoco"))
    parser.add_argument(
        "--holdout",
        type=int,
        default=0,
        metavar="EPISODES",
        help="also evaluate teacher and student on this many held-out seeds (20000+)",
    )
    args = parser.parse_args()
    extra = (
        f" teacher / student, {args.holdout} held-out episodes | student / teacher ({args.holdout}) |"
        if args.holdout
        else ""
    )
    print(
        "| command | teacher return | student return | student / teacher | student / teacher actor params | env steps | wall-clock |"
        + extra
    )
    print("|---|---|---|---|---|---|---|" + "---|---|" * bool(args.holdout))
    teacher_holdout: dict[str, tuple[float, float]] = {}
    outs, labels = [], []
    for env_id in args.env or list(ENVS):
        for i, cmd in enumerate(rows(env_id, args.zoo)):
            outs.append(args.out / f"{env_id}-{i}")
            labels.append(" ".join(cmd[4:]).replace(str(args.zoo), "$ZOO") or "preset")
            print(run(cmd, outs[-1], args.zoo, args.holdout, teacher_holdout), flush=True)
    for figure in plot_benchmark(outs, args.out, "mujoco", labels):
        print(f"figure: {figure}")


if __name__ == "__main__":
    main()
