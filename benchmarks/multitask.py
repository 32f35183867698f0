"""One student for several tasks against one student per task: held-out returns, sizes and wall-clock.

Run by hand:

    python benchmarks/multitask.py mujoco --seeds 0 1 2 3 4       # HalfCheetah + Hopper + Walker2d, shipped teachers
    python benchmarks/multitask.py classic --holdout 500          # CartPole (shipped) + Acrobot (rl-zoo's DQN)
    python benchmarks/multitask.py cheetah-walker --variants own="--task-input own" shared="--task-input shared"
    python benchmarks/multitask.py classic --variants fixed="--task-balance fixed" adaptive="--task-balance adaptive" \
        --out runs/bench-multitask/balance -- --steps 3000

Per seed, one after another in one process (so their wall-clocks are measured side by side): the multi-task run
`policykd distill --env A --env B ... --seed S`, then each env's default single-task run `policykd distill --env A
--seed S` (each the widest within its preset's fraction of its own teacher: together about the multi-task student's
total size, which the table gives). `--jobs 2` runs two seeds at once (one core each). Every student and teacher is
then evaluated on `--holdout` held-out episodes (seeds 20000+, never used by a run). A reference speed (a plain
random-action loop of the first env) is measured at the start. Rows go to OUT/rows.jsonl (a finished row is not
run again) and the table to OUT/results.md.

`--variants NAME="FLAGS" ...` compares multi-task runs instead (no single-task runs): per seed, one multi-task run per
variant with its flags added (e.g. --task-input own against shared, --task-balance fixed against adaptive), each
evaluated on the same held-out episodes.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from common import ZOO, held_out, reference, report  # noqa: E402  (benchmarks/ is on sys.path as a script)

from policykd.envs import folder_name
from policykd.teachers.shipped import default_agent

SETS = {
    "mujoco": {"HalfCheetah-v5": None, "Hopper-v5": None, "Walker2d-v5": None},
    "classic": {"CartPole-v1": None, "Acrobot-v1": str(ZOO / "dqn/Acrobot-v1_1")},
    "cheetah-walker": {"HalfCheetah-v5": None, "Walker2d-v5": None},  # one observation size (17): --task-input applies
}


def teacher(env_id: str, given: str | None) -> str:
    return given or str(default_agent(env_id).folder)


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def multi_command(tasks: dict[str, str | None]) -> list[str]:
    cmd = ["policykd", "distill", *[a for env in tasks for a in ("--env", env)]]
    return cmd + [f"--teacher={env}={spec}" for env, spec in tasks.items() if spec]


def one_seed(tasks: dict[str, str | None], seed: int, root: Path, extra: list[str]) -> dict:
    multi = root / f"multi-{seed}"
    cmd = multi_command(tasks)
    row: dict = {"seed": seed, "multi_cmd": " ".join(cmd + ["--seed", str(seed), *extra])}
    row["multi_wall"] = timed([*cmd, "--seed", str(seed), "--out", str(multi), "--quiet", *extra])
    row["single_wall"] = {}
    for env, spec in tasks.items():
        single = ["policykd", "distill", "--env", env, *(["--teacher", spec] if spec else [])]
        out = root / f"single-{folder_name(env)}-{seed}"
        row["single_wall"][env] = timed([*single, "--seed", str(seed), "--out", str(out), "--quiet", *extra])
    return row


def evaluate_seed(tasks: dict[str, str | None], row: dict, root: Path, episodes: int, teachers: dict) -> dict:
    seed = row["seed"]
    summary = json.loads((root / f"multi-{seed}" / "summary.json").read_text())
    row["multi_params"], row["teacher_params"] = summary["student_params"], summary["teacher_params"]
    row["multi_arch"] = summary["student_arch"]
    row["tasks"] = {}
    for env in tasks:
        single = root / f"single-{folder_name(env)}-{seed}"
        single_summary = json.loads((single / "summary.json").read_text())
        row["tasks"][env] = {
            "teacher": teachers[env],
            "multi": held_out(env, str(root / f"multi-{seed}" / folder_name(env)), episodes)["return_mean"],
            "single": held_out(env, str(single), episodes)["return_mean"],
            "single_params": single_summary["student_params"],
            "single_arch": single_summary["student_arch"],
        }
    return row


def variants_seed(tasks: dict[str, str | None], seed: int, root: Path, extra: list[str], variants: dict) -> dict:
    """One multi-task run per variant at `seed`, one after another (their wall-clocks side by side)."""
    row: dict = {"seed": seed, "variants": {}}
    for name, flags in variants.items():
        cmd = [*multi_command(tasks), "--seed", str(seed), *flags.split(), *extra]
        out = root / f"{name}-{seed}"
        row["variants"][name] = {"cmd": " ".join(cmd), "wall": timed([*cmd, "--out", str(out), "--quiet"])}
    return row


def evaluate_variants(tasks: dict[str, str | None], row: dict, root: Path, episodes: int, teachers: dict) -> dict:
    for name, variant in row["variants"].items():
        out = root / f"{name}-{row['seed']}"
        summary = json.loads((out / "summary.json").read_text())
        variant["params"], variant["teacher_params"] = summary["student_params"], summary["teacher_params"]
        variant["returns"] = {env: held_out(env, str(out / folder_name(env)), episodes)["return_mean"] for env in tasks}
    row["teachers"] = teachers
    return row


def variants_table(rows: list[dict], envs: list[str], speed: float, first: str) -> list[str]:
    lines = [
        f"reference: a plain {first} loop, {speed:,.0f} env steps/s; held-out episodes per task and seed",
        "",
        "| seed | variant | params | " + " | ".join(f"{e} return (ratio)" for e in envs) + " | geometric mean | "
        "lowest | wall-clock |",
        "|---|---|---|" + "---|" * len(envs) + "---|---|---|",
    ]
    means: dict[str, list[list[float]]] = {}
    for row in rows:
        for name, variant in row["variants"].items():
            ratios = [ratio(variant["returns"][e], row["teachers"][e]) for e in envs]
            means.setdefault(name, []).append(ratios)
            cells = [f"{variant['returns'][e]:.1f} ({100 * r:.1f} %)" for e, r in zip(envs, ratios)]
            lines.append(
                f"| {row['seed']} | {name} | {variant['params']:,} | "
                + " | ".join(cells)
                + f" | {100 * geometric(ratios):.1f} % | {100 * min(ratios):.1f} % | {variant['wall']:.0f} s |"
            )
    lines.append("")
    for name, per_seed in means.items():
        by_task = [sum(r[i] for r in per_seed) / len(per_seed) for i in range(len(envs))]
        lines.append(
            f"{name}: mean over {len(per_seed)} seeds "
            + ", ".join(f"{e} {100 * r:.1f} %" for e, r in zip(envs, by_task))
            + f"; mean geometric mean {100 * sum(geometric(r) for r in per_seed) / len(per_seed):.1f} %"
            + f"; mean lowest {100 * sum(min(r) for r in per_seed) / len(per_seed):.1f} %"
        )
    lines += ["", "teachers (held out): " + ", ".join(f"{e} {rows[0]['teachers'][e]:.1f}" for e in envs)]
    lines += [f"{name}: `{variant['cmd']}`" for name, variant in rows[0]["variants"].items()]
    return lines


def geometric(ratios: list[float]) -> float:
    return math.exp(sum(math.log(max(r, 1e-9)) for r in ratios) / len(ratios))


def ratio(student: float, teacher: float) -> float:
    return 1 + (student - teacher) / abs(teacher)


def table(rows: list[dict], envs: list[str], speed: float, first: str) -> list[str]:
    lines = [
        f"reference: a plain {first} loop, {speed:,.0f} env steps/s; held-out episodes per task and seed",
        "",
        "| seed | student | params (% of teachers) | "
        + " | ".join(f"{e} return (ratio)" for e in envs)
        + " | geometric mean | wall-clock |",
        "|---|---|---|" + "---|" * len(envs) + "---|---|",
    ]
    for row in rows:
        for who in ("multi", "single"):
            ratios = [ratio(row["tasks"][e][who], row["tasks"][e]["teacher"]) for e in envs]
            params = row["multi_params"] if who == "multi" else sum(row["tasks"][e]["single_params"] for e in envs)
            wall = row["multi_wall"] if who == "multi" else sum(row["single_wall"].values())
            cells = [f"{row['tasks'][e][who]:.1f} ({100 * r:.1f} %)" for e, r in zip(envs, ratios)]
            geo = geometric(ratios)
            name = "one for all" if who == "multi" else "one per task"
            lines.append(
                f"| {row['seed']} | {name} | {params:,} ({100 * params / row['teacher_params']:.1f} %) | "
                + " | ".join(cells)
                + f" | {100 * geo:.1f} % | {wall / 60:.1f} min |"
            )
    teachers = rows[0]["tasks"]
    lines += ["", "teachers (held out): " + ", ".join(f"{e} {teachers[e]['teacher']:.1f}" for e in envs)]
    lines += ["", f"multi-task command: `{rows[0]['multi_cmd']}`"]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("set", choices=sorted(SETS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--holdout", type=int, default=50)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--out", default=None)
    parser.add_argument("--evaluate-only", action="store_true", help="evaluate the seeds already run; run none")
    parser.add_argument("--variants", nargs="+", default=[], help='NAME="FLAGS": compare multi-task runs instead')
    parser.add_argument("extra", nargs="*", help="more distill flags for every run (after --)")
    args = parser.parse_intermixed_args()  # flags after the positional set, distill flags after --
    tasks = SETS[args.set]
    variants = dict(v.split("=", 1) for v in args.variants)
    root = Path(args.out or f"runs/bench-multitask/{args.set}")
    root.mkdir(parents=True, exist_ok=True)
    envs = list(tasks)
    speed = cached(root / "reference.json", lambda: reference(envs[0]))
    done_rows = root / "rows.jsonl"
    finished = {r["seed"]: r for r in map(json.loads, done_rows.read_text().splitlines())} if done_rows.exists() else {}
    todo = [] if args.evaluate_only else [s for s in args.seeds if s not in finished]
    with ThreadPoolExecutor(args.jobs) as pool:
        run = (lambda s: variants_seed(tasks, s, root, args.extra, variants)) if variants else None
        for row in pool.map(run or (lambda s: one_seed(tasks, s, root, args.extra)), todo):
            with open(done_rows, "a") as f:
                f.write(json.dumps(row) + "\n")
            finished[row["seed"]] = row
    seeds = [s for s in args.seeds if s in finished]
    teachers = cached(
        root / "teachers.json",
        lambda: {e: held_out(e, teacher(e, t), args.holdout)["return_mean"] for e, t in tasks.items()},
    )
    with ThreadPoolExecutor(args.jobs) as pool:
        rows = list(
            pool.map(
                lambda s: cached(
                    root / f"evaluated-{s}.json",
                    lambda: (evaluate_variants if variants else evaluate_seed)(
                        tasks, finished[s], root, args.holdout, teachers
                    ),
                ),
                seeds,
            )
        )
    lines = (variants_table if variants else table)(rows, envs, speed, envs[0])
    if not args.evaluate_only or len(seeds) == len(args.seeds):
        report(root, lines)
    else:
        print("\n".join(lines))


def cached(path: Path, compute):
    """The JSON at `path`, else `compute()` written there: a benchmark stopped in its evaluations resumes."""
    if path.exists():
        return json.loads(path.read_text())
    value = compute()
    path.write_text(json.dumps(value, indent=2))
    return value


if __name__ == "__main__":
    main()
