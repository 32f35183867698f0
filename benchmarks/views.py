"""Students that see less than their teacher (issue 31): MuJoCo joint positions only, with and without memory, with
sensor noise and latency; Pong from RAM. Run by hand:

    python benchmarks/views.py                                   # every MuJoCo row, seeds 0-4, 50 held-out episodes
    python benchmarks/views.py --env Hopper-v5 --seeds 0 --row history
    python benchmarks/views.py --pong --seeds 0                  # Pong: RAM student vs the frame student

Each run is `policykd distill --env ENV ROW-FLAGS --seed S --out OUT`, then `policykd evaluate` of its student and
of the teacher on 50 held-out seeds (20000+, never used for collection or the summary). A finished run (its
held-out returns in OUT/holdout.json) is not run again: the benchmark resumes where it stopped. The table gives,
per row, the mean and the worst seed's held-out return ratio (`1 + (s - t)/|t|`), the student's share of the
teacher's acting parameters and the mean wall-clock, with env steps/s of a plain loop measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

from common import held_out, reference  # noqa: E402  (benchmarks/ is on sys.path when run as a script)

from policykd.rollouts import return_ratio


def _view(*specs: str) -> list[str]:
    return [flag for spec in specs for flag in ("--student-obs", spec)]


MUJOCO = ("HalfCheetah-v5", "Hopper-v5", "Walker2d-v5")
ROWS = {
    "full": [],  # the reference: the same student size on the teacher's full observation
    "mask": _view("mask=velocities"),
    "history": _view("mask=velocities", "history=4"),
    "noisy": _view("mask=velocities", "noise=0.05", "delay=1", "history=4"),  # the target row with sensor noise
    "noise": _view("mask=velocities", "noise=0.05", "history=4"),
    "delay": _view("mask=velocities", "delay=1", "history=4"),
    "recurrent": [*_view("mask=velocities"), "--student-algo", "recurrent-ppo"],
    # levers for the noisy row: a longer window to average the noise out, and joint-encoder-sized noise (0.01)
    "noisy-h8": _view("mask=velocities", "noise=0.05", "delay=1", "history=8"),
    "noisy-0.01": _view("mask=velocities", "noise=0.01", "delay=1", "history=4"),
    "noisy-0.01-long": [  # twice the preset's env steps and the 10 % size the target allows
        *_view("mask=velocities", "noise=0.01", "delay=1", "history=4"),
        *("--steps", "600000", "--student-fraction", "0.1"),
    ],
    "noisy-0.01-early": [  # the student drives sooner (beta 0.5 ** round), at the 10 % size
        *_view("mask=velocities", "noise=0.01", "delay=1", "history=4"),
        *("--beta-schedule", "exponential", "--student-fraction", "0.1"),
    ],
    # DAgger is the default; the teacher driving every step is the comparison row the issue asks for
    "history-teacher-driven": [*_view("mask=velocities", "history=4"), "--driver", "teacher"],
}
PONG = {
    "frames": [],
    "ram": [*_view("ram", "history=4"), "--student-fraction", "0.02"],
}


def evaluate(env_id: str, model: str, episodes: int) -> float:
    return held_out(env_id, model, episodes)["return_mean"]


def one_run(env_id: str, flags: list[str], seed: int, out: Path, episodes: int) -> dict | None:
    """One distillation and its held-out evaluation (resumed from OUT/holdout.json when finished)."""
    done = out / "holdout.json"
    if done.is_file():  # the run's own wall-clock (summary.json), whichever version of this script wrote the row
        return {**json.loads(done.read_text()), "wall": json.loads((out / "summary.json").read_text())["wall_seconds"]}
    cmd = ["policykd", "distill", "--env", env_id, *flags, "--seed", str(seed), "--out", str(out), "--overwrite"]
    if not (out / "summary.json").is_file():  # a finished distillation whose evaluation was cut short is kept
        result = subprocess.run(cmd + ["--quiet"], capture_output=True, text=True)
        if result.returncode != 0:
            print(f"failed: {' '.join(cmd)}: {result.stderr.strip().splitlines()[-1:]}", flush=True)
            return None
    summary = json.loads((out / "summary.json").read_text())
    row = {
        "command": " ".join(cmd[:-3]),
        "wall": summary["wall_seconds"],
        "student": evaluate(env_id, str(out), episodes),
        "params": summary["params_ratio"],
        "summary_ratio": summary["return_ratio"],
        "teacher_path": summary["teachers"][0],
    }
    done.write_text(json.dumps(row, indent=2) + "\n")
    return row


def table(env_id: str, rows: dict[str, list[str]], seeds: list[int], root: Path, episodes: int) -> list[str]:
    teacher_file = root / env_id.replace("/", "-") / "teacher.json"
    lines = []
    for name, flags in rows.items():
        runs = [one_run(env_id, flags, s, root / env_id.replace("/", "-") / f"{name}-{s}", episodes) for s in seeds]
        done = [r for r in runs if r]
        if not done:
            lines.append(f"| {env_id} | {name} | failed |||||")
            continue
        if not teacher_file.is_file():
            teacher = evaluate(env_id, done[0]["teacher_path"], episodes)
            teacher_file.write_text(json.dumps({"return": teacher}) + "\n")
        teacher = json.loads(teacher_file.read_text())["return"]
        ratios = [return_ratio(r["student"], teacher) for r in done]
        students = [r["student"] for r in done]
        lines.append(
            f"| {env_id} | `{' '.join(flags) or '(full observation)'}` | {teacher:,.1f} "
            f"| {sum(students) / len(students):,.1f} | {100 * sum(ratios) / len(ratios):.1f} % "
            f"| {100 * min(ratios):.1f} % | {100 * done[0]['params']:.1f} % "
            f"| {sum(r['wall'] for r in done) / len(done):.0f} s | {len(done)} |"
        )
        print(lines[-1], flush=True)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", choices=MUJOCO, action="append", help="repeatable; default: all three")
    parser.add_argument("--row", choices=sorted({*ROWS, *PONG}), action="append", help="repeatable; default: all")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--episodes", type=int, default=50, help="held-out episodes per student and teacher")
    parser.add_argument("--pong", action="store_true", help="the Pong rows (RAM vs frames) instead of MuJoCo")
    parser.add_argument("--out", type=Path, default=Path("runs/bench-views"))
    args = parser.parse_args()
    envs = ["ALE/Pong-v5"] if args.pong else args.env or list(MUJOCO)
    rows = {k: v for k, v in (PONG if args.pong else ROWS).items() if not args.row or k in args.row}
    print(f"reference: {reference(envs[0]):,.0f} env steps/s of a plain {envs[0]} loop (random actions, one core)")
    print(
        "| env | student view | teacher (held out) | student (held out) | ratio, mean of seeds | worst seed "
        "| student / teacher params | wall-clock per run | seeds |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for env_id in envs:
        table(env_id, rows, args.seeds, args.out, args.episodes)


if __name__ == "__main__":
    main()
