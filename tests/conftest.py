"""Shared fixtures: the rl-zoo agents from ../shared (skipped when absent) and teachers trained in seconds; the CLI
in-process (`cli`) and in a fresh interpreter (`run_cli`, `run_fresh_python`)."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
ZOO = Path(os.environ.get("POLICYKD_TEST_ZOO", REPO.parent / "shared" / "teachers" / "rl-zoo"))

warnings.filterwarnings("ignore", category=DeprecationWarning)


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """One torch thread per test worker: two workers, each with torch's default of every core, oversubscribe a
    2-core machine (a 3,000-step PPO fixture measured 55 s on a busy one, 2-3 s alone). `distill` sets its own count
    per run (1 for MLPs; the tests pass --torch-threads 1 to their Atari runs)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session", autouse=True)
def own_cache(tmp_path_factory):
    """A cache of the tests' own (kept teacher games, `policykd.teachers.evaluated`): a user's cache neither serves
    the tests nor gets their entries; the CLI's subprocesses inherit it."""
    before = os.environ.get("POLICYKD_CACHE")
    os.environ["POLICYKD_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if before is None:
        os.environ.pop("POLICYKD_CACHE", None)
    else:
        os.environ["POLICYKD_CACHE"] = before


@pytest.fixture(scope="session")
def zoo() -> Path:
    if not (ZOO / "ppo" / "CartPole-v1_1").is_dir():
        pytest.skip(f"rl-zoo agents not found at {ZOO} (set POLICYKD_TEST_ZOO)")
    return ZOO


@pytest.fixture(scope="session")
def cartpole_ppo_teacher(tmp_path_factory) -> Path:
    """A PPO CartPole teacher trained here in a few seconds (not strong; for mechanics)."""
    from stable_baselines3 import PPO

    path = tmp_path_factory.mktemp("teachers") / "ppo_cartpole.zip"
    model = PPO("MlpPolicy", "CartPole-v1", n_steps=256, batch_size=64, seed=1, device="cpu")
    model.learn(3000)
    model.save(path)
    return path


@pytest.fixture(scope="session")
def pendulum_td3_teacher(tmp_path_factory) -> Path:
    """A TD3 Pendulum teacher (deterministic actor) trained for a few hundred steps."""
    from stable_baselines3 import TD3

    path = tmp_path_factory.mktemp("teachers") / "td3_pendulum.zip"
    model = TD3(
        "MlpPolicy", "Pendulum-v1", learning_starts=100, policy_kwargs={"net_arch": [64, 64]}, seed=1, device="cpu"
    )
    model.learn(300)
    model.save(path)
    return path


@pytest.fixture(scope="session")
def sac_pendulum_teacher(tmp_path_factory) -> Path:
    """A SAC Pendulum teacher (squashed Gaussian, SB3's 256x256 critic) trained for a few hundred steps."""
    from stable_baselines3 import SAC

    path = tmp_path_factory.mktemp("teachers") / "sac_pendulum.zip"
    model = SAC("MlpPolicy", "Pendulum-v1", learning_starts=100, seed=1, device="cpu")
    model.learn(300)
    model.save(path)
    return path


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """`policykd ARGS` through the CLI's own entry point, `policykd.cli.main.main(argv)`, in this interpreter: the real
    parsing, handlers, one-line errors and exit status, without a fresh interpreter's torch and SB3 import (2-3 s a
    call). Its stdout and stderr come back as a subprocess's would. Use `run_cli` where a separate process is the
    point: signals, kill -9, an interpreter without policykd."""
    from policykd.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    before = Path.cwd()
    os.chdir(cwd or REPO)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(args))
    finally:
        os.chdir(before)
    return subprocess.CompletedProcess(["policykd", *args], code, out.getvalue(), err.getvalue())


def run_cli(*args: str, cwd: Path | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """The real `policykd` entry point in a subprocess (a fresh interpreter: signals, kill -9, the installed module)."""
    return subprocess.run(
        [sys.executable, "-m", "policykd.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd or REPO,
        timeout=timeout,
    )


def run_fresh_python(code: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """Python code in a fresh interpreter (to prove a student loads without policykd)."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, cwd="/")


REFERENCE = pytest.StashKey[float]()


def _reference_steps_per_second(seconds: float = 2.0) -> float:
    """CartPole-v1 env steps/s of a plain loop with random actions (the benchmarks' `reference`): the suite's time is
    quoted against it, measured in the same run, so that runs on machines of other speeds compare as ratios."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_benchmarks_common", REPO / "benchmarks" / "common.py")
    assert spec is not None and spec.loader is not None
    common = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(common)
    return common.reference("CartPole-v1", seconds)


def pytest_sessionstart(session: pytest.Session) -> None:
    if not hasattr(session.config, "workerinput"):  # the controller alone, before the workers start
        session.config.stash[REFERENCE] = _reference_steps_per_second()


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    if REFERENCE in config.stash:
        terminalreporter.write_line(
            f"reference of this run: a plain CartPole-v1 loop, {config.stash[REFERENCE]:,.0f} env steps/s (measured at its start)"
        )
