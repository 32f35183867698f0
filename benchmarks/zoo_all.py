"""Every published agent with the default command: rl-zoo's folders, the shipped teachers, and agents given with
--extra (kinds the zoo folder lacks); per seed the student's return over held-out episodes, its ratio to the teacher
on the same episodes, the collapsed episodes and the student / teacher size.

Run by hand (hours on 2 cores for the MuJoCo rows; classic control in minutes):

    python benchmarks/zoo_all.py                              # every row, seeds 0 1 2, 50 held-out episodes
    python benchmarks/zoo_all.py --only CartPole --seeds 0    # a filter on the teacher and env
    python benchmarks/zoo_all.py --extra agents-small/ppo-walker2d-64:Walker2d-v5

Each run is `policykd distill --env ENV --teacher T --seed S --torch-threads 1 --out OUT --quiet` (the default
command; one torch thread so that two runs share the two cores: --jobs). Teacher and student are then evaluated by
`policykd evaluate --json` on the same held-out seeds (20000+, never used by a run). A collapsed episode scores below
half its teacher's held-out mean (`policykd.rollouts.collapsed_episodes`). Finished runs are kept and not re-run.
Results: OUT/rows.jsonl (a row per run) and the table, appended to OUT/results.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from common import ZOO, held_out, reference, report  # noqa: E402  (benchmarks/ is on sys.path as a script)
from mujoco_returns import ENVS
from zoo import ROWS

from policykd.rollouts import collapsed_episodes, return_ratio
from policykd.teachers.shipped import shipped_agents

# (folder under ZOO, env evaluated): every agent in ../shared/teachers/rl-zoo, as the two benchmarks that use them name
ZOO_ROWS = ROWS + [(folder, env) for env, folders in ENVS.items() for folder in folders]


def all_rows(zoo: Path, extra: list[str], pong: bool, shipped: bool) -> list[tuple[str, str]]:
    """(teacher spec, env id) for the zoo's agents, the shipped ones (Pong only when asked: ten minutes a run) and
    the --extra FOLDER:ENV agents."""
    rows = [(str(zoo / folder), env) for folder, env in ZOO_ROWS]
    cards = shipped_agents() if shipped else []
    rows += [(card.name, card.env_id) for card in cards if pong or not card.env_id.startswith("ALE/")]
    return rows + [tuple(spec.rsplit(":", 1)) for spec in extra]  # type: ignore[misc]


def slug(teacher: str, env_id: str) -> str:
    return f"{env_id.replace('/', '-')}--{Path(teacher).parent.name}-{Path(teacher).name}".replace("..", "")


def distill(teacher: str, env_id: str, seed: int, out: Path) -> dict:
    """One default run (kept when its summary exists) and its student on the held-out episodes."""
    if not (out / "summary.json").is_file():
        cmd = ["policykd", "distill", "--env", env_id, "--teacher", teacher, "--seed", str(seed)]
        cmd += ["--torch-threads", "1", "--out", str(out), "--overwrite", "--quiet"]
        start = time.time()
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            return {"error": (done.stderr.strip().splitlines() or ["?"])[-1][:160]}
        (out / "bench-wall.txt").write_text(f"{time.time() - start:.1f}\n")
    cached = out / "held-out.json"
    if not cached.is_file():
        cached.write_text(json.dumps(held_out(env_id, str(out), ARGS.episodes)))  # the run folder: its wrappers, view
    return {
        "summary": json.loads((out / "summary.json").read_text()),
        "student": json.loads(cached.read_text()),
        "wall": float((out / "bench-wall.txt").read_text()) if (out / "bench-wall.txt").is_file() else None,
    }


def teacher_held_out(teacher: str, env_id: str, root: Path) -> dict:
    cached = root / f"teacher--{slug(teacher, env_id)}.json"
    if not cached.is_file():
        cached.parent.mkdir(parents=True, exist_ok=True)
        cached.write_text(json.dumps(held_out(env_id, teacher, ARGS.episodes)))
    return json.loads(cached.read_text())


def row_of(teacher: str, env_id: str, seed: int, zoo: Path) -> dict:
    root = ARGS.out
    t = teacher_held_out(teacher, env_id, root)
    result = distill(teacher, env_id, seed, root / slug(teacher, env_id) / f"seed{seed}")
    row = {"teacher": teacher.replace(str(zoo), "$ZOO"), "env": env_id, "seed": seed, "teacher_mean": t["return_mean"]}
    if "error" in result:
        return {**row, **result}
    s, student = result["summary"], result["student"]
    return {
        **row,
        "teacher_std": t["return_std"],
        "teacher_collapsed": collapsed_episodes(t["returns"], t["return_mean"]),
        "student_mean": student["return_mean"],
        "student_std": student["return_std"],
        "ratio": return_ratio(student["return_mean"], t["return_mean"]),
        "collapsed": collapsed_episodes(student["returns"], t["return_mean"]),
        "student_params": s["student_params"],
        "teacher_params": s["teacher_params"],
        "student_arch": s["student_arch"],
        "size_reason": s.get("student_size", ""),
        "summary_ratio": s["return_ratio"],
        "wall": result["wall"],
    }


def table(rows: list[dict]) -> list[str]:
    """A line per agent: its seeds' ratios, their mean and minimum, collapses, size."""
    lines = [
        f"| teacher | env | teacher ({ARGS.episodes} held out) | student ratio per seed | mean | min "
        "| collapsed (student / teacher episodes) | params student / teacher | wall-clock per run |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    agents: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        agents.setdefault((row["teacher"], row["env"]), []).append(row)
    for (teacher, env), runs in agents.items():
        done = [r for r in runs if "error" not in r]
        if not done:
            lines.append(f"| {teacher} | {env} | failed: {runs[0]['error']} |||||||")
            continue
        ratios = [r["ratio"] for r in done]
        first = done[0]
        lines.append(
            f"| {teacher} | {env} | {first['teacher_mean']:,.1f} ± {first['teacher_std']:,.1f} "
            f"| {', '.join(f'{100 * x:.1f} %' for x in ratios)} | {100 * np.mean(ratios):.1f} % "
            f"| {100 * min(ratios):.1f} % | {sum(r['collapsed'] for r in done)} / {first['teacher_collapsed']} "
            f"(of {ARGS.episodes} × {len(done)} / {ARGS.episodes}) "
            f"| {first['student_params']:,} / {first['teacher_params']:,} "
            f"({100 * first['student_params'] / first['teacher_params']:.1f} %) "
            f"| {np.mean([r['wall'] or np.nan for r in done]):.0f} s |"
        )
    return lines


def main() -> None:
    global ARGS
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--zoo", type=Path, default=ZOO)
    parser.add_argument("--out", type=Path, default=Path("runs/bench-zoo-all"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--episodes", type=int, default=50, help="held-out episodes per teacher and student")
    parser.add_argument("--only", default="", help="keep rows whose teacher or env contains this")
    parser.add_argument("--extra", action="append", default=[], metavar="FOLDER:ENV", help="more agents (repeatable)")
    parser.add_argument("--pong", action="store_true", help="the shipped Pong teacher too (about ten minutes a run)")
    parser.add_argument("--no-shipped", action="store_true", help="leave out the shipped teachers")
    parser.add_argument("--no-zoo", action="store_true", help="leave out the rl-zoo folder's agents")
    parser.add_argument("--jobs", type=int, default=2, help="runs at once (each uses one torch thread)")
    ARGS = parser.parse_args()
    ARGS.out.mkdir(parents=True, exist_ok=True)
    speed = reference("HalfCheetah-v5")
    todo = [
        (teacher, env, seed)
        for teacher, env in all_rows(ARGS.zoo, ARGS.extra, ARGS.pong, not ARGS.no_shipped)
        if not (ARGS.no_zoo and teacher.startswith(str(ARGS.zoo)))
        if ARGS.only in teacher or ARGS.only in env
        for seed in ARGS.seeds
    ]
    with ThreadPoolExecutor(ARGS.jobs) as pool:  # each teacher once, then the runs
        list(pool.map(lambda job: teacher_held_out(*job, ARGS.out), {(t, e) for t, e, _ in todo}))
        rows = list(pool.map(lambda job: row_of(*job, ARGS.zoo), todo))
    with open(ARGS.out / "rows.jsonl", "a") as f:
        f.writelines(json.dumps(row) + "\n" for row in rows)
    lines = [f"reference: HalfCheetah-v5 random-action loop {speed:,.0f} steps/s (one process, same run)", ""]
    report(ARGS.out, lines + table(rows))


ARGS: argparse.Namespace

if __name__ == "__main__":
    main()
