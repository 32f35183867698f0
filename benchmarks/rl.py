"""RL continuation and kickstarting against plain RL of the same net: three curves per env and seed (issue 32).

Run by hand (each env prints the `policykd distill` commands it runs, a Markdown table, and draws one picture):

    python benchmarks/rl.py cartpole                  # the issue's weak CartPole teacher, 60k RL steps, seeds 0-4
    python benchmarks/rl.py hopper --seeds 0          # rl-zoo sac/Hopper-v3_1, 300k RL steps (needs ../shared)
    python benchmarks/rl.py halfcheetah               # rl-zoo ppo/HalfCheetah-v3_1 with VecNormalize, 300k

Per seed, two runs of `policykd distill`:
- `--rl-start distilled --baseline-scratch`: the **continued** student (distilled, then RL + the kick) and **plain**
  RL (the same algorithm, hyperparameters and net from the same random weights, no teacher, same env steps, same
  process, evaluated on the same seeds);
- `--rl-start scratch`: the **kickstarted** student (that same random start, RL + the kick from step 0).
Every curve is evaluated on the run's 10 evaluation episodes after each RL segment (a tenth of the RL steps). The
table gives each curve's final return on those episodes and of its final model over `--episodes` held-out episodes
(seed 20000 on: `student.zip` of each run, `baseline-scratch.zip` for plain RL), its area under the curve (the mean
of its evaluations, all on the same grid of env steps), and the RL env steps at which it first reached plain RL's
final return. A finished run (its summary.json) is read back, not run again. Reference: a plain env loop's steps/s,
same run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from pathlib import Path

import numpy as np
from common import ZOO, held_out, reference, report, weak_cartpole_teacher

ROOT = Path("runs/bench-rl")
CURVES = ("continued", "kickstarted", "plain")


ENVS = {  # env id, teacher, RL env steps
    "cartpole": ("CartPole-v1", lambda: str(weak_cartpole_teacher()), 60_000),
    "hopper": ("Hopper-v5", lambda: str(ZOO / "sac" / "Hopper-v3_1"), 300_000),
    "halfcheetah": ("HalfCheetah-v5", lambda: str(ZOO / "ppo" / "HalfCheetah-v3_1"), 300_000),
}


def distill(flags: list[str], out: Path) -> dict:
    """`policykd distill FLAGS --out OUT`, or the summary it already wrote."""
    cmd = ["policykd", "distill", *flags, "--out", str(out), "--overwrite", "--quiet"]
    if not (out / "summary.json").is_file():
        print("# " + " ".join(cmd[:-2]), flush=True)
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed: {done.stderr.strip()[-500:]}")
    return json.loads((out / "summary.json").read_text())


def curves(continued: dict, kickstarted: dict) -> dict[str, list[tuple[int, float]]]:
    """Each curve's (RL env steps, return) after every segment, from the two runs' summaries."""
    return {
        "continued": [(e["env_steps"], e["return_mean"]) for e in continued["rl"]["evals"]],
        "kickstarted": [(e["env_steps"], e["return_mean"]) for e in kickstarted["rl"]["evals"]],
        "plain": [(e["env_steps"], e["return_mean"]) for e in continued["rl"]["scratch_evals"]],
    }


def finals(env_id: str, continued: Path, kickstarted: Path, episodes: int) -> dict[str, float]:
    """Each curve's final model over `episodes` held-out episodes (kept in CONTINUED/heldout.json)."""
    done = continued / f"heldout-{episodes}.json"
    if done.is_file():
        return json.loads(done.read_text())
    models = {
        "continued": continued / "student.zip",
        "kickstarted": kickstarted / "student.zip",
        "plain": continued / "baseline-scratch.zip",
    }
    result = {name: held_out(env_id, str(model), episodes)["return_mean"] for name, model in models.items()}
    done.write_text(json.dumps(result) + "\n")
    return result


def rows(seed: int, teacher: float, by_curve: dict[str, list[tuple[int, float]]], final: dict[str, float]) -> list[str]:
    plain_final, plain_area = by_curve["plain"][-1][1], float(np.mean([r for _, r in by_curve["plain"]]))
    lines = []
    for name in CURVES:
        points = by_curve[name]
        area = float(np.mean([r for _, r in points]))
        reached = next((steps for steps, r in points if r >= plain_final), None)
        lines.append(
            f"| {seed} | {name} | {teacher:.1f} | {points[-1][1]:.1f} | {final[name]:.1f} | "
            f"{area:.1f} ({area / plain_area:.2f}x) | "
            f"{'-' if name == 'plain' else f'{reached:,}' if reached is not None else 'never'} | "
            + ", ".join(f"{r:.0f}" for _, r in points)
            + " |"
        )
    return lines


