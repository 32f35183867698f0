"""The ceiling of the noisy student rows in benchmarks/views.py: the shipped teacher itself, given its exact
velocities but joint positions with Gaussian noise of SIGMA (in the observation's units). A student that reads only
noisy positions has less than this teacher; how far the teacher falls shows how much the noise takes away before any
distillation. Run by hand:

    python benchmarks/teacher_noise.py                        # HalfCheetah, Hopper, Walker2d; sigma 0, 0.01, 0.02, 0.05
    python benchmarks/teacher_noise.py --env Hopper-v5 --sigma 0.05 --episodes 50

Episodes use the held-out seeds of benchmarks/views.py (20000+); the noise generator is seeded once per env and sigma.
"""

from __future__ import annotations

import argparse

import numpy as np
from common import HOLDOUT_SEED  # benchmarks/ is on sys.path when run as a script
from views import MUJOCO

from policykd import load_teacher
from policykd.teachers.shipped import default_agent
from policykd.views import probe
from policykd.views.stages import named_groups


def noisy_return(env_id: str, sigma: float, episodes: int) -> tuple[float, float]:
    """Mean and standard deviation of the teacher's return with N(0, sigma) on its position entries."""
    card = default_agent(env_id)
    assert card is not None, f"no shipped teacher for {env_id}"
    teacher = load_teacher(card.folder, env_id=env_id)
    positions = list(named_groups(probe(teacher.factory)[0])["positions"])
    rng = np.random.default_rng(0)
    returns = []
    for episode in range(episodes):
        venv = teacher.factory.make(1, HOLDOUT_SEED + episode)
        obs, total, done = venv.reset(), 0.0, False
        while not done:
            seen = np.array(obs, copy=True)
            seen[:, positions] += rng.normal(0.0, sigma, (1, len(positions)))
            if teacher.normalizer is not None:
                seen = teacher.normalizer.normalize_obs(seen)
            action, _ = teacher.model.predict(seen, deterministic=True)
            obs, reward, dones, _ = venv.step(action)
            total, done = total + float(reward[0]), bool(dones[0])
        venv.close()
        returns.append(total)
    return float(np.mean(returns)), float(np.std(returns))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", choices=MUJOCO, action="append", help="repeatable; default: all three")
    parser.add_argument("--sigma", type=float, action="append", help="repeatable; default: 0 0.01 0.02 0.05")
    parser.add_argument("--episodes", type=int, default=20)
    args = parser.parse_args()
    sigmas = args.sigma or [0.0, 0.01, 0.02, 0.05]
    print("| env | noise on joint positions (sigma) | teacher return | share of its noiseless return |")
    print("|---|---|---|---|")
    for env_id in args.env or MUJOCO:
        clean = None
        for sigma in sigmas:
            mean, std = noisy_return(env_id, sigma, args.episodes)
            clean = mean if clean is None else clean
            print(f"| {env_id} | {sigma} | {mean:,.1f} ± {std:,.1f} | {100 * mean / clean:.1f} % |", flush=True)


if __name__ == "__main__":
    main()
