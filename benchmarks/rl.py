"""RL continuation and kickstarting, measured against the same student net trained from scratch.

Run by hand (each part prints the `policykd distill` commands it runs and a Markdown table):

    python benchmarks/rl.py cartpole          # weak CartPole teacher (PPO stopped at 1,024 steps), seeds 0-2
    python benchmarks/rl.py hopper            # rl-zoo sac/Hopper-v3_1 (1,107 on Hopper-v5), needs ../shared
    python benchmarks/rl.py hopper --start scratch --rl-steps 300000   # the issue's kickstarting target

Each run adds `--baseline-scratch`, so the same algorithm, net and random start learn without the teacher over the
same RL env steps in the same process, evaluated on the same seeds. "steps to scratch's final" is the first RL
evaluation at which the kicked student reached the baseline's final return. The reference, measured in the same run:
env steps/s of a plain loop of the env with random actions.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from pathlib import Path

from common import ZOO, reference, report

ROOT = Path("runs/bench-rl")


def weak_cartpole_teacher(path: Path) -> Path:
    """PPO with SB3's defaults (n_steps 256) stopped after 1,024 env steps: ~130 of 500."""
    from stable_baselines3 import PPO

    if not path.is_file():
        model = PPO("MlpPolicy", "CartPole-v1", seed=0, n_steps=256, device="cpu")
        model.learn(1024)
        model.save(path)
    return path


def distill(args: list[str]) -> tuple[dict, float, str]:
    cmd = ["policykd", "distill", *args, "--baseline-scratch", "--overwrite", "--quiet"]
    start = time.time()
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {done.stderr.strip()[-500:]}")
    out = Path(args[args.index("--out") + 1])
    return json.loads((out / "summary.json").read_text()), time.time() - start, " ".join(cmd)


def row(summary: dict, wall: float) -> str:
    rl, teacher = summary["rl"], summary["teacher_return_mean"]
    final = rl["scratch_return"]
    reached = next((e["env_steps"] for e in rl["evals"] if e["return_mean"] >= final), None)
    share = f"{reached:,} ({reached / rl['rl_steps']:.2f})" if reached is not None else "never"
    return (
        f"| {summary['config']['seed']} | {teacher:.1f} | {rl['return_before_rl']:.1f} | {rl['return_after_rl']:.1f} "
        f"({rl['return_after_rl'] / teacher:.2f}x) | {final:.1f} | {share} | {rl['rl_steps']:,} | {wall / 60:.1f} min |"
    )


HEADER = (
    "| seed | teacher | student before RL | after RL (x teacher) | scratch, final | RL steps to scratch's final "
    "(share) | RL steps | wall (both) |\n|---|---|---|---|---|---|---|---|"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=("cartpole", "hopper"))
    parser.add_argument("--start", choices=("distilled", "scratch"), default=None)
    parser.add_argument("--rl-steps", type=int, default=None)
    parser.add_argument("--seeds", type=int, default=None)
    args = parser.parse_args()
    ROOT.mkdir(parents=True, exist_ok=True)
    if args.part == "cartpole":
        env, teacher = "CartPole-v1", str(weak_cartpole_teacher(ROOT / "weak-cartpole.zip"))
        extra, steps, seeds = ["--steps", "4000", "--rounds", "2"], args.rl_steps or 20_000, args.seeds or 3
    else:
        env, teacher = "Hopper-v5", str(ZOO / "sac" / "Hopper-v3_1")
        extra, steps, seeds = [], args.rl_steps or 100_000, args.seeds or 1
    starts = [args.start] if args.start else ["distilled", "scratch"]
    lines = [
        f"## {args.part} ({time.strftime('%Y-%m-%d %H:%M')}; reference: plain {env} loop "
        f"{reference(env):,.0f} env steps/s, same run)"
    ]
    for start in starts:
        lines += [f"\n--rl-start {start}:\n", HEADER]
        for seed in range(seeds):
            out = ROOT / f"{args.part}-{start}-{seed}"
            summary, wall, cmd = distill(
                [
                    "--env",
                    env,
                    "--teacher",
                    teacher,
                    *extra,
                    "--rl-steps",
                    str(steps),
                    "--rl-start",
                    start,
                    "--seed",
                    str(seed),
                    "--out",
                    str(out),
                ]
            )
            lines.append(row(summary, wall))
            print(f"# {cmd}\n{lines[-1]}", flush=True)
    report(ROOT, lines)


if __name__ == "__main__":
    main()
