"""The rl-zoo layout policykd writes plays in the real `python -m rl_zoo3.enjoy` (rl_zoo3 2.9.2, the test extra).

A student distilled by the CLI and a VecNormalize teacher trained by `train-teacher` (both through
the CLI's entry point in-process) are each played by enjoy in a subprocess. Enjoy resets its env
with seed 0, so its first episode must score what policykd's own evaluation of the same file
scores on seed 0: the same model, the same env stack and the same observation statistics, not
merely a folder that loads.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, cli

pytest.importorskip("rl_zoo3", reason="rl_zoo3 is in the test extra: pip install -e .[test]")


def enjoy(folder: Path, algo: str, env_id: str, steps: int = 1000) -> list[float]:
    """The episode returns `python -m rl_zoo3.enjoy` prints for the run under `folder`."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "rl_zoo3.enjoy",
            "--algo",
            algo,
            "--env",
            env_id,
            "-f",
            str(folder),
            "--no-render",
            "-n",
            str(steps),
            "--num-threads",
            "1",
            "--device",
            "cpu",
        ],
        capture_output=True,
        text=True,
        cwd=folder,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    returns = [float(r) for r in re.findall(r"^Episode Reward: (\S+)$", result.stdout, flags=re.M)]
    assert returns, f"enjoy played no whole episode in {steps} steps: {result.stdout[-2000:]}"
    return returns


def first_episode(act, factory) -> float:
    """policykd's deterministic evaluation, one episode reset with seed 0 (as enjoy's first)."""
    from policykd.rollouts import run_episodes

    return float(run_episodes(act, factory, 1, 0).returns[0])


def test_a_distilled_student_plays_in_rl_zoo_enjoy(tmp_path):
    """enjoy's first episode of the distilled student scores what policykd's evaluation scores on seed 0."""
    out = tmp_path / "cp"
    teacher = REPO / "src/policykd/resources/agents/cartpole-ppo-v1/cartpole_ppo_v1.zip"
    result = cli(
        "distill",
        "--env",
        "CartPole-v1",
        "--teacher",
        str(teacher),
        "--steps",
        "1600",
        "--rounds",
        "2",
        "--epochs",
        "2",
        "--eval-episodes",
        "2",
        "--out",
        str(out),
        "--quiet",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    returns = enjoy(out, "ppo", "CartPole-v1")

    from stable_baselines3 import PPO

    from policykd.envs import EnvFactory
    from policykd.rollouts import student_actor

    student = PPO.load(out / "student.zip", device="cpu")
    assert returns[0] == pytest.approx(first_episode(student_actor(student), EnvFactory("CartPole-v1")), abs=0.01)


def test_a_trained_teacher_with_vecnormalize_plays_in_rl_zoo_enjoy(tmp_path):
    """enjoy reads the teacher's vecnormalize.pkl where rl-zoo puts it: its first episode scores policykd's."""
    out = tmp_path / "hop"
    result = cli(
        "train-teacher",
        "--env",
        "Hopper-v5",
        "--algo",
        "ppo",
        "--steps",
        "512",
        "--eval-episodes",
        "1",
        "--out",
        str(out),
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert (out / "ppo/Hopper-v5_1/Hopper-v5/vecnormalize.pkl").is_file()
    returns = enjoy(out, "ppo", "Hopper-v5")

    from policykd.rollouts import teacher_actor
    from policykd.teachers import load_teacher

    teacher = load_teacher(str(out), env_id="Hopper-v5")
    assert returns[0] == pytest.approx(first_episode(teacher_actor(teacher), teacher.factory), abs=0.01)
