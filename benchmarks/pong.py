"""Pong: teacher vs student returns, sizes, drivers, wall-clock, peak memory, bytes per transition.

Run by hand (each row is a full `policykd distill` run: ~20 minutes on 2 cores):

    python benchmarks/pong.py                       # the default run only
    python benchmarks/pong.py --grid                # 3 student sizes x 2 drivers
    python benchmarks/pong.py --grid --only 1pct     # the rows whose name contains "1pct"

Each row: `policykd distill --env ALE/Pong-v5 --out OUT [--student-arch A] [--driver D]`,
run under `/usr/bin/time -v` for peak memory; returns over 20 episodes on the same seeds.
Figure: OUT/pong.png, the rows run on one figure (returns, KL, agreement, return vs size).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
from pathlib import Path

from policykd.report.plots import plot_benchmark

SIZES = {"1%": "8,8,8,8", "2%": "16,16,16,16", "5% (default)": None}
DRIVERS = ("teacher", "dagger")


def run(out: Path, arch: str | None, driver: str | None) -> str:
    cmd = ["/usr/bin/time", "-v", "policykd", "distill", "--env", "ALE/Pong-v5", "--out", str(out), "--overwrite", "--quiet"]
    if arch:
        cmd += ["--student-arch", arch]
    if driver:
        cmd += ["--driver", driver]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        return f"| {' '.join(cmd[2:])} | failed: {result.stderr.strip().splitlines()[-1][:100]} |"
    peak_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", result.stderr).group(1))
    s = json.loads((out / "summary.json").read_text())
    return (
        f"| `{' '.join(cmd[2:-2])}` | {s['teacher_return_mean']:+.2f} ± {s['teacher_return_std']:.2f} "
        f"| {s['student_return_mean']:+.2f} ± {s['student_return_std']:.2f} "
        f"| {s['student_params']:,} / {s['teacher_params']:,} ({100 * s['params_ratio']:.1f} %) "
        f"| {s['env_steps']:,} | {s['wall_seconds'] / 60:.1f} min | {peak_kb / 1024**2:.1f} GB "
        f"| {s.get('buffer_bytes_per_transition', float('nan')):,.0f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--grid", action="store_true")
    parser.add_argument("--out", default="runs/bench-pong")
    parser.add_argument("--only", default="", help="run only the rows whose folder name contains this")
    args = parser.parse_args()
    print("| command | teacher return | student return | student / teacher params | env steps | wall-clock | peak RSS | buffer B/transition |")
    print("|---|---|---|---|---|---|---|---|")
    rows = [(name, arch, driver) for name, arch in SIZES.items() for driver in DRIVERS] if args.grid else [("default", None, None)]
    outs = []
    for name, arch, driver in rows:
        folder = f"{name.split()[0].replace('%', 'pct')}-{driver or 'preset'}"
        if args.only in folder:
            outs.append(Path(args.out) / folder)
            print(run(outs[-1], arch, driver), flush=True)
    for figure in plot_benchmark(outs, Path(args.out), "pong"):
        print(f"figure: {figure}")


if __name__ == "__main__":
    main()
