"""Greedy vs sampled play of a student at policy temperatures: what `--rl-temperature` is chosen from.

Run by hand:

    python benchmarks/temperature.py runs/bench-pong-rl/student-distilled.zip --env ALE/Pong-v5 --temperatures 1 0.33

For each temperature T the student's policy is set to T exactly as RL would set it (`rl.model.set_temperature`) and
plays `--episodes` games with sampled actions in 8 envs (seeds from 30000, never those of a run's evaluations); the
table gives the mean return with its standard error and the policy's mean entropy over the states it met. The
reference, measured in the same run: env steps/s of a plain loop.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch as th
from common import reference, report

from policykd.envs import EnvFactory
from policykd.rl.model import set_temperature
from policykd.sb3_models import ALGOS


def play(path: str, algo: str, env_id: str, temperature: float, episodes: int) -> tuple[float, float, float]:
    """Mean return, its standard error and the mean entropy of `episodes` sampled games at `temperature`."""
    model = ALGOS[algo].load(path, device="cpu")
    set_temperature(model, temperature)
    venv = EnvFactory(env_id).make(8, 30_000)
    obs, running, returns, entropy = venv.reset(), np.zeros(8), [], []
    while len(returns) < episodes:
        with th.no_grad():
            entropy.append(model.policy.get_distribution(model.policy.obs_to_tensor(obs)[0]).entropy().mean().item())
        action, _ = model.predict(obs, deterministic=False)
        obs, reward, done, _ = venv.step(action)
        running += reward
        for i in np.flatnonzero(done):
            returns.append(running[i])
            running[i] = 0.0
    venv.close()
    returns = returns[:episodes]
    return float(np.mean(returns)), float(np.std(returns) / np.sqrt(len(returns))), float(np.mean(entropy))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("student")
    parser.add_argument("--env", default="ALE/Pong-v5")
    parser.add_argument("--algo", default="ppo")
    parser.add_argument("--temperatures", nargs="+", type=float, default=[1.0, 0.33])
    parser.add_argument("--episodes", type=int, default=8)
    args = parser.parse_args()
    lines = [
        f"## {args.student}, sampled play ({time.strftime('%Y-%m-%d %H:%M')}; reference: plain {args.env} loop "
        f"{reference(args.env):,.0f} env steps/s, same run; {args.episodes} games each)",
        "",
        "| temperature | return | entropy (nats) |",
        "|---|---|---|",
    ]
    for temperature in args.temperatures:
        mean, se, entropy = play(args.student, args.algo, args.env, temperature, args.episodes)
        lines.append(f"| {temperature:g} | {mean:+.2f} ± {se:.2f} | {entropy:.2f} |")
        print(lines[-1], flush=True)
    report(Path("runs"), lines)


if __name__ == "__main__":
    main()
