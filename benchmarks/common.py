"""What every benchmark measures beside its result: a reference speed of this machine, in the same run."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

ZOO = Path(__file__).resolve().parents[2] / "shared" / "teachers" / "rl-zoo"
"""rl-baselines3-zoo's agents beside the repository (../shared): used from there, never copied."""

HOLDOUT_SEED = 20_000
"""The first of the held-out episode seeds every benchmark evaluates on: runs evaluate on 10000+, never on these."""


def reference(env_id: str, seconds: float = 5.0) -> float:
    """Env steps/s of a plain loop of `env_id` with random actions, one process: the yardstick a wall-clock figure is
    quoted with, since machines (and the same machine on another day) differ."""
    import gymnasium as gym

    from policykd.envs import check_env_id

    env = gym.make(check_env_id(env_id))  # registers ALE/* envs
    env.reset(seed=0)
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        if any(env.step(env.action_space.sample())[2:4]):
            env.reset()
        steps += 1
    return steps / (time.perf_counter() - start)


def weak_cartpole_teacher(path: Path = Path("runs/bench-rl/weak-cartpole-issue32.zip")) -> Path:
    """Issue 32's weak teacher, made once: SB3's PPO (n_steps 256, batch 64, seed 3) stopped after 1,024 env steps
    (83.3 on a run's evaluation seeds)."""
    from stable_baselines3 import PPO

    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        PPO("MlpPolicy", "CartPole-v1", seed=3, n_steps=256, batch_size=64, device="cpu").learn(1024).save(path)
    return path


def held_out(env_id: str, model: str, episodes: int, seed: int = HOLDOUT_SEED) -> dict:
    """`policykd evaluate --json`'s row for `model` (a zip, run folder or agent) over `episodes` held-out seeds:
    return_mean, return_std, returns, ..."""
    cmd = ["policykd", "evaluate", "--env", env_id, "--model", model, "--episodes", str(episodes)]
    done = subprocess.run([*cmd, "--seed", str(seed), "--json"], capture_output=True, text=True, check=True)
    return json.loads(done.stdout)["model"]


def report(root: Path, lines: list[str]) -> None:
    """Print the table and append it to `root`/results.md, where the docs' rows are copied from."""
    text = "\n".join(lines) + "\n"
    print(text)
    with open(root / "results.md", "a") as f:
        f.write(text + "\n")
