"""Student views (--student-obs): each stage's semantics by hand, the buffer holding the view with the teacher's labels
of the full state at the same step, a view student that plays and is evaluated on its view, and the bad-input rows."""

from __future__ import annotations

import json
import sys

import gymnasium as gym
import numpy as np
import pytest
from conftest import REPO, cli

from policykd.envs import EnvFactory
from policykd.errors import PolicykdError
from policykd.views import StudentObservation, VecView, build_view, view_for, with_view

TEACHER = str(REPO / "src/policykd/resources/agents/cartpole-ppo-v1")
TINY = ["--steps", "1600", "--rounds", "2", "--eval-episodes", "2", "--n-envs", "4", "--torch-threads", "1"]


def _observe(specs: list[str], frames: np.ndarray, starts: list[bool]) -> np.ndarray:
    """The view of one env's observations `frames` [T, d], an episode starting where `starts` says."""
    space = gym.spaces.Box(-np.inf, np.inf, frames.shape[1:], np.float32)
    probe = type("P", (), {"obs": frames[0], "info": {}, "env": None})()
    view = build_view(specs, probe, space)
    observe = view.start(1, seed=0)
    return np.stack([observe(f[None], np.array([s]), None, [{}])[0] for f, s in zip(frames, starts)])


def test_history_stacks_oldest_first_and_restarts_with_the_episode():
    frames = np.arange(1, 6, dtype=np.float32)[:, None]  # observations 1..5, a new episode at the 4th
    seen = _observe(["history=3"], frames, [True, False, False, True, False])
    assert seen.tolist() == [[1, 1, 1], [1, 1, 2], [1, 2, 3], [4, 4, 4], [4, 4, 5]]


def test_delay_shows_the_observation_from_k_steps_ago_within_the_episode():
    frames = np.arange(1, 7, dtype=np.float32)[:, None]
    seen = _observe(["delay=2"], frames, [True, False, False, False, True, False])
    assert seen[:, 0].tolist() == [1, 1, 1, 2, 5, 5]


def test_mask_noise_and_order():
    frames = np.array([[0.0, 10.0, 20.0, 30.0]] * 3, dtype=np.float32)
    assert _observe(["mask=1,3"], frames, [True, False, False]).tolist() == [[0, 20]] * 3
    noisy = _observe(["mask=0,1,2", "noise=0.5"], frames, [True, False, False])[:, 0]
    assert np.all(noisy != 30.0) and np.std(noisy - 30.0) > 0.01
    again = _observe(["mask=0,1,2", "noise=0.5"], frames, [True, False, False])[:, 0]
    assert np.array_equal(noisy, again), "the same seed draws the same sensor noise"


def test_mask_velocities_keeps_mujoco_joint_positions():
    env = gym.make("HalfCheetah-v5")
    obs, _ = env.reset(seed=3)
    wrapped = StudentObservation(gym.make("HalfCheetah-v5"), ["mask=velocities"])
    seen, _ = wrapped.reset(seed=3)
    assert seen.shape == (8,) and np.allclose(seen, env.unwrapped.data.qpos[1:]) and np.allclose(seen, obs[:8])


def test_ram_is_the_consoles_ram_while_the_teacher_keeps_its_frames():
    factory = EnvFactory("ALE/Pong-v5")
    venv = with_view(factory, view_for(factory, ["ram"])).make(2, seed=0)
    obs = venv.reset()
    for _ in range(5):
        obs, *_ = venv.step(np.array([2, 3]))
    assert isinstance(venv, VecView) and obs.shape == (2, 128) and obs.dtype == np.uint8
    assert venv.full_obs.shape == (2, 4, 84, 84)
    rams = [env.ale.getRAM() for env in venv.get_attr("unwrapped")]
    assert np.array_equal(obs, np.stack(rams))
    venv.close()


def test_the_buffer_holds_the_view_and_the_teachers_labels_of_the_full_state(tmp_path):
    from policykd.run.build import build_run
    from policykd.settings import DistillSettings

    settings = DistillSettings(
        env_id="CartPole-v1",
        teachers=(TEACHER,),
        student_obs=("mask=1,3", "history=2"),
        n_envs=2,
        steps=100,
        out=str(tmp_path / "run"),
    )
    run = build_run(settings)
    collector = run.collector
    collector.restart(run.fresh_envs(0))
    expected = []
    for _ in range(12):  # one vector step at a time: the view and the teacher's full observation of that step
        full = run.envs.full_obs.copy()
        expected.append((collector.obs.copy(), full))
        collector.run(2, beta=1.0, student_act=None)
    stored = run.buffer.get(np.arange(24))
    views = np.concatenate([v for v, _ in expected])
    fulls = np.concatenate([f for _, f in expected])
    assert np.array_equal(stored.obs, views)
    assert np.array_equal(views[:, 2:], fulls[:, [0, 2]]), "the newest half of the window is x and theta"
    labels, _ = run.teacher.label(fulls)
    assert np.allclose(stored.teacher.logits.numpy(), labels.logits.numpy(), atol=1e-6)
    run.close()


