"""Recorded datasets: record -> Minari -> distil, round trips, resume after kill -9, bad datasets.

Every dataset here is recorded by the test itself (real teachers, real envs, real Minari
files) under a temporary MINARI_DATASETS_PATH. Commands run through the CLI's entry point in
this interpreter (`cli`); the runs killed with kill -9 are processes of their own, which inherit
that folder.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch as th
from conftest import REPO, cli


@pytest.fixture(scope="module")
def datasets(tmp_path_factory, zoo):
    """20 CartPole episodes of the rl-zoo PPO teacher: with distributions, and actions only."""
    root = tmp_path_factory.mktemp("minari")
    previous = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(root)
    teacher = str(zoo / "ppo/CartPole-v1_1")
    for name, extra in (("cartpole/teacher-v0", []), ("cartpole/actions-v0", ["--actions-only"])):
        result = cli(
            "record",
            "--env",
            "CartPole-v1",
            "--teacher",
            teacher,
            "--episodes",
            "20",
            "--dataset",
            name,
            "--quiet",
            *extra,
        )
        assert result.returncode == 0, result.stderr
    yield root
    if previous is None:
        os.environ.pop("MINARI_DATASETS_PATH", None)
    else:
        os.environ["MINARI_DATASETS_PATH"] = previous


def test_recorded_distributions_equal_the_teachers_on_those_observations(datasets, zoo):
    """Minari's own loader reads what `record` wrote, and the stored logits and values are the teacher's own."""
    import minari

    from policykd.teachers import load_teacher

    dataset = minari.load_dataset("cartpole/teacher-v0")  # Minari's own loader reads it
    assert dataset.total_episodes == 20 and dataset.total_steps == 20 * 500
    teacher = load_teacher(zoo / "ppo/CartPole-v1_1", env_id="CartPole-v1")
    for episode in dataset.iterate_episodes(episode_indices=[0, 7]):
        dist, value = teacher.label(episode.observations)
        np.testing.assert_allclose(
            episode.infos["teacher_logits"], dist.logits.numpy(), rtol=1e-5, atol=1e-5
        )  # batch 1 vs 501: float32 rounding
        np.testing.assert_allclose(episode.infos["teacher_value"], value.numpy(), rtol=1e-5, atol=1e-5)
        assert np.array_equal(episode.actions, dist.logits[:-1].argmax(-1).numpy())  # it acted greedily
    meta = json.loads((datasets / "cartpole/teacher-v0/policykd.json").read_text())
    assert meta["label_kind"] == "categorical" and meta["teacher_algo"] == "ppo" and len(meta["episode_returns"]) == 20


def test_actions_only_dataset_stores_no_distributions(datasets):
    """--actions-only: no teacher_* infos, and the metadata says there is no label kind."""
    import minari

    episode = next(minari.load_dataset("cartpole/actions-v0").iterate_episodes(episode_indices=[0]))
    assert not any(key.startswith("teacher_") for key in episode.infos)
    assert json.loads((datasets / "cartpole/actions-v0/policykd.json").read_text())["label_kind"] is None


@pytest.mark.parametrize("name,loss", [("cartpole/actions-v0", "nll"), ("cartpole/teacher-v0", "kl")])
def test_offline_distillation_from_20_episodes_reaches_475(datasets, tmp_path, name, loss):
    """20 recorded episodes are enough for a CartPole student at 475+, with BC on actions and KL on distributions,
    and no env step but the evaluation's."""
    out = tmp_path / "out"
    result = cli("distill", "--env", "CartPole-v1", "--dataset", name, "--out", str(out), "--quiet")
    assert result.returncode == 0, result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["loss"] == loss  # behaviour cloning for actions only, KL with distributions
    assert summary["env_steps"] == 0 and summary["driver"] == "offline"  # the env only evaluated
    assert summary["dataset"]["steps"] == 10_000 and summary["dataset"]["episodes"] == 20
    assert summary["student_return_mean"] >= 475, summary["student_returns"]
    assert summary["teacher_return_source"] == "dataset episodes" and summary["teacher_return_mean"] == 500


