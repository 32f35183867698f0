"""Runs that survive: kill -9 twice and resume to the same weights; Ctrl-C; atomic checkpoints.

A run that is killed or signalled is a process of its own (`_start`); the uninterrupted reference runs and the
resumes go through the CLI's entry point in this interpreter (`cli`), which is what a re-run command executes."""

import json
import signal
import subprocess
import sys
import time

import pytest
import torch as th
from conftest import REPO, cli

# --ema: the averaged weights are checkpointed too, or the resumed student would differ. 12 collection segments (a
# checkpoint each) leave room to kill twice; 4 epochs a round, not the preset's 20: the weights need only match.
ARGS = [
    "--env",
    "CartPole-v1",
    "--steps",
    "12000",
    "--rounds",
    "3",
    "--checkpoint-every",
    "1000",
    "--ema",
    "0.99",
    "--epochs",
    "4",
    "--eval-episodes",
    "2",
    "--seed",
    "5",
    "--quiet",
]


def _start(zoo, out):
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "policykd.cli",
            "distill",
            *ARGS,
            "--teacher",
            str(zoo / "ppo/CartPole-v1_1"),
            "--out",
            str(out),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _checkpoint_number(out):
    try:
        return json.loads((out / "checkpoint.json").read_text())["number"]
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        return -1


def _kill_after(proc, out, number, sig=signal.SIGKILL, timeout=240):
    deadline = time.time() + timeout
    while _checkpoint_number(out) < number:
        assert proc.poll() is None, f"run ended before checkpoint {number}: {proc.stderr.read()}"
        assert time.time() < deadline
        time.sleep(0.01)
    proc.send_signal(sig)
    return proc.wait(timeout=120)


def _weights(path):
    from stable_baselines3 import PPO

    return PPO.load(path, device="cpu").policy.state_dict()


def test_kill_9_twice_then_resume_gives_the_uninterrupted_weights(zoo, tmp_path):
    """Two kill -9s (the second after a resume) and a final resume end with the weights, returns and env steps of
    the run nobody interrupted, and leave no checkpoint behind."""
    reference = tmp_path / "reference"
    done = cli("distill", *ARGS, "--teacher", str(zoo / "ppo/CartPole-v1_1"), "--out", str(reference))
    assert done.returncode == 0, done.stderr

    out = tmp_path / "killed"
    assert _kill_after(_start(zoo, out), out, 2) == -signal.SIGKILL
    assert _kill_after(_start(zoo, out), out, 9) == -signal.SIGKILL  # second kill, after resuming
    assert not (out / "summary.json").exists()
    finished = cli("distill", *ARGS, "--teacher", str(zoo / "ppo/CartPole-v1_1"), "--out", str(out))
    assert finished.returncode == 0, finished.stderr

    a, b = _weights(reference / "student.zip"), _weights(out / "student.zip")
    assert all(th.equal(a[k], b[k]) for k in a)
    ref_summary = json.loads((reference / "summary.json").read_text())
    summary = json.loads((out / "summary.json").read_text())
    assert summary["student_returns"] == ref_summary["student_returns"]
    assert summary["env_steps"] == ref_summary["env_steps"] == 12000
    assert not (out / "checkpoint.json").exists() and not list(out.glob("ckpt-*"))  # cleaned up once finished


@pytest.mark.parametrize("sig, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_or_sigterm_writes_student_and_exits_then_resumes(zoo, tmp_path, sig, status):
    """SIGTERM is what Slurm, Kubernetes and systemd send before a kill: it stops the run as Ctrl-C does."""
    out = tmp_path / "interrupted"
    proc = _start(zoo, out)
    assert _kill_after(proc, out, 3, sig=sig) == status
    assert "interrupted in round" in proc.stdout.read() + proc.stderr.read()
    assert (out / "student.zip").is_file() and (out / "checkpoint.json").is_file()
    changed = cli(
        "distill", *ARGS[:-1], "--teacher", str(zoo / "ppo/CartPole-v1_1"), "--out", str(out), "--steps", "999"
    )
    assert changed.returncode == 2 and "other settings (steps)" in changed.stderr
    resumed = cli("distill", *ARGS, "--teacher", str(zoo / "ppo/CartPole-v1_1"), "--out", str(out))
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((out / "summary.json").read_text())["env_steps"] == 12000


def test_resume_flag_needs_a_checkpoint(zoo, tmp_path):
    """--resume where there is nothing to resume is bad input, not a fresh run."""
    result = cli(
        "distill",
        "--env",
        "CartPole-v1",
        "--teacher",
        str(zoo / "ppo/CartPole-v1_1"),
        "--out",
        str(tmp_path / "none"),
        "--resume",
    )
    assert result.returncode == 2 and "no checkpoint" in result.stderr


@pytest.fixture
def small_disk(tmp_path):
    """A real 300 KB filesystem (tmpfs) for the output folder; grown later with a remount."""
    mount = tmp_path / "disk"
    mount.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=300k", "tmpfs", str(mount)], capture_output=True, text=True
    )
    if made.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {made.stderr.strip()}")
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


def test_full_disk_stops_with_one_line_keeps_the_checkpoint_and_resumes(zoo, small_disk):
    """ENOSPC mid-run is one line and exit 2; the last complete checkpoint stays loadable and, once the disk has
    room, the same command finishes the run."""
    out = small_disk / "run"
    args = [
        "distill",
        "--env",
        "CartPole-v1",
        "--teacher",
        str(zoo / "ppo/CartPole-v1_1"),
        "--steps",
        "20000",
        "--eval-episodes",
        "2",
        "--quiet",
        "--out",
        str(out),
    ]
    full = cli(*args)
    assert full.returncode == 2, full.stderr
    lines = [line for line in full.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: the disk is full"), full.stderr
    assert _checkpoint_number(out) >= 0 and not (out / "summary.json").exists()
    from policykd.run.checkpoint import load_checkpoint

    assert load_checkpoint(out) is not None  # the last complete checkpoint loads
    subprocess.run(["mount", "-o", "remount,size=50m", str(small_disk)], check=True)
    resumed = cli(*args)
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["env_steps"] == 20000 and summary["student_return_mean"] > 400
