"""Atari: frames stored once (exact stacks back, bytes per transition), the Pong pipeline end to end."""

import json
import subprocess
import sys
import time

import numpy as np
import pytest
import torch as th
from conftest import REPO, cli, run_fresh_python

from policykd.data.buffer import DistillationBuffer
from policykd.data.frames import FrameStackStore
from policykd.distributions import ActionDist
from policykd.envs import EnvFactory


def _pong_stacks(steps: int, n_envs: int = 2, seed: int = 0):
    venv = EnvFactory("ALE/Pong-v5").make(n_envs, seed)
    rng = np.random.default_rng(seed)
    obs = venv.reset()
    stacks = [obs]
    for _ in range(steps):
        obs, _, dones, _ = venv.step(rng.integers(0, venv.action_space.n, n_envs))
        stacks.append(obs)
    venv.close()
    return stacks


def test_frame_store_returns_exactly_the_wrapper_stacks():
    """Frames stored once give back, bit for bit, the 4-frame stacks the wrappers gave, at under 7.5 KB a transition
    (a stack stored whole costs 28.2 KB)."""
    stacks = _pong_stacks(300)
    assert stacks[0].shape == (2, 4, 84, 84) and stacks[0].dtype == np.uint8
    buffer = DistillationBuffer(capacity=50_000)
    dist = ActionDist("categorical", logits=th.zeros(2, 6))
    for obs in stacks:
        buffer.add(obs, dist, None)
    assert isinstance(buffer.obs, FrameStackStore)
    everything = np.concatenate(stacks)
    order = np.arange(len(everything))
    np.testing.assert_array_equal(buffer.get(order).obs, everything)
    per_transition = buffer.nbytes() / buffer.capacity  # allocated bytes, frames ring and labels included
    assert per_transition <= 7.5 * 1024, per_transition  # a naive stack costs 28.2 KB


def test_frame_store_survives_episode_ends_and_ring_wrap():
    """A tiny ring: old transitions whose frames were recycled are excluded, the rest read back exactly."""
    stacks = _pong_stacks(200, n_envs=1)
    store = FrameStackStore(capacity=50, example=stacks[0], slack=8)
    slots = np.arange(len(stacks)) % 50
    for slot, obs in zip(slots, stacks):
        store.put(np.array([slot]), obs)
    valid = store.valid(50)
    assert 40 <= len(valid) <= 50
    latest = {int(s): stacks[i][0] for i, s in enumerate(slots)}
    for slot in valid:
        np.testing.assert_array_equal(store.get(np.array([slot]))[0], latest[int(slot)])


def test_checkpoints_append_only_new_frames_and_rebuild_the_ring_across_wraps(tmp_path):
    """Each save writes the frames since the last one (a segment per piece of the ring); reading the listed segments
    back gives the same stacks, after the ring wrapped twice; segments of recycled frames are forgotten."""
    from policykd.run.checkpoint import FRAMES, append_frames, forget_frames, read_frames

    stacks = _pong_stacks(200, n_envs=1)
    store = FrameStackStore(capacity=50, example=stacks[0], slack=8)
    segments = []
    for i, obs in enumerate(stacks):
        store.put(np.array([i % 50]), obs)
        if i % 23 == 22 or i == len(stacks) - 1:  # a checkpoint
            segments = append_frames(tmp_path, store.state(50), segments)
            forget_frames(tmp_path, segments)
            assert all(stop > store.next_serial - store.frame_capacity for _, stop in segments)
    on_disk = sorted(p.name for p in (tmp_path / FRAMES).glob("*.npy"))
    assert on_disk == sorted(f"{a}-{b}.npy" for a, b in segments)
    state = {k: v for k, v in store.state(50).items() if k != "frames"}
    rebuilt = FrameStackStore(capacity=50, example=stacks[0], slack=8)
    rebuilt.restore(state)
    read_frames(tmp_path, segments, rebuilt.frames, rebuilt.next_serial)
    valid = store.valid(50)
    np.testing.assert_array_equal(rebuilt.valid(50), valid)
    np.testing.assert_array_equal(rebuilt.get(valid), store.get(valid))


# Two collection segments a round (4 envs x 10 steps): checkpoints between frames of one round. One torch thread:
# the CNN's default of all cores, beside the other test worker on 2 cores, made this run 20x slower (OpenMP waits).
PONG = [
    "distill",
    "--env",
    "ALE/Pong-v5",
    "--steps",
    "160",
    "--rounds",
    "2",
    "--checkpoint-every",
    "40",
    "--n-envs",
    "4",
    "--eval-episodes",
    "1",
    "--student-arch",
    "8,8,8,8",
    "--epochs",
    "1",
    "--torch-threads",
    "1",
    "--quiet",
]


@pytest.fixture(scope="module")
def pong_run(tmp_path_factory):
    """The uninterrupted Pong run through the CLI in-process: the kill -9 test compares its resumed run with it."""
    out = tmp_path_factory.mktemp("atari") / "pong"
    result = cli(*PONG, "--out", str(out))
    assert result.returncode == 0, result.stderr
    return out


def test_pong_end_to_end_with_shipped_teacher(pong_run):
    """The shipped Pong teacher into a CNN student under 2 % of its size; the student loads in plain SB3 in a fresh
    interpreter where policykd cannot be imported."""
    out = pong_run
    summary = json.loads((out / "summary.json").read_text())
    assert summary["teachers"][0].endswith("agents/pong-ppo-v5")
    assert summary["teacher_params"] == 1_687_206
    assert summary["student_params"] < 0.02 * summary["teacher_params"]
    assert summary["env_steps"] == 160
    assert not (out / "frames").exists() and not list(out.glob("ckpt-*"))  # the frame segments go with the checkpoints
    assert -21 <= summary["student_return_mean"] <= 21
    code = f"""
import sys
sys.modules["policykd"] = None  # any import of policykd would fail
from stable_baselines3 import PPO
model = PPO.load({str(out / "student.zip")!r}, device="cpu")
assert type(model.policy.features_extractor).__name__ == "SmallCNN"
import numpy as np
print(model.predict(np.zeros((4, 84, 84), dtype=np.uint8), deterministic=True)[0])
"""
    loaded = run_fresh_python(code)
    assert loaded.returncode == 0, loaded.stderr


def test_pong_killed_mid_round_resumes_to_the_uninterrupted_student(pong_run, tmp_path):
    """kill -9 after a checkpoint that holds half a round of frames (the frame ring, each env's last stack): the
    resumed run ends with the uninterrupted run's weights (channels-last CNN training included) and returns."""
    from stable_baselines3 import PPO

    out = tmp_path / "killed"
    command = [sys.executable, "-m", "policykd.cli", *PONG, "--out", str(out)]
    proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while _checkpoint_number(out) < 3:
        assert proc.poll() is None, proc.stderr.read()
        assert time.time() < deadline
        time.sleep(0.01)
    proc.kill()
    proc.wait(timeout=60)
    assert not (out / "summary.json").exists()
    resumed = cli(*PONG, "--out", str(out))  # the killed run needed a process of its own; the resume does not
    assert resumed.returncode == 0, resumed.stderr
    a, b = (PPO.load(folder / "student.zip", device="cpu").policy.state_dict() for folder in (pong_run, out))
    assert all(th.equal(a[k], b[k]) for k in a)
    assert (
        json.loads((out / "summary.json").read_text())["student_returns"]
        == json.loads((pong_run / "summary.json").read_text())["student_returns"]
    )


def _checkpoint_number(out):
    try:
        return json.loads((out / "checkpoint.json").read_text())["number"]
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        return -1
