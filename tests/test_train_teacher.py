"""`policykd train-teacher`: the real CLI, tiny step counts.

Covers: rl-zoo layout + model card that `policykd evaluate` reproduces and `--teacher` loads;
VecNormalize carried into the card; a `kill -9` after the first checkpoint, then the same
command finishing from that checkpoint (replay buffer included); Ctrl-C; refusals.
Runs that are killed or interrupted are processes of their own (`_start`); every other command
goes through the CLI's entry point in this interpreter (`cli`).
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch as th
import yaml
from conftest import REPO, cli


def _start(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "policykd.cli", *args],
        cwd=REPO,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while not path.is_file():
        assert proc.poll() is None, f"finished before a checkpoint: {proc.communicate()}"
        assert time.time() < deadline, "no checkpoint written in time"
        time.sleep(0.02)


def _kill_9_after_first_checkpoint(args: list[str], out: Path) -> int:
    """Start train-teacher, SIGKILL it once a checkpoint exists; returns the exit status."""
    proc = _start(*args)
    _wait_for(out / "checkpoint" / "checkpoint.json", proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    return proc.returncode


def _pointer(out: Path) -> dict:
    return json.loads((out / "checkpoint" / "checkpoint.json").read_text())


def test_cartpole_ppo_card_evaluates_and_teaches(tmp_path):
    """rl-zoo's layout and hyperparameters, a card whose return `evaluate` reproduces, a folder `distill --teacher`
    reads, and a finished run that is not trained over without --overwrite."""
    out = tmp_path / "cp"
    args = ["train-teacher", "--env", "CartPole-v1", "--algo", "ppo", "--steps", "4096", "--out", str(out)]
    result = cli(*args)
    assert result.returncode == 0, result.stderr[-2000:]
    run = out / "ppo" / "CartPole-v1_1"
    assert (run / "CartPole-v1.zip").is_file()
    config = yaml.safe_load((run / "CartPole-v1" / "config.yml").read_text())
    assert config["normalize"] is False and config["n_steps"] == 32 and config["learning_rate"] == "lin_0.001"
    assert yaml.safe_load((run / "CartPole-v1" / "args.yml").read_text())["env"] == "CartPole-v1"
    assert not (out / "checkpoint").exists(), "checkpoints are removed once the run is finished"
    assert list((out / "tb").glob("PPO_1/events.out.tfevents.*"))
    card = yaml.safe_load((out / "card.yaml").read_text())
    assert card["env_steps"] == 4096 and card["episodes"] == 10 and card["model"] == "ppo/CartPole-v1_1/CartPole-v1.zip"
    assert "vecnormalize" not in card
    markdown = (out / "CARD.md").read_text()
    assert f"{card['return_mean']:.2f} ± {card['return_std']:.2f}" in markdown and "lin_0.2" in markdown

    evaluated = cli("evaluate", "--env", "CartPole-v1", "--model", str(out), "--episodes", "10", "--json")
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    model = json.loads(evaluated.stdout)["model"]
    assert model["return_mean"] == pytest.approx(card["return_mean"], abs=1e-3)
    assert model["return_std"] == pytest.approx(card["return_std"], abs=1e-3)
    assert model["algo"] == "ppo" and len(model["returns"]) == 10

    distilled = cli(
        "distill",
        "--env",
        "CartPole-v1",
        "--teacher",
        str(out),
        "--steps",
        "2000",
        "--out",
        str(tmp_path / "student"),
        "--quiet",
    )
    assert distilled.returncode == 0, distilled.stderr[-2000:]
    assert (tmp_path / "student" / "student.zip").is_file()

    again = cli(*args)  # a finished run is not trained over without --overwrite
    assert again.returncode == 2 and "already holds a finished teacher" in again.stderr, again.stderr
    assert yaml.safe_load((out / "card.yaml").read_text()) == card


def test_hopper_ppo_normalises_and_the_card_carries_the_statistics(tmp_path):
    """A zoo config with `normalize`: VecNormalize statistics of the training steps are saved and loaded back with
    the teacher, with the zoo's gamma and policy kwargs."""
    out = tmp_path / "hop"
    result = cli(
        "train-teacher",
        "--env",
        "Hopper-v5",
        "--algo",
        "ppo",
        "--steps",
        "512",
        "--out",
        str(out),
        "--eval-episodes",
        "2",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    card = yaml.safe_load((out / "card.yaml").read_text())
    assert card["vecnormalize"] == "ppo/Hopper-v5_1/Hopper-v5/vecnormalize.pkl"
    config = yaml.safe_load((out / "ppo/Hopper-v5_1/Hopper-v5/config.yml").read_text())
    assert config["normalize"] is True and config["policy_kwargs"]["activation_fn"] == "relu"
    from stable_baselines3 import PPO
    from torch import nn

    from policykd.teachers import load_teacher

    teacher = load_teacher(str(out), env_id="Hopper-v5")
    assert teacher.normalizer is not None and teacher.normalizer.gamma == pytest.approx(0.999)  # zoo gamma
    assert teacher.normalizer.obs_rms.count > 500  # statistics of the 512 training steps
    model = PPO.load(out / card["model"])
    assert model.policy.activation_fn is nn.ReLU and not model.policy.ortho_init
    assert model.policy.log_std.detach().mean().item() == pytest.approx(-2.0, abs=0.05)


def test_kill_9_after_a_checkpoint_then_the_same_command_finishes_from_it(tmp_path):
    """kill -9 mid-run: the checkpoint's replay buffer holds exactly its steps, and the same command resumes there."""
    out = tmp_path / "pend"
    args = [
        "train-teacher",
        "--env",
        "Pendulum-v1",
        "--algo",
        "sac",
        "--steps",
        "600",
        "--checkpoint-every",
        "200",
        "--eval-episodes",
        "2",
        "--out",
        str(out),
    ]
    assert _kill_9_after_first_checkpoint(args, out) == -signal.SIGKILL
    pointer = _pointer(out)
    done = pointer["steps_done"]
    assert 200 <= done < 600 and pointer["total_steps"] == 600
    from stable_baselines3.common.save_util import load_from_pkl

    replay = load_from_pkl(out / "checkpoint" / pointer["folder"] / "replay_buffer.pkl")
    assert replay.pos == done, "the replay buffer holds exactly the steps the checkpoint counts"

    result = cli(*args)
    assert result.returncode == 0, result.stderr[-2000:]
    resumed_at = int(result.stdout.split("resuming from checkpoint at step ")[1].split()[0])
    assert resumed_at >= done >= 200, result.stdout
    from stable_baselines3 import SAC

    card = yaml.safe_load((out / "card.yaml").read_text())
    assert SAC.load(out / card["model"]).num_timesteps == 600 == card["env_steps"]
    assert f"| resumed at step | {resumed_at} |" in (out / "CARD.md").read_text()
    assert not (out / "checkpoint").exists()


def test_an_unfinished_off_policy_run_can_be_given_more_steps(tmp_path):
    """SAC's rates do not depend on the total: an unfinished run may be resumed with another --steps."""
    out = tmp_path / "longer"
    args = [
        "train-teacher",
        "--env",
        "Pendulum-v1",
        "--algo",
        "sac",
        "--steps",
        "100000",
        "--checkpoint-every",
        "200",
        "--eval-episodes",
        "2",
        "--out",
        str(out),
    ]
    _kill_9_after_first_checkpoint(args, out)
    done = _pointer(out)["steps_done"]
    longer = [a if a != "100000" else str(done + 300) for a in args]  # SAC's rates do not depend on the total
    result = cli(*longer)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"resuming from checkpoint at step {done} of {done + 300} (was 100000)" in result.stdout
    assert yaml.safe_load((out / "card.yaml").read_text())["env_steps"] == done + 300


def test_an_unfinished_run_finishes_now_at_its_checkpoint_but_never_below_it(tmp_path):
    """--steps equal to the checkpoint's finishes at once; below it is refused, the checkpoint untouched."""
    from stable_baselines3 import SAC

    out = tmp_path / "now"
    args = [
        "train-teacher",
        "--env",
        "Pendulum-v1",
        "--algo",
        "sac",
        "--steps",
        "100000",
        "--checkpoint-every",
        "200",
        "--eval-episodes",
        "2",
        "--out",
        str(out),
    ]
    _kill_9_after_first_checkpoint(args, out)
    pointer = _pointer(out)
    done = pointer["steps_done"]
    below = cli(*[a if a != "100000" else str(done - 1) for a in args])
    assert below.returncode == 2, below.stderr
    assert f"unfinished run with other settings (steps 100000 -> {done - 1})" in below.stderr
    assert _pointer(out) == pointer, "a refused command leaves the checkpoint alone"

    now = cli(*[a if a != "100000" else str(done) for a in args])
    assert now.returncode == 0, now.stderr[-2000:]
    card = yaml.safe_load((out / "card.yaml").read_text())
    assert card["env_steps"] == done and SAC.load(out / card["model"]).num_timesteps == done


def test_ctrl_c_checkpoints_and_other_settings_are_refused(tmp_path):
    """Ctrl-C (a real SIGINT to a real process) exits 130 at a whole rollout with a checkpoint; a re-run with another
    total is refused in one line, since PPO's linear rates are spread over the total."""
    out = tmp_path / "cp"
    args = [
        "train-teacher",
        "--env",
        "CartPole-v1",
        "--algo",
        "ppo",
        "--steps",
        "200000",
        "--checkpoint-every",
        "1024",
        "--out",
        str(out),
    ]
    proc = _start(*args)
    _wait_for(out / "checkpoint" / "checkpoint.json", proc)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr[-2000:]
    assert "interrupted at step" in stdout and "run the same command again to resume" in stdout
    pointer = _pointer(out)
    assert 0 < pointer["steps_done"] < 200_000 and pointer["steps_done"] % 256 == 0  # whole PPO rollouts only
    assert (out / "checkpoint" / pointer["folder"] / "model.zip").is_file()

    other = cli(*[a if a != "200000" else "300000" for a in args])  # lin_ rates are spread over the total
    assert other.returncode == 2, other.stderr
    assert "unfinished run with other settings (steps 200000 -> 300000)" in other.stderr
    assert len(other.stderr.strip().splitlines()) == 1
    assert _pointer(out) == pointer, "a refused command leaves the checkpoint alone"


ROWS = {
    "unknown env id": (["--env", "CartPole-v9", "--algo", "ppo"], "unknown env id 'CartPole-v9'"),
    "unknown algo": (["--env", "CartPole-v1", "--algo", "a3c"], "unknown algo 'a3c': choose from ppo, sac, td3, tqc"),
    "sac on a discrete env": (["--env", "CartPole-v1", "--algo", "sac"], "sac needs a continuous (Box) action space"),
    "no zoo hyperparameters": (
        ["--env", "Acrobot-v1", "--algo", "ppo"],
        "no rl-zoo hyperparameters for ppo on Acrobot-v1 in envs/teachers.yaml (ppo has: CartPole-v1",
    ),
    "zero steps": (["--env", "CartPole-v1", "--algo", "ppo", "--steps", "0"], "--steps must be positive, got 0"),
    "negative steps": (["--env", "Pendulum-v1", "--algo", "sac", "--steps", "-5"], "--steps must be positive, got -5"),
    "output path is a file": (["--env", "CartPole-v1", "--algo", "ppo", "--out", "{tmp}/file.txt"], "is not a folder"),
    "unknown device": (
        ["--env", "CartPole-v1", "--algo", "ppo", "--device", "tpu"],
        "--device must be cpu, cuda, cuda:N or auto, got tpu",
    ),
}
if not th.cuda.is_available():  # CI's machines: a GPU asked for and missing is refused before any work
    ROWS["cuda without a GPU"] = (
        ["--env", "CartPole-v1", "--algo", "ppo", "--device", "cuda"],
        "--device cuda: torch sees no such device here (devices seen: cpu)",
    )


@pytest.mark.parametrize("row", sorted(ROWS))
def test_bad_input_row(tmp_path, row):
    """Each refusal is one line, exit 2, before any work: an earlier teacher in --out and a file in the way survive."""
    args, message = ROWS[row]
    (tmp_path / "file.txt").write_text("a file")
    args = [a.format(tmp=tmp_path) for a in args]
    out = tmp_path / "previous"
    out.mkdir()
    (out / "card.yaml").write_text("an earlier teacher")
    if "--out" not in args:
        args += ["--out", str(out)]
    result = cli("train-teacher", *args, "--overwrite")
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    assert message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert (out / "card.yaml").read_text() == "an earlier teacher"
    assert (tmp_path / "file.txt").read_text() == "a file"


def test_existing_output_folder_without_overwrite_is_refused(tmp_path):
    """A folder holding someone's files is not written into without --overwrite."""
    (tmp_path / "notes.txt").write_text("mine")
    result = cli("train-teacher", "--env", "CartPole-v1", "--algo", "ppo", "--steps", "256", "--out", str(tmp_path))
    assert result.returncode == 2 and "already exists; pass --overwrite" in result.stderr, result.stderr
    assert (tmp_path / "notes.txt").read_text() == "mine" and not (tmp_path / "tb").exists()


def test_a_run_killed_before_its_first_checkpoint_starts_again(tmp_path):
    """A half-written checkpoint nobody points at is no checkpoint: the run starts from step 0 and finishes."""
    (tmp_path / "tb" / "PPO_1").mkdir(parents=True)
    (tmp_path / "checkpoint" / "ckpt-0").mkdir(parents=True)  # half-written, never pointed at
    (tmp_path / "checkpoint" / "ckpt-0" / "model.zip").write_text("truncated")
    result = cli(
        "train-teacher",
        "--env",
        "CartPole-v1",
        "--algo",
        "ppo",
        "--steps",
        "256",
        "--out",
        str(tmp_path),
        "--eval-episodes",
        "1",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "resuming" not in result.stdout and yaml.safe_load((tmp_path / "card.yaml").read_text())["env_steps"] == 256
    assert not (tmp_path / "checkpoint").exists()
