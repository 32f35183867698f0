"""More than the action distribution, one script: hints and relations, cross-family ensembles, robustness.

Run by hand:

    python benchmarks/knowledge.py losses --env Walker2d-v5 --seeds 5   # plain KL vs hints vs relations vs both
    python benchmarks/knowledge.py losses --env ALE/Pong-v5 --sizes 1%  # the 1.4 % Pong student only
    python benchmarks/knowledge.py losses --sizes 1% --variants "plain KL" hints --first-seed 3 --seeds 2
    python benchmarks/knowledge.py ensembles                            # CartPole, HalfCheetah: members vs ensemble
    python benchmarks/knowledge.py robust --envs HalfCheetah-v5         # benchmarks/robust.py's table

`losses`: per env, the default student and the ~1 % one (MuJoCo 16x16, Pong 16 channels, CartPole 4x4), each with
plain KL, `--hint-weight 1`, `--relation-weight 1` and both, at the env's preset budget and the same seeds.
`ensembles`: each rl-zoo member distilled alone, then the cross-family ensemble of them with each
`--teacher-weighting`, at the same budget and student size; CartPole at a small budget (5,000 env steps, so the
students differ). Each row is one `policykd distill` (its command is printed); the return is the run's final
evaluation (the run's seeds, the same for every row of an env). The reference, measured in the same run: env
steps/s of a plain loop of the env.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from common import ZOO, reference, report
from robust import tables as robust_tables
from tiny import run

ROOT = Path("runs/bench-knowledge")
ONE_PERCENT = {"CartPole-v1": "4,4", "ALE/Pong-v5": "16,16,16,16"}  # others (MuJoCo): 16,16
LOSSES = {
    "plain KL": [],
    "hints": ["--hint-weight", "1"],
    "relations": ["--relation-weight", "1"],
    "hints + relations": ["--hint-weight", "1", "--relation-weight", "1"],
}
ENSEMBLES = {  # env -> (rl-zoo members, budget arguments)
    "CartPole-v1": (["dqn/CartPole-v1_1", "ppo/CartPole-v1_1"], ["--steps", "5000"]),
    "HalfCheetah-v5": (["sac/HalfCheetah-v3_1", "ppo/HalfCheetah-v3_1"], []),
}
WEIGHTINGS = ("select", "fixed", "confidence", "return")


def _row(name: str, results: list[tuple[float, float]]) -> str:
    ratios = [r for r, _ in results]
    return (
        f"| {name} | " + " | ".join(f"{r:.1%}" for r in ratios) + f" | **{np.mean(ratios):.1%}** | "
        f"{min(ratios):.1%} | {np.mean([w for _, w in results]) / 60:.1f} min |"
    )


def _header(title: str, env: str, seeds: range) -> list[str]:
    return [
        f"## {title} ({time.strftime('%Y-%m-%d %H:%M')}; reference: plain {env} loop {reference(env):,.0f} env "
        "steps/s, same run; return / teacher return)",
        "",
        "| variant | " + " | ".join(f"seed {s}" for s in seeds) + " | mean | worst | wall (mean) |",
        "|---|" + "---|" * (len(seeds) + 3),
    ]


def losses(env: str, seeds: range, sizes: list[str], variants: list[str]) -> list[str]:
    lines = []
    for size in sizes:
        arch = [] if size == "default" else ["--student-arch", ONE_PERCENT.get(env, "16,16")]
        lines += _header(f"{env}, {size} student", env, seeds)
        for name in variants:
            extra = LOSSES[name]
            tag = f"{env.replace('/', '_')}-{size.replace('%', 'pct')}-{name.replace(' ', '')}"
            results = [run(env, [*arch, *extra], s, ROOT / f"{tag}-{s}") for s in seeds]
            lines.append(_row(name, results))
            print(lines[-1], flush=True)
        lines.append("")
    return lines


def _returns(out: Path) -> float:
    return json.loads((out / "summary.json").read_text())["student_return_mean"]


def ensembles(envs: list[str], seeds: int) -> list[str]:
    """Return of each member's student and of the ensemble's, in env units (the members' teachers differ, so a
    ratio to "the teacher" would not compare rows)."""
    lines = []
    for env in envs:
        members, budget = ENSEMBLES[env]
        variants = {f"{m} alone": ["--teacher", str(ZOO / m)] for m in members}
        both = [a for m in members for a in ("--teacher", str(ZOO / m))]
        variants.update({f"ensemble, --teacher-weighting {w}": [*both, "--teacher-weighting", w] for w in WEIGHTINGS})
        lines += [
            f"## {env}: cross-family ensemble vs each member ({time.strftime('%Y-%m-%d %H:%M')}; reference: "
            f"plain {env} loop {reference(env):,.0f} env steps/s, same run; student return, 10 episodes)",
            "",
            "| students of | " + " | ".join(f"seed {s}" for s in range(seeds)) + " | mean |",
            "|---|" + "---|" * (seeds + 1),
        ]
        for name, extra in variants.items():
            outs = [
                ROOT / f"{env}-{name.split(',')[-1].strip().replace(' ', '_').replace('/', '_')}-{s}"
                for s in range(seeds)
            ]
            for seed, out in enumerate(outs):
                run(env, [*budget, *extra], seed, out)
            returns = [_returns(out) for out in outs]
            lines.append(
                f"| {name} | " + " | ".join(f"{r:,.1f}" for r in returns) + f" | **{np.mean(returns):,.1f}** |"
            )
            print(lines[-1], flush=True)
        lines.append("")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="part", required=True)
    p = sub.add_parser("losses")
    p.add_argument("--env", default="Walker2d-v5")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--sizes", nargs="+", choices=["default", "1%"], default=["default", "1%"])
    p.add_argument("--variants", nargs="+", choices=list(LOSSES), default=list(LOSSES))
    p.add_argument("--first-seed", type=int, default=0, help="seeds first-seed .. first-seed + seeds - 1")
    p = sub.add_parser("ensembles")
    p.add_argument("--envs", nargs="+", choices=list(ENSEMBLES), default=list(ENSEMBLES))
    p.add_argument("--seeds", type=int, default=3)
    p = sub.add_parser("robust")
    p.add_argument("--envs", nargs="+", default=["HalfCheetah-v5", "Walker2d-v5"])
    p.add_argument("--episodes", type=int, default=10)
    args = parser.parse_args()
    ROOT.mkdir(parents=True, exist_ok=True)
    if args.part == "losses":
        report(ROOT, losses(args.env, range(args.first_seed, args.first_seed + args.seeds), args.sizes, args.variants))
    elif args.part == "ensembles":
        report(ROOT, ensembles(args.envs, args.seeds))
    else:
        robust_tables(args.envs, args.episodes)


if __name__ == "__main__":
    main()
