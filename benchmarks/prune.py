"""Pruning: a student pruned to about 1 % of its teacher against one of the same size distilled directly.

Run by hand (MuJoCo: about 12 minutes per env on one core):

    python benchmarks/prune.py --env Walker2d-v5 --fraction 0.01
    python benchmarks/prune.py --env HalfCheetah-v5 --fraction 0.01

Per env, three commands, each reusing its output folder when it already finished:

    policykd distill --env ENV --out OUT/ENV/distilled                                 # the default student
    policykd prune OUT/ENV/distilled --fraction F --out OUT/ENV/pruned                 # cut and healed, in cycles
    policykd distill --env ENV --student-arch <the pruned arch> --out OUT/ENV/direct   # the same size, distilled directly

then teacher, pruned and direct students over `--holdout` episodes on held-out seeds (20000+, used by nothing
else) with `policykd evaluate`. Prints one markdown table; each row names its command.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from pathlib import Path

from common import HOLDOUT_SEED, held_out  # benchmarks/ is on sys.path when run as a script


def sh(cmd: list[str]) -> float:
    """Run `cmd` (unless its output folder has a summary.json); the wall-clock seconds it took."""
    out = Path(cmd[cmd.index("--out") + 1])
    if (out / "summary.json").is_file():
        return float("nan")
    start = time.time()
    subprocess.run(cmd, check=True)
    return time.time() - start


def holdout(env_id: str, model: str, episodes: int) -> tuple[float, float]:
    result = held_out(env_id, model, episodes)
    return result["return_mean"], result["return_std"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", required=True)
    parser.add_argument("--fraction", type=float, default=0.01)
    parser.add_argument("--cycles", type=int, default=3)
    parser.add_argument("--holdout", type=int, default=50)
    parser.add_argument("--out", type=Path, default=Path("runs/bench-prune"))
    args = parser.parse_args()
    root = args.out / args.env.replace("/", "-")
    distilled, pruned, direct = root / "distilled", root / "pruned", root / "direct"
    commands = {"distilled": ["policykd", "distill", "--env", args.env, "--out", str(distilled), "--quiet"]}
    walls = {"distilled": sh(commands["distilled"])}
    commands["pruned"] = [
        "policykd",
        "prune",
        str(distilled),
        "--fraction",
        str(args.fraction),
        "--cycles",
        str(args.cycles),
        "--out",
        str(pruned),
        "--quiet",
    ]
    walls["pruned"] = sh(commands["pruned"])
    arch = json.loads((pruned / "summary.json").read_text())["student_arch"]
    commands["direct"] = [
        "policykd",
        "distill",
        "--env",
        args.env,
        "--student-arch",
        ",".join(map(str, arch)),
        "--out",
        str(direct),
        "--quiet",
    ]
    walls["direct"] = sh(commands["direct"])
    base = json.loads((distilled / "summary.json").read_text())
    teacher = holdout(args.env, base["teachers"][0], args.holdout)
    print(
        f"\n{args.env}: teacher {teacher[0]:.1f} ± {teacher[1]:.1f} over {args.holdout} held-out episodes "
        f"(seeds {HOLDOUT_SEED}+); teacher params {base['teacher_params']:,}\n"
    )
    print(
        "| student | arch | params (% of teacher) | return (10 eval seeds) | held out | % of teacher held out | wall s | command |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, folder in (("distilled", distilled), ("pruned", pruned), ("direct", direct)):
        s = json.loads((folder / "summary.json").read_text())
        mean, std = holdout(args.env, str(folder / "student.zip"), args.holdout)
        print(
            f"| {name} | {','.join(map(str, s['student_arch']))} | {s['student_params']:,} "
            f"({100 * s['student_params'] / s['teacher_params']:.2f} %) | {s['student_return_mean']:.1f} ± "
            f"{s['student_return_std']:.1f} | {mean:.1f} ± {std:.1f} | {100 * mean / teacher[0]:.1f} % | "
            f"{walls[name]:.0f} | `{' '.join(commands[name])}` |"
        )
    cycles = json.loads((pruned / "summary.json").read_text())["cycles"]
    print("\n| cycle | arch | params | return after the cut | after distilling |\n|---|---|---|---|---|")
    for c in cycles:
        print(
            f"| {c['cycle']} | {','.join(map(str, c['arch']))} | {c['params']:,} | {c['return_pruned']:.1f} | "
            f"{c['return_mean']:.1f} ± {c['return_std']:.1f} |"
        )


if __name__ == "__main__":
    main()
