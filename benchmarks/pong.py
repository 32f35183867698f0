"""Pong's default run over several seeds: wall-clock, peak memory, and teacher vs student on 50 held-out episodes.

Run by hand, with nothing else running (each seed is a full default run, then a 50-episode evaluation):

    python benchmarks/pong.py                                        # the default: 5 seeds x 50 episodes
    python benchmarks/pong.py --arch 16,16,16,16 --out runs/bench-pong-1pct   # the 1.4 % student, the same way
    python benchmarks/pong.py --seeds 2 --episodes 20                # a quicker look

Per seed S: `/usr/bin/time -v policykd distill --env ALE/Pong-v5 --seed S --out OUT/seed-S --overwrite --quiet
[--student-arch A]` (wall-clock, peak RSS, the run's own 20-episode figures), then
`policykd evaluate --env ALE/Pong-v5 --model OUT/seed-S/student.zip --episodes 50 --seed 20000`: held-out episodes
(the runs evaluate on seeds 10000+), the same 50 for every student and for the teacher, evaluated once. A 50-episode
Pong mean has a standard error near 0.5 points. The reference measured in the same run: agent steps/s of the
preset's env stack (8 envs, random actions, one process), so times can be compared across machines as ratios.
Writes OUT/pong.md (the table), OUT/pong.json (every figure) and OUT/pong.png (the seeds' runs on one figure).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import time
from pathlib import Path

import numpy as np
from common import HOLDOUT_SEED, held_out  # benchmarks/ is on sys.path when run as a script

from policykd.report.compare import plot_benchmark

ENV = "ALE/Pong-v5"


FLOOR_STEPS = 360_000
"""Agent steps a default run steps (200k collected, 20 + 20 evaluation games): issue 33's floor unit is the time
SB3's stack takes for them at the reference speed."""


def env_steps_per_second(seconds: float = 10.0, stack: str = "sb3") -> float:
    """Agent steps/s of SB3's Atari stack (make_atari_env + 4-frame stack, one process), 8 envs, random actions:
    the reference every Pong figure has been quoted with, whichever stack the runs use (`stack="native"`: ale-py's
    vector env the same way, `benchmarks/atari_stacks.py`)."""
    from policykd.envs import EnvFactory

    venv = EnvFactory(ENV, atari_stack=stack).make(8, 0)  # type: ignore[arg-type]  # "sb3" or "native"
    venv.reset()
    rng, steps, start = np.random.default_rng(0), 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        venv.step(rng.integers(0, venv.action_space.n, 8))
        steps += 8
    venv.close()
    return steps / (time.perf_counter() - start)


def distill(out: Path, seed: int, arch: str | None, extra: list[str]) -> dict:
    cmd = ["policykd", "distill", "--env", ENV, "--seed", str(seed), "--out", str(out), "--overwrite", "--quiet"]
    cmd += (["--student-arch", arch] if arch else []) + extra
    start = time.time()
    done = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {done.stderr.strip().splitlines()[-1]}")
    peak_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr).group(1))
    summary = json.loads((out / "summary.json").read_text())
    return {
        "command": " ".join(cmd),
        "wall_seconds": time.time() - start,
        "peak_rss_gb": peak_kb / 1024**2,
        "run_teacher": summary["teacher_return_mean"],
        "run_student": summary["student_return_mean"],
        "params": summary["student_params"],
        "teacher_params": summary["teacher_params"],
        "bytes_per_transition": summary.get("buffer_bytes_per_transition"),
        "seconds_by_phase": summary.get("seconds_by_phase"),
        "teacher_returns_source": summary.get("teacher_returns_source"),
        "atari_stack": summary.get("atari_stack"),
    }


def evaluate(model: str, episodes: int) -> list[float]:
    return held_out(ENV, model, episodes)["returns"]


def table(rows: list[dict], teacher: list[float], reference: float, episodes: int) -> str:
    t = float(np.mean(teacher))
    lines = [
        f"Reference, same run: {reference:,.0f} agent steps/s (SB3's Atari stack, 8 envs, random actions, one process);"
        f" a floor unit = {FLOOR_STEPS:,} steps at that speed = {FLOOR_STEPS / reference:.0f} s.",
        f"Teacher on the {episodes} held-out episodes (seeds {HOLDOUT_SEED}+): {t:+.2f} ± {np.std(teacher):.2f}.",
        "",
        "| seed | wall-clock (floor units) | peak RSS | run: teacher / student (20 ep.) | student, held-out"
        " | student − teacher | teacher eval / collect / train / evaluate (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        s = float(np.mean(r["held_out"]))
        phases = r.get("seconds_by_phase") or {}
        kept = "" if r.get("teacher_returns_source") == "played" else " (kept)"
        lines.append(
            f"| {r['seed']} | {r['wall_seconds'] / 60:.1f} min ({r['wall_seconds'] * reference / FLOOR_STEPS:.2f}) "
            f"| {r['peak_rss_gb']:.2f} GB | {r['run_teacher']:+.2f} / {r['run_student']:+.2f} "
            f"| {s:+.2f} ± {np.std(r['held_out']):.2f} | {s - t:+.2f} | {phases.get('teacher_eval', 0):.1f}{kept} / "
            f"{phases.get('collect', 0):.1f} / {phases.get('train', 0):.1f} / {phases.get('evaluate', 0):.1f} |"
        )
    means = [float(np.mean(r["held_out"])) for r in rows]
    walls = [r["wall_seconds"] / 60 for r in rows]
    lines += [
        "",
        f"Student mean over {len(rows)} seeds × {episodes} episodes: {np.mean(means):+.2f} (seed means' spread "
        f"{np.std(means):.2f}, worst seed {min(means):+.2f}: {min(means) - t:+.2f} against the teacher); "
        f"wall-clock {np.mean(walls):.1f} min (max {max(walls):.1f}); peak RSS max {max(r['peak_rss_gb'] for r in rows):.2f} GB; "
        f"student {rows[0]['params']:,} / teacher {rows[0]['teacher_params']:,} params "
        f"({100 * rows[0]['params'] / rows[0]['teacher_params']:.1f} %).",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--arch", default=None, help="--student-arch of every run (default: the preset's student)")
    parser.add_argument("--out", default="runs/bench-pong")
    parser.add_argument("extra", nargs="*", help="more distill flags, after --")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    reference = env_steps_per_second()
    print(f"reference: {reference:,.0f} agent steps/s", flush=True)
    rows = []
    for seed in range(args.seeds):
        row = {"seed": seed, **distill(out / f"seed-{seed}", seed, args.arch, args.extra)}
        row["held_out"] = evaluate(str(out / f"seed-{seed}" / "student.zip"), args.episodes)
        print(
            json.dumps({k: v for k, v in row.items() if k != "held_out"}),
            f"held-out {np.mean(row['held_out']):+.2f}",
            flush=True,
        )
        rows.append(row)
    teacher = evaluate("pong-ppo-v5", args.episodes)
    report = table(rows, teacher, reference, args.episodes)
    (out / "pong.md").write_text(report + "\n")
    (out / "pong.json").write_text(
        json.dumps({"reference_steps_per_s": reference, "teacher_held_out": teacher, "rows": rows}, indent=1)
    )
    print(report)
    for figure in plot_benchmark(
        [out / f"seed-{r['seed']}" for r in rows], out, "pong", [f"seed {r['seed']}" for r in rows]
    ):
        print(f"figure: {figure}")


if __name__ == "__main__":
    main()
