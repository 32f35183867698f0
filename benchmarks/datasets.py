"""Distilling from recorded datasets: CartPole BC vs KL, and Pong from 50 recorded teacher episodes.

Run by hand; every figure comes from the real CLI (`policykd record`, `policykd distill`,
`policykd evaluate`), with datasets under `<out>/minari` (MINARI_DATASETS_PATH).

    python benchmarks/datasets.py cartpole     # ~2 min: 20 episodes; gradient steps to 475, BC vs KL, 5 seeds
    python benchmarks/datasets.py pong         # ~30 min: 50 recorded episodes, offline student vs teacher, 20 episodes

CartPole: the rl-zoo PPO teacher records 20 episodes twice (with its distributions, and
`--actions-only`); students train offline with `--epochs 1 --rounds 40`, evaluated after
every round (10 episodes); the figure is the first gradient step count at which the
mean return is >= 475.

Figures: OUT/datasets-cartpole.png (every student's curve) and OUT/datasets-pong.png.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import time
from pathlib import Path

from common import ZOO  # noqa: E402  (benchmarks/ is on sys.path when run as a script)

from policykd.report.compare import plot_benchmark


def cli(*args: str, env: dict, timed: bool = False) -> tuple[subprocess.CompletedProcess, float, float]:
    """Run policykd; returns the process, wall seconds and peak RSS (GB, under /usr/bin/time -v)."""
    cmd = (["/usr/bin/time", "-v"] if timed else []) + ["policykd", *args]
    start = time.time()
    result = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{result.stderr[-2000:]}")
    peak = re.search(r"Maximum resident set size \(kbytes\): (\d+)", result.stderr) if timed else None
    return result, time.time() - start, (int(peak.group(1)) / 1024**2 if peak else float("nan"))


def cartpole(out: Path, env: dict, seeds: int) -> list[Path]:
    """The table on stdout; returns the run folders (for the figure)."""
    teacher = str(ZOO / "ppo/CartPole-v1_1")
    for name, extra in (("cartpole/teacher-v0", []), ("cartpole/actions-v0", ["--actions-only"])):
        cli(
            "record",
            "--env",
            "CartPole-v1",
            "--teacher",
            teacher,
            "--episodes",
            "20",
            "--dataset",
            name,
            "--overwrite",
            "--quiet",
            *extra,
            env=env,
        )
    print("| dataset | loss | seed | gradient steps to reach 475 | final return | wall-clock |")
    print("|---|---|---|---|---|---|")
    reached, runs = {}, []
    for name in ("cartpole/actions-v0", "cartpole/teacher-v0"):
        for seed in range(seeds):
            run = out / f"{name.replace('/', '-')}-{seed}"
            runs.append(run)
            cli(
                "distill",
                "--env",
                "CartPole-v1",
                "--dataset",
                name,
                "--epochs",
                "1",
                "--rounds",
                "40",
                "--seed",
                str(seed),
                "--out",
                str(run),
                "--overwrite",
                "--quiet",
                env=env,
            )
            s = json.loads((run / "summary.json").read_text())
            first = next((e["gradient_steps"] for e in s["evals"] if e["student_return_mean"] >= 475), None)
            reached.setdefault((name, s["loss"]), []).append(first)
            print(
                f"| {name} | {s['loss']} | {seed} | {first} | {s['student_return_mean']:.1f} | {s['wall_seconds']:.1f} s |",
                flush=True,
            )
    for (name, loss), steps in reached.items():
        ok = [x for x in steps if x is not None]
        mean = sum(ok) / len(ok) if ok else float("nan")
        print(f"{name} ({loss}): reached 475 in {len(ok)}/{len(steps)} seeds, mean {mean:.0f} gradient steps")
    return runs


def pong(out: Path, env: dict, episodes: int) -> list[Path]:
    """The table on stdout; returns the run folder (for the figure)."""
    dataset = f"pong/teacher{episodes}-v0"
    _, record_s, _ = cli(
        "record",
        "--env",
        "ALE/Pong-v5",
        "--episodes",
        str(episodes),
        "--dataset",
        dataset,
        "--overwrite",
        "--quiet",
        env=env,
    )
    run = out / f"pong-offline-{episodes}"
    _, distill_s, peak = cli(
        "distill",
        "--env",
        "ALE/Pong-v5",
        "--dataset",
        dataset,
        "--out",
        str(run),
        "--overwrite",
        "--quiet",
        env=env,
        timed=True,
    )
    s = json.loads((run / "summary.json").read_text())
    teacher, _, _ = cli(
        "evaluate",
        "--env",
        "ALE/Pong-v5",
        "--model",
        "pong-ppo-v5",
        "--episodes",
        str(s["eval_episodes"]),
        "--seed",
        str(s["eval_seed"]),
        "--json",
        env=env,
    )
    t = json.loads(teacher.stdout)["model"]
    d = s["dataset"]
    print(
        "| dataset | teacher return (same seeds) | student return | student / teacher params | dataset steps | bytes/step on disk | gradient steps | record | distill | peak RSS |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    print(
        f"| {episodes} teacher episodes ({d['episodes']} stored) | {t['return_mean']:+.2f} ± {t['return_std']:.2f} "
        f"| {s['student_return_mean']:+.2f} ± {s['student_return_std']:.2f} "
        f"| {s['student_params']:,} / {s['teacher_params']:,} ({100 * s['params_ratio']:.1f} %) | {d['steps']:,} "
        f"| {d['bytes_per_step']:,.0f} | {s['gradient_steps']:,} | {record_s / 60:.1f} min | {distill_s / 60:.1f} min | {peak:.1f} GB |"
    )
    print(
        f"dataset episodes' own mean score: {s['teacher_return_mean']:+.2f}; student - teacher = "
        f"{s['student_return_mean'] - t['return_mean']:+.2f}"
    )
    return [run]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("which", choices=("cartpole", "pong"))
    parser.add_argument("--out", default="runs/bench-datasets")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--episodes", type=int, default=50)
    args = parser.parse_args()
    out = Path(args.out).resolve()
    env = {**os.environ, "MINARI_DATASETS_PATH": str(out / "minari")}
    runs = cartpole(out, env, args.seeds) if args.which == "cartpole" else pong(out, env, args.episodes)
    for figure in plot_benchmark(runs, out, f"datasets-{args.which}"):
        print(f"figure: {figure}")


if __name__ == "__main__":
    main()
