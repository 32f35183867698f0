"""Sweeps on Ray, measured: how wall-clock scales with concurrent trials, the Pareto front of MuJoCo students,
and what the --target search saves against the full grid.

Run by hand (each part runs `policykd sweep` commands and prints them):

    python benchmarks/sweep.py scaling   # the same 4-trial grid with 1, then 2 concurrent trials (nothing else running)
    python benchmarks/sweep.py pareto    # HalfCheetah, Hopper, Walker2d: widths 8..64 x 3 seeds, smallest at 99 % / 95 %
    python benchmarks/sweep.py target    # --target 0.99 on HalfCheetah in a fresh folder, against the pareto grid

`--steps N` sets every trial's env steps (default 100,000: a third of the MuJoCo preset's budget, so the
36 pareto trials fit in well under an hour on 2 cores). Results go to runs/bench-sweep/<part>/ and a
line per measurement to runs/bench-sweep/results.md. The reference, measured in the same run: env steps/s
of a plain HalfCheetah-v5 loop (one process, random actions).
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import time
from pathlib import Path

import numpy as np

ROOT = Path("runs/bench-sweep")
ENVS = ("HalfCheetah-v5", "Hopper-v5", "Walker2d-v5")
WIDTHS = "8,16,32,64"


def reference(seconds: float = 5.0) -> float:
    import gymnasium as gym

    env = gym.make("HalfCheetah-v5")
    env.reset(seed=0)
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        env.step(env.action_space.sample())
        steps += 1
    return steps / (time.perf_counter() - start)


def sweep(env: str, out: Path, args: list[str]) -> tuple[float, list[dict], str]:
    cmd = ["policykd", "sweep", "--env", env, "--out", str(out), "--quiet", *args]
    start = time.time()
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {done.stderr.strip().splitlines()[-1]}")
    with open(out / "sweep.csv") as f:
        return time.time() - start, list(csv.DictReader(f)), " ".join(cmd)


def scaling(steps: int) -> list[str]:
    grid = ["--grid", f"student-width={WIDTHS}", "--grid", f"steps={steps}"]
    one, rows, cmd1 = sweep("HalfCheetah-v5", ROOT / "scaling-1", [*grid, "--cpus-per-trial", "2"])
    two, _, cmd2 = sweep("HalfCheetah-v5", ROOT / "scaling-2", [*grid, "--cpus-per-trial", "1"])
    serial = sum(float(r["wall_seconds"]) for r in rows)
    return [
        f"- 1 concurrent trial: {one:.0f} s (`{cmd1}`; the trials' own wall-clock sums to {serial:.0f} s)",
        f"- 2 concurrent trials: {two:.0f} s (`{cmd2}`): **{two / one:.2f}×** the 1-trial wall-clock",
    ]


def pareto(steps: int) -> list[str]:
    lines = [
        "| env | width | params (% of teacher) | return ratio, mean ± std over 3 seeds | worst seed |",
        "|---|---|---|---|---|",
    ]
    smallest = []
    for env in ENVS:
        wall, rows, cmd = sweep(
            env,
            ROOT / f"pareto-{env}",
            ["--grid", f"student-width={WIDTHS}", "--grid", f"steps={steps}", "--seeds", "3"],
        )
        by_arch: dict[str, list[dict]] = {}
        for r in rows:
            if r["status"] == "finished":  # a failed trial (its error is in tune/) has no final evaluation
                by_arch.setdefault(r["student_arch"], []).append(r)
        passing = {t: None for t in (0.99, 0.95)}
        for arch, rs in sorted(by_arch.items(), key=lambda kv: int(kv[0].split("x")[0])):
            ratios = [float(r["return_ratio"]) for r in rs]
            lines.append(
                f"| {env} | {arch} | {int(rs[0]['student_params']):,} ({float(rs[0]['params_percent']):.2f} %) "
                f"| {np.mean(ratios):.3f} ± {np.std(ratios):.3f} ({len(ratios)} seeds) | {min(ratios):.3f} |"
            )
            for t in passing:
                if passing[t] is None and np.mean(ratios) >= t:
                    passing[t] = arch
        smallest.append(
            f"- {env}: smallest at ≥ 99 %: {passing[0.99] or 'none'}; at ≥ 95 %: {passing[0.95] or 'none'} "
            f"(`{cmd}`, {wall / 60:.1f} min, 2 concurrent trials)"
        )
    return lines + [""] + smallest


def target(steps: int) -> list[str]:
    wall, rows, cmd = sweep(
        "HalfCheetah-v5",
        ROOT / "target-HalfCheetah-v5",
        ["--grid", f"student-width={WIDTHS}", "--grid", f"steps={steps}", "--seeds", "3", "--target", "0.99"],
    )
    found = (ROOT / "target-HalfCheetah-v5" / "sweep.md").read_text().split("Smallest student", 1)[1].splitlines()[0]
    return [f"- `{cmd}`: {len(rows)} trials of the grid's {4 * 3}, {wall / 60:.1f} min; smallest student{found}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", choices=("scaling", "pareto", "target"))
    parser.add_argument("--steps", type=int, default=100_000)
    args = parser.parse_args()
    ROOT.mkdir(parents=True, exist_ok=True)
    ref = reference()
    lines = {"scaling": scaling, "pareto": pareto, "target": target}[args.part](args.steps)
    text = "\n".join(
        [
            f"## {args.part} ({time.strftime('%Y-%m-%d %H:%M')}; reference: plain HalfCheetah-v5 loop "
            f"{ref:,.0f} env steps/s, same run)",
            *lines,
            "",
        ]
    )
    print(text)
    with open(ROOT / "results.md", "a") as f:
        f.write(text + "\n")


if __name__ == "__main__":
    main()
