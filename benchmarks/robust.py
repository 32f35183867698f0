"""Robustness: teacher, plain student and augmented students under observation noise and FGSM, same episode seeds.

Run by hand:

    python benchmarks/robust.py                       # HalfCheetah-v5 and Walker2d-v5, 10 episodes per cell
    python benchmarks/robust.py --envs HalfCheetah-v5 --episodes 50

Each student is the env's default run (`policykd distill --env ENV`), plain or with `--augment`; each is evaluated
with `policykd evaluate --model RUN/student.zip --teacher <shipped teacher> --perturb ... --json`, so the teacher
and the student meet the same perturbations on the same seeds. The reference, measured in the same run: env
steps/s of a plain loop of the env with random actions.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from pathlib import Path

from common import reference, report

ROOT = Path("runs/bench-robust")
TEACHERS = {"HalfCheetah-v5": "halfcheetah-sac-v5", "Hopper-v5": "hopper-tqc-v5", "Walker2d-v5": "walker2d-tqc-v5"}
STUDENTS = {
    "plain": [],
    "augment obs-noise=0.05": ["--augment", "obs-noise=0.05"],
    "augment fgsm=0.01": ["--augment", "fgsm=0.01"],
}
PERTURB = ("obs-noise=0.05", "fgsm=0.01")


def call(cmd: list[str]) -> str:
    print("#", " ".join(cmd), flush=True)
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {done.stderr.strip()[-400:]}")
    return done.stdout


def cells(env: str, name: str, extra: list[str], episodes: int) -> dict:
    out = ROOT / f"{env}-{name.split()[0]}{'-' + name.split()[-1] if extra else ''}"
    if not (out / "summary.json").is_file():
        call(["policykd", "distill", "--env", env, *extra, "--out", str(out), "--overwrite", "--quiet"])
    perturb = [a for p in PERTURB for a in ("--perturb", p)]
    return json.loads(
        call(
            [
                "policykd",
                "evaluate",
                "--env",
                env,
                "--model",
                str(out / "student.zip"),
                "--teacher",
                TEACHERS[env],
                "--episodes",
                str(episodes),
                *perturb,
                "--json",
            ]
        )
    )


def table(env: str, results: dict[str, dict]) -> list[str]:
    first = next(iter(results.values()))
    header = "| condition | teacher | " + " | ".join(f"student, {n}" for n in results) + " |"
    lines = [header, "|---|" + "---|" * (len(results) + 1)]

    def fmt(r: dict, t: dict) -> str:
        return f"{r['return_mean']:,.1f} ({r['return_mean'] / t['return_mean']:.1%})"

    rows = [("clean", lambda res: res["model"], first["teacher"])]
    for k, label in enumerate(PERTURB):
        rows.append((label, lambda res, k=k: res["perturbed"][k]["model"], first["perturbed"][k]["teacher"]))
    for label, pick, teacher in rows:
        lines.append(
            f"| {label} | {teacher['return_mean']:,.1f} | "
            + " | ".join(fmt(pick(res), teacher) for res in results.values())
            + " |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", nargs="+", default=["HalfCheetah-v5", "Walker2d-v5"])
    parser.add_argument("--episodes", type=int, default=10)
    args = parser.parse_args()
    report(ROOT, tables(args.envs, args.episodes))


def tables(envs: list[str], episodes: int) -> list[str]:
    """The robustness table of each env (what `benchmarks/knowledge.py robust` prints too)."""
    ROOT.mkdir(parents=True, exist_ok=True)
    lines = []
    for env in envs:
        lines += [
            f"## {env} ({time.strftime('%Y-%m-%d %H:%M')}; reference: plain {env} loop {reference(env):,.0f} "
            f"env steps/s, same run; {episodes} episodes per cell, % of the teacher under the same "
            "condition)",
            "",
        ]
        results = {name: cells(env, name, extra, episodes) for name, extra in STUDENTS.items()}
        lines += table(env, results) + [""]
        print("\n".join(lines), flush=True)
    return lines


if __name__ == "__main__":
    main()
