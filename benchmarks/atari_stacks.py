"""Pong agent steps/s of SB3's Atari stack against ale-py's vector env (`--atari-stack native`), measured side by
side: 8 envs, random actions, one process, the two stacks taking turns for `--rounds` rounds of `--seconds` each
(so a neighbour's load falls on both). The native env steps in 2 C++ threads, as policykd runs it on 2 cores.

    python benchmarks/atari_stacks.py                 # 3 rounds of 10 s per stack
"""

from __future__ import annotations

import argparse

import numpy as np
from pong import env_steps_per_second  # benchmarks/ is on sys.path when run as a script


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    speeds: dict[str, list[float]] = {"sb3": [], "native": []}
    for _ in range(args.rounds):
        for stack, seen in speeds.items():
            seen.append(env_steps_per_second(args.seconds, stack))
    for stack, seen in speeds.items():
        print(
            f"{stack:>6}: median {np.median(seen):,.0f} agent steps/s  (rounds: {', '.join(f'{s:,.0f}' for s in seen)})"
        )
    print(f"native / sb3: {np.median(speeds['native']) / np.median(speeds['sb3']):.2f}x")


if __name__ == "__main__":
    main()