def test_a_history_student_plays_where_the_masked_one_cannot_and_evaluate_reads_its_view(tmp_path):
    out = tmp_path / "history"
    args = ["distill", "--env", "CartPole-v1", "--student-obs", "mask=1,3", "--student-obs", "history=4", *TINY]
    result = cli(*args, "--steps", "12000", "--out", str(out))
    assert result.returncode == 0, result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["student_obs"] == ["mask=1,3", "history=4"] and "mask=1,3 history=4" in result.stdout
    assert summary["student_return_mean"] > 150, summary["student_returns"]
    evaluated = cli(
        "evaluate", "--env", "CartPole-v1", "--model", str(out), "--episodes", "2", "--seed", "10000", "--json",
        "--perturb", "sticky=0.2", "--perturb", "obs-noise=0.05",
    )  # fmt: skip
    assert evaluated.returncode == 0, evaluated.stderr
    measured = json.loads(evaluated.stdout)
    assert measured["model"]["returns"] == summary["student_returns"][:2]  # evaluate reads the view from the summary
    assert len(measured["perturbed"]) == 2  # perturbations on top of the view
    from stable_baselines3 import PPO
    from stable_baselines3.common.evaluation import evaluate_policy

    model = PPO.load(out / "student.zip")
    assert model.observation_space.shape == (8,)
    env = StudentObservation(gym.make("CartPole-v1"), ["mask=1,3", "history=4"])
    returns, _ = evaluate_policy(model, env, n_eval_episodes=2, deterministic=True)
    assert returns > 150


def test_a_users_function_is_the_students_sensor(tmp_path, monkeypatch):
    (tmp_path / "sensors.py").write_text(
        "import numpy as np\ndef angle(obs, info):\n    return np.array([obs[2], obs[2] ** 2])\n"
        "def wrong(obs, info):\n    return np.zeros(len(info) + (3 if 'episode' in info else 1))\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    factory = EnvFactory("CartPole-v1")
    venv = with_view(factory, view_for(factory, ["sensors:angle"])).make(1, seed=0)
    obs = venv.reset()
    assert obs.shape == (1, 2) and np.isclose(obs[0, 0], venv.full_obs[0, 2])
    venv.close()
    sys.modules.pop("sensors", None)


BAD = {
    "unknown view": (["--student-obs", "blur=3"], "unknown student view 'blur'"),
    "index out of range": (["--student-obs", "mask=7"], "index 7 is out of range for 4 entries"),
    "ram outside Atari": (["--student-obs", "ram"], "'ram' needs an Atari env"),
    "no velocities group": (["--student-obs", "mask=velocities"], "this env has no named groups"),
    "history=0": (["--student-obs", "history=0"], "'history=0' must be at least 1"),
    "function not importable": (["--student-obs", "nosuchmodule:f"], "cannot be imported"),
    "hints with a view": (["--student-obs", "mask=1", "--hint-weight", "1"], "--hint-weight is not supported"),
}


@pytest.mark.parametrize("row", list(BAD))
def test_bad_view_is_one_line_exit_2_and_nothing_written(tmp_path, row):
    args, message = BAD[row]
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("earlier work")
    result = cli("distill", "--env", "CartPole-v1", *args, "--out", str(out), "--overwrite")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], lines
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]


def test_a_function_of_the_wrong_shape_is_refused(tmp_path, monkeypatch):
    (tmp_path / "badsensors.py").write_text("import numpy as np\ndef grid(obs, info):\n    return np.zeros((2, 2))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(PolicykdError, match=r"must return a flat array of numbers, got shape \(2, 2\)"):
        view_for(EnvFactory("CartPole-v1"), ["badsensors:grid"])


def test_the_library_takes_a_function_and_a_wrapper_class_twice_in_one_interpreter(tmp_path):
    import policykd

    class Positions(gym.ObservationWrapper):
        def __init__(self, env):
            super().__init__(env)
            self.observation_space = gym.spaces.Box(-5, 5, (2,), np.float32)

        def observation(self, obs):
            return np.array([obs[0], obs[2]], np.float32)

    def positions(obs, info):  # defined here: found by the object given, not by importing its module
        return obs[[0, 2]]

    for view in (positions, Positions):
        result = policykd.distill(
            "CartPole-v1",
            student_obs=[view, "history=2"],
            steps=800,
            rounds=1,
            eval_episodes=1,
            out=str(tmp_path / "r"),
            overwrite=True,
            quiet=True,
            torch_threads=1,
        )
        assert result.summary.student_obs[1] == "history=2" and result.summary.student_obs[0].endswith(
            view.__qualname__
        )
        assert result.student.observation_space.shape == (4,)


def test_a_pong_ram_student_of_the_frame_teacher_trains_and_saves_as_an_mlp(tmp_path):
    out = tmp_path / "pong"
    result = cli(
        "distill", "--env", "ALE/Pong-v5", "--student-obs", "ram", "--student-obs", "history=2", "--steps", "256",
        "--rounds", "1", "--eval-episodes", "1", "--n-envs", "2", "--student-fraction", "0.02", "--torch-threads", "1",
        "--out", str(out), "--quiet",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["student_obs"] == ["ram", "history=2"]
    assert summary["student_params"] <= 0.02 * summary["teacher_params"]
    from stable_baselines3 import PPO

    model = PPO.load(out / "student.zip")
    assert model.observation_space.shape == (256,) and "Cnn" not in type(model.policy.features_extractor).__name__