def test_dataset_then_dagger_rounds_with_the_live_teacher(datasets, zoo, tmp_path):
    """A dataset, then DAgger rounds: the live teacher relabels the action-only steps, the buffer holds both."""
    out = tmp_path / "out"
    result = cli(
        "distill",
        "--env",
        "CartPole-v1",
        "--dataset",
        "cartpole/actions-v0",
        "--teacher",
        str(zoo / "ppo/CartPole-v1_1"),
        "--steps",
        "4000",
        "--rounds",
        "2",
        "--eval-episodes",
        "3",
        "--out",
        str(out),
        "--quiet",
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["env_steps"] == 4000 and summary["buffer_transitions"] == 10_000 + 4000
    assert summary["loss"] == "kl"  # the live teacher relabelled the action-only dataset
    assert [e["round"] for e in summary["evals"]] == [0, 1, 2]  # one offline round, then two DAgger rounds
    assert summary["student_return_mean"] >= 475


def _partial(root: Path, name: str) -> list[Path]:
    return sorted((root / ".policykd-partial" / name).glob("episode_*.npz"))


def test_record_killed_with_kill_9_resumes_to_the_same_dataset(datasets, zoo):
    """A recording killed after 3 episodes, recorded again, equals one that was never killed, episode by episode."""
    import minari

    args = [
        "record",
        "--env",
        "CartPole-v1",
        "--teacher",
        str(zoo / "dqn/CartPole-v1_1"),
        "--episodes",
        "12",
        "--quiet",
    ]
    reference = cli(*args, "--dataset", "resume/reference-v0")
    assert reference.returncode == 0, reference.stderr
    cmd = [sys.executable, "-m", "policykd.cli", *args, "--dataset", "resume/killed-v0"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while len(_partial(datasets, "resume/killed-v0")) < 3:
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    recorded = len(_partial(datasets, "resume/killed-v0"))
    assert 3 <= recorded < 12 and not (datasets / "resume/killed-v0").exists()
    again = cli(*args, "--dataset", "resume/killed-v0")
    assert again.returncode == 0, again.stderr
    a = list(minari.load_dataset("resume/reference-v0").iterate_episodes())
    b = list(minari.load_dataset("resume/killed-v0").iterate_episodes())
    assert len(a) == len(b) == 12
    for x, y in zip(a, b):
        assert np.array_equal(x.observations, y.observations) and np.array_equal(x.actions, y.actions)
        assert np.array_equal(x.infos["teacher_logits"], y.infos["teacher_logits"])
    assert not (datasets / ".policykd-partial" / "resume/killed-v0").exists()


def test_atari_dataset_stores_frames_once_and_rebuilds_the_wrapper_stacks(tmp_path, monkeypatch):
    """Real ALE Pong (episodes capped at 800 frames), the shipped teacher: the stacks read back from
    the dataset equal those the wrapper gave the teacher, at under 7.5 KB per step on disk."""
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    from policykd.data.dataset_writer import write_dataset
    from policykd.data.datasets import Dataset, DatasetMeta, open_dataset, stored_observation_space
    from policykd.data.record import record_episode, teacher_policy
    from policykd.envs import EnvFactory
    from policykd.teachers import load_teacher

    teacher = load_teacher("pong-ppo-v5", env_id="ALE/Pong-v5")
    factory = EnvFactory("ALE/Pong-v5", env_kwargs={"max_episode_steps": 800})
    seen = []
    act = teacher_policy(teacher)

    def watching(obs):
        seen.append(obs[0].copy())
        return act(obs)

    venv = factory.make(1, 0)
    episodes = []
    for seed in (3, 4):
        episode, dist = record_episode(venv, watching, seed, frame_stack=4)
        episodes.append(episode)
    venv.close()
    assert all(ep.truncations[-1] for ep in episodes) and episodes[0].observations.shape[1:] == (84, 84)
    meta = DatasetMeta("ALE/Pong-v5", frame_stack=4, label_kind="categorical", teacher="pong-ppo-v5")
    write_dataset(
        "pong/test-v0",
        episodes,
        meta,
        observation_space=stored_observation_space(teacher.observation_space, 4),
        action_space=teacher.action_space,
    )
    data: Dataset = open_dataset("pong/test-v0", "ALE/Pong-v5", teacher.observation_space, teacher.action_space)
    stacks = np.concatenate([obs for obs, _, _, _ in data.episodes()])
    # `seen` also holds each episode's final observation, which the dataset keeps but does not train on
    lengths = [len(ep.rewards) for ep in episodes]
    expected = np.concatenate(
        [np.stack(seen[: lengths[0]]), np.stack(seen[lengths[0] + 1 : lengths[0] + 1 + lengths[1]])]
    )
    assert np.array_equal(stacks, expected)
    assert data.bytes_on_disk / data.total_steps <= 7.5 * 1024, data.bytes_on_disk / data.total_steps

    from policykd.data.buffer import DistillationBuffer
    from policykd.data.source import fill_buffer

    buffer = DistillationBuffer(20_000)  # allocated per transition, as in a real run
    assert fill_buffer(buffer, data, live=None, squashed=False) == data.total_steps
    np.testing.assert_array_equal(buffer.get(np.arange(data.total_steps)).obs, expected)  # frames shared in memory too
    assert buffer.nbytes() / buffer.capacity <= 7.5 * 1024, buffer.nbytes() / buffer.capacity


def _corrupt(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    path = dst / "data" / "main_data.hdf5"
    with open(path, "r+b") as handle:
        handle.seek(0)
        handle.write(b"\x00" * 4096)
    return dst


def _truncated(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    path = dst / "data" / "main_data.hdf5"
    os.truncate(path, path.stat().st_size // 2)
    return dst


def _without_actions(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    with h5py.File(dst / "data" / "main_data.hdf5", "a") as handle:
        for name in handle:
            del handle[name]["actions"]
    return dst


def _other_spaces(src: Path, dst: Path) -> Path:
    """A dataset that claims CartPole-v1 but whose observations have 6 numbers (Acrobot's)."""
    import shutil

    shutil.copytree(src, dst)
    meta = json.loads((dst / "policykd.json").read_text())
    (dst / "policykd.json").write_text(json.dumps({**meta, "env_id": "Acrobot-v1"}))
    return dst


BAD_DATASETS = {
    "dataset that does not exist": ("{root}/nowhere", "CartPole-v1", "dataset not found"),
    "remote dataset offline": ("mujoco/halfcheetah/expert-v0", "HalfCheetah-v5", "cannot download it"),
    "truncated dataset": ("{truncated}", "CartPole-v1", "corrupt or truncated"),
    "corrupt dataset": ("{corrupt}", "CartPole-v1", "corrupt or truncated"),
    "dataset of another env": ("cartpole/teacher-v0", "Acrobot-v1", "was recorded on CartPole-v1, not Acrobot-v1"),
    "dataset with other spaces": ("{other_spaces}", "Acrobot-v1", "does not match Acrobot-v1's Box(6,)"),
    "dataset without actions": ("{no_actions}", "CartPole-v1", "has no actions"),
}


@pytest.mark.parametrize("case", list(BAD_DATASETS))
def test_bad_dataset_row(case, datasets, tmp_path):
    """Each bad dataset is one line on stderr, exit 2, and an earlier run's file in --out survives."""
    spec, env, message = BAD_DATASETS[case]
    source = datasets / "cartpole/teacher-v0"
    makers = {
        "truncated": _truncated,
        "corrupt": _corrupt,
        "no_actions": _without_actions,
        "other_spaces": _other_spaces,
    }
    for key, make in makers.items():
        if "{" + key + "}" in spec:
            spec = str(make(source, tmp_path / key))
    spec = spec.format(root=tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("an earlier run's file")
    result = cli("distill", "--env", env, "--dataset", spec, "--out", str(out), "--overwrite", "--quiet")
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip() and "WARNING: compiler" not in line]
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], result.stderr
    assert (out / "keep.txt").read_text() == "an earlier run's file"


def test_soft_loss_on_an_action_only_dataset_is_refused(datasets, tmp_path):
    """A soft loss needs distributions: an action-only dataset has none to compare."""
    result = cli(
        "distill",
        "--env",
        "CartPole-v1",
        "--dataset",
        "cartpole/actions-v0",
        "--loss",
        "mse_logits",
        "--out",
        str(tmp_path / "out"),
        "--quiet",
    )
    assert result.returncode == 2 and "holds only actions" in result.stderr


def test_offline_run_killed_with_kill_9_resumes_to_the_same_weights(datasets, tmp_path):
    """An offline run killed mid-way resumes (re-reading the dataset, which the checkpoint does not copy) to the
    uninterrupted run's weights."""
    from stable_baselines3 import PPO

    args = [
        "distill",
        "--env",
        "CartPole-v1",
        "--dataset",
        "cartpole/teacher-v0",
        "--rounds",
        "6",
        "--epochs",
        "3",
        "--eval-episodes",
        "2",
        "--seed",
        "3",
        "--quiet",
    ]
    reference = tmp_path / "reference"
    done = cli(*args, "--out", str(reference))
    assert done.returncode == 0, done.stderr
    out = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "policykd.cli", *args, "--out", str(out)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.time() + 120
    while not (out / "checkpoint.json").exists() or json.loads((out / "checkpoint.json").read_text())["number"] < 3:
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL and not (out / "summary.json").exists()
    current = out / json.loads((out / "checkpoint.json").read_text())["folder"]
    assert (current / "tensors.pt").is_file() and not any(current.glob("arrays/buffer.*"))  # the dataset is re-read
    resumed = cli(*args, "--out", str(out))
    assert resumed.returncode == 0, resumed.stderr
    a = PPO.load(reference / "student.zip", device="cpu").policy.state_dict()
    b = PPO.load(out / "student.zip", device="cpu").policy.state_dict()
    assert all(th.equal(a[k], b[k]) for k in a)