def picture(env_id: str, teacher: float, runs: list[dict[str, list[tuple[int, float]]]], path: Path) -> None:
    """One panel: every seed's curve thin, the mean over seeds thick, the teacher dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for name, color in zip(CURVES, ("tab:blue", "tab:green", "tab:gray")):
        for run in runs:
            steps, returns = zip(*run[name])
            ax.plot(steps, returns, color=color, alpha=0.25, linewidth=0.8)
        steps = [s for s, _ in runs[0][name]]
        mean = np.mean([[r for _, r in run[name]] for run in runs], axis=0)
        ax.plot(steps, mean, color=color, linewidth=2.2, label=f"{name} (mean of {len(runs)} seeds)")
    ax.axhline(teacher, color="black", linestyle="--", linewidth=1, label="teacher")
    ax.set(xlabel="RL env steps", ylabel="return (10 evaluation episodes)", title=env_id)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


HEADER = (
    "| seed | curve | teacher | final | final, held out | area (x plain's) | RL steps to plain's final "
    "| returns after each segment |\n|---|---|---|---|---|---|---|---|"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("env", choices=tuple(ENVS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--rl-steps", type=int, default=None)
    parser.add_argument("--episodes", type=int, default=50, help="held-out episodes for each final model")
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="more distill flags for every run")
    args = parser.parse_args()
    env_id, teacher_spec, steps = ENVS[args.env]
    steps = args.rl_steps or steps
    ROOT.mkdir(parents=True, exist_ok=True)
    common = ["--env", env_id, "--teacher", teacher_spec(), "--rl-steps", str(steps), *args.extra]
    tag = "-".join([args.env, str(steps), *(a.lstrip("-") for a in args.extra)])
    lines = [
        f"## {env_id}, {steps:,} RL steps ({time.strftime('%Y-%m-%d %H:%M')}; reference: plain {env_id} loop "
        f"{reference(env_id):,.0f} env steps/s, same run)\n\n`{' '.join(['policykd', 'distill', *common])}` "
        "`--seed S` with `--rl-start distilled --baseline-scratch` and with `--rl-start scratch`\n",
        HEADER,
    ]
    runs, teachers, held = [], [], []
    for seed in args.seeds:
        out_c, out_k = ROOT / f"{tag}-continued-{seed}", ROOT / f"{tag}-kickstarted-{seed}"
        continued = distill([*common, "--seed", str(seed), "--baseline-scratch"], out_c)
        kicked = distill([*common, "--seed", str(seed), "--rl-start", "scratch"], out_k)
        runs.append(curves(continued, kicked))
        held.append(finals(env_id, out_c, out_k, args.episodes))
        teachers.append(continued["teacher_return_mean"])
        lines += rows(seed, teachers[-1], runs[-1], held[-1])
        print("\n".join(lines[-3:]), flush=True)
    teacher_held = held_out(env_id, teacher_spec(), args.episodes)["return_mean"]
    lines.append(f"\nTeacher over the same {args.episodes} held-out episodes: {teacher_held:.1f}")
    for name in CURVES:
        ends = [h[name] for h in held]
        areas = [np.mean([r for _, r in run[name]]) / np.mean([r for _, r in run["plain"]]) for run in runs]
        lines.append(
            f"\n{name}, held out: {np.mean(ends):.1f} (seeds {', '.join(f'{f:.0f}' for f in ends)}); "
            f"≥ plain at {sum(f >= h['plain'] for f, h in zip(ends, held))}/{len(runs)} seeds, ≥ teacher at "
            f"{sum(f >= teacher_held for f in ends)}/{len(runs)}; area {np.mean(areas):.2f}x plain's on average"
        )
    picture(env_id, float(np.mean(teachers)), runs, ROOT / f"{tag}.png")
    lines.append(f"\nPicture: {ROOT / f'{tag}.png'}")
    report(ROOT, lines)


if __name__ == "__main__":
    main()
