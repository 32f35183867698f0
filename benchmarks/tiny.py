"""The 1 % students: does a teacher assistant (--stages), per-state weighting (--weighting), feature hints or
relational KD help them?

Run by hand:

    python benchmarks/tiny.py                 # Walker2d-v5, 16x16 students (1 % of the shipped TQC teacher), seeds 0-1
    python benchmarks/tiny.py --env HalfCheetah-v5 --seeds 3
    python benchmarks/tiny.py --variants direct hints relations "hints + relations"

Every variant runs the env's preset budget with the same seed and student size; "direct" is plain KL, as the
default run does. Each run's final evaluation (10 episodes, the run's evaluation seeds) gives the return ratio; the
table prints them per seed with the mean. The reference, measured in the same run: env steps/s of a plain loop.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from pathlib import Path

import numpy as np
from common import reference, report

ROOT = Path("runs/bench-tiny")
VARIANTS = {
    "direct": [],
    "weighting kl": ["--weighting", "kl"],
    "weighting teacher-confidence": ["--weighting", "teacher-confidence"],
    "stages 44,44:16,16": ["--stages", "44,44:16,16"],
    "hints": ["--hint-weight", "1"],
    "relations": ["--relation-weight", "1"],
    "hints + relations": ["--hint-weight", "1", "--relation-weight", "1"],
}
FIRST = ("direct", "weighting kl", "weighting teacher-confidence", "stages 44,44:16,16")


def run(env: str, args: list[str], seed: int, out: Path) -> tuple[float, float]:
    """`policykd distill --env ENV ARGS --seed S`: the final return ratio and the wall-clock."""
    cmd = ["policykd", "distill", "--env", env, *args, "--seed", str(seed), "--out", str(out), "--overwrite", "--quiet"]
    start = time.time()
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {done.stderr.strip()[-400:]}")
    summary = json.loads((out / "summary.json").read_text())
    print(f"# {' '.join(cmd)}: {summary['return_ratio']:.3f}", flush=True)
    return summary["return_ratio"], time.time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="Walker2d-v5")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(FIRST))
    args = parser.parse_args()
    ROOT.mkdir(parents=True, exist_ok=True)
    lines = [
        f"## {args.env}, 16x16 students ({time.strftime('%Y-%m-%d %H:%M')}; reference: plain {args.env} loop "
        f"{reference(args.env):,.0f} env steps/s, same run)",
        "",
        "| variant | " + " | ".join(f"seed {s}" for s in range(args.seeds)) + " | mean | wall (mean) |",
        "|---|" + "---|" * (args.seeds + 2),
    ]
    for name in args.variants:
        variant = VARIANTS[name]
        variant = variant if "--stages" in variant else ["--student-arch", "16,16", *variant]
        results = [
            run(args.env, variant, seed, ROOT / f"{args.env}-{name.replace(' ', '_')}-{seed}")
            for seed in range(args.seeds)
        ]
        ratios = [r for r, _ in results]
        lines.append(
            f"| {name} | "
            + " | ".join(f"{r:.1%}" for r in ratios)
            + f" | **{np.mean(ratios):.1%}** | {np.mean([w for _, w in results]) / 60:.1f} min |"
        )
        print(lines[-1], flush=True)
    report(ROOT, lines)


if __name__ == "__main__":
    main()
