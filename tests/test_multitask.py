"""One student, several tasks: CartPole (discrete, PPO student) and Pendulum (continuous, SAC student) in one shared
trunk; each task's zip is a plain SB3 model that acts as the multi-task student does; kill -9 resumes; bad input."""

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch as th
from conftest import REPO, cli, run_cli, run_fresh_python

from policykd.students.sharing import shares_trunk, trunk

BUDGET = ["--steps", "2000", "--rounds", "2", "--epochs", "2", "--eval-episodes", "2", "--seed", "3", "--quiet"]


def _args(zoo, pendulum, out):
    return [
        "distill",
        "--env",
        "CartPole-v1",
        "--env",
        "Pendulum-v1",
        "--teacher",
        f"CartPole-v1={zoo / 'ppo/CartPole-v1_1'}",
        "--teacher",
        f"Pendulum-v1={pendulum}",
        *BUDGET,
        "--out",
        str(out),
    ]


@pytest.fixture(scope="module")
def finished(zoo, sac_pendulum_teacher, tmp_path_factory):
    out = tmp_path_factory.mktemp("multitask") / "run"
    done = cli(*_args(zoo, sac_pendulum_teacher, out), "--task-balance", "adaptive")
    assert done.returncode == 0, done.stderr
    return out


def test_a_row_per_task_and_each_task_folder_is_a_run(finished):
    summary = json.loads((finished / "summary.json").read_text())
    assert [row["env_id"] for row in summary["tasks"]] == ["CartPole-v1", "Pendulum-v1"]
    each = [row["student_params"] for row in summary["tasks"]]
    assert summary["student_params"] == sum(each) - summary["trunk_params"]  # the trunk counted once
    assert summary["student_params"] <= 0.1 * summary["teacher_params"]  # classic control: 10 % of the sum
    assert summary["device"] == "cpu"  # --device auto: MLPs stay on the CPU
    for row in summary["tasks"]:
        folder = finished / row["env_id"]
        task = json.loads((folder / "summary.json").read_text())
        assert task["student_return_mean"] == row["student_return_mean"]
        assert task["student_arch"] == summary["student_arch"]
        assert (folder / "student.zip").is_file() and (folder / "curves.png").is_file()
    assert (finished / "curves.png").is_file()
    assert not (finished / "checkpoint.json").exists()


def test_tensorboard_has_every_tasks_ratio_on_one_chart(finished):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(finished / "tb"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"ratio/CartPole-v1", "ratio/Pendulum-v1"} <= tags
    summary = json.loads((finished / "summary.json").read_text())
    last = events.Scalars("ratio/CartPole-v1")[-1].value
    assert last == pytest.approx(summary["tasks"][0]["return_ratio"], rel=1e-5)


def test_adaptive_balance_weighs_the_task_furthest_below_its_teacher(finished):
    """--task-balance adaptive: after each evaluation the task with the lower return ratio trains with the larger
    weight (`weight/<ENV>` in TensorBoard), weights of mean 1; summary.json has the last ones."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(finished / "tb"))
    events.Reload()
    envs = ["CartPole-v1", "Pendulum-v1"]
    ratios = [[e.value for e in events.Scalars(f"ratio/{env}")] for env in envs]
    weights = [[e.value for e in events.Scalars(f"weight/{env}")] for env in envs]
    assert len(weights[0]) == len(ratios[0]) >= 2
    for (r0, r1), (w0, w1) in zip(zip(*ratios), zip(*weights)):
        assert w0 + w1 == pytest.approx(2.0)
        if min(r0, r1) < 1 and abs(r0 - r1) > 1e-6:
            assert (w0 > w1) == (r0 < r1), (r0, r1, w0, w1)
    assert any(abs(w0 - 1) > 0.05 for w0 in weights[0]), "a tiny budget leaves one task behind: weights must move"
    summary = json.loads((finished / "summary.json").read_text())
    assert summary["task_balance"] == "adaptive"
    assert summary["task_weights"] == pytest.approx([w[-1] for w in weights], rel=1e-5)


def test_adaptive_weights_follow_the_gap_below_the_teacher():
    """A task 10 % below its teacher weighs (1 + 10 * 0.1) = 2x one at or above its teacher; given weights scale it;
    before the first evaluation, or with fixed balance, the given weights hold."""
    from policykd.run.state import Evaluation, RunState
    from policykd.settings.distill import DistillSettings
    from policykd.settings.tasks import MultiTaskSettings, TaskSettings
    from policykd.workflows.tasks.balance import task_weights

    def state(student: float) -> RunState:
        return RunState(teacher_returns=[-100.0, -100.0], evals=[Evaluation(1, 10, 10, student)])

    tasks = (DistillSettings(env_id="CartPole-v1"), DistillSettings(env_id="Pendulum-v1"))
    adaptive = MultiTaskSettings(tasks, "out", TaskSettings(task_balance="adaptive"))
    assert task_weights(adaptive, [state(-110.0), state(-90.0)]) == pytest.approx([4 / 3, 2 / 3])
    assert task_weights(adaptive, [RunState(), RunState()]) == [1.0, 1.0]
    given = MultiTaskSettings(tasks, "out", TaskSettings(task_weights=(1.0, 3.0), task_balance="adaptive"))
    assert task_weights(given, [state(-110.0), state(-100.0)]) == pytest.approx([0.8, 1.2])  # 2 * 1 : 1 * 3
    fixed = MultiTaskSettings(tasks, "out", TaskSettings(task_weights=(1.0, 3.0)))
    assert task_weights(fixed, [state(-110.0), state(-100.0)]) == [0.5, 1.5]


def test_task_zips_are_plain_sb3_and_act_as_the_multitask_student(zoo, sac_pendulum_teacher, tmp_path):
    """The library call: its students share the trunk's very tensors; each zip, loaded in a process that never imports
    policykd, gives the multi-task student's actions for its task, and its trunk equals the other task's."""
    import policykd

    result = policykd.distill_tasks(
        ["CartPole-v1", "Pendulum-v1"],
        teachers=[f"CartPole-v1={zoo / 'ppo/CartPole-v1_1'}", f"Pendulum-v1={sac_pendulum_teacher}"],
        steps=2000,
        rounds=2,
        epochs=2,
        eval_episodes=2,
        seed=4,
        quiet=True,
        out=str(tmp_path / "lib"),
    )
    students = list(result.students.values())
    assert shares_trunk(students)
    assert trunk(students[0].policy)[0].weight is trunk(students[1].policy)[0].weight
    rng = np.random.default_rng(0)
    obs = {"CartPole-v1": rng.normal(size=(5, 4)) * 0.1, "Pendulum-v1": rng.uniform(-1, 1, size=(5, 3))}
    expected = {
        env: model.predict(obs[env].astype(np.float32), deterministic=True)[0] for env, model in result.students.items()
    }
    code = f"""
import sys, json, numpy as np, torch
from stable_baselines3 import PPO, SAC
a = PPO.load({str(result.out / "CartPole-v1" / "student.zip")!r}, device="cpu")
b = SAC.load({str(result.out / "Pendulum-v1" / "student.zip")!r}, device="cpu")
obs_a = np.array({obs["CartPole-v1"].tolist()}, dtype=np.float32)
obs_b = np.array({obs["Pendulum-v1"].tolist()}, dtype=np.float32)
same = torch.equal(a.policy.mlp_extractor.policy_net[2].weight, b.policy.actor.latent_pi[2].weight)
print(json.dumps([a.predict(obs_a, deterministic=True)[0].tolist(), b.predict(obs_b, deterministic=True)[0].tolist(),
                  same, "policykd" in sys.modules]))
"""
    done = run_fresh_python(code)
    assert done.returncode == 0, done.stderr
    cartpole, pendulum, same, imported = json.loads(done.stdout)
    assert cartpole == expected["CartPole-v1"].tolist()
    np.testing.assert_allclose(pendulum, expected["Pendulum-v1"], atol=1e-6)
    assert same and not imported


def test_a_task_student_plays_in_evaluate_exports_and_learns(finished, tmp_path):
    folder = finished / "CartPole-v1"
    evaluated = cli("evaluate", "--env", "CartPole-v1", "--model", str(folder), "--episodes", "2", "--json")
    assert evaluated.returncode == 0, evaluated.stderr
    summary = json.loads((folder / "summary.json").read_text())
    assert json.loads(evaluated.stdout)["model"]["returns"] == summary["student_returns"]
    onnx = tmp_path / "cartpole.onnx"
    exported = cli("export", str(folder), "--out", str(onnx))
    assert exported.returncode == 0, exported.stderr
    assert onnx.is_file()
    import gymnasium as gym
    from stable_baselines3 import SAC

    model = SAC.load(finished / "Pendulum-v1" / "student.zip", env=gym.make("Pendulum-v1"), device="cpu")
    model.learn(200)  # continues with RL as any SAC model does


def test_a_task_student_for_the_wrong_env_is_refused(finished, tmp_path):
    done = cli("export", str(finished / "CartPole-v1"), "--env", "Pendulum-v1", "--out", str(tmp_path / "x.onnx"))
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert not (tmp_path / "x.onnx").exists()


def _checkpoint_number(out):
    try:
        return json.loads((out / "checkpoint.json").read_text())["number"]
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        return -1


def _task_weights(out):
    from stable_baselines3 import PPO, SAC

    return [
        PPO.load(out / "CartPole-v1" / "student.zip", device="cpu").policy.state_dict(),
        SAC.load(out / "Pendulum-v1" / "student.zip", device="cpu").policy.actor.state_dict(),
    ]


def test_kill_9_resumes_to_the_uninterrupted_students(zoo, sac_pendulum_teacher, tmp_path):
    extra = ["--checkpoint-every", "500", "--ema", "0.99", "--task-balance", "adaptive"]
    reference = tmp_path / "reference"
    done = cli(*_args(zoo, sac_pendulum_teacher, reference), *extra)
    assert done.returncode == 0, done.stderr

    out = tmp_path / "killed"
    args = [*_args(zoo, sac_pendulum_teacher, out), *extra]
    proc = subprocess.Popen([sys.executable, "-m", "policykd.cli", *args], cwd=REPO, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while _checkpoint_number(out) < 3:
        assert proc.poll() is None, proc.stderr.read()
        assert time.time() < deadline
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL
    assert not (out / "summary.json").exists()

    other = [a if a != "Pendulum-v1" else "Acrobot-v1" for a in args[:5]] + ["--out", str(out), "--quiet"]
    refused = cli(*other)  # another task list in the same folder: refused, nothing lost
    assert refused.returncode == 2 and "other settings" in refused.stderr, refused.stderr
    assert _checkpoint_number(out) >= 3

    resumed = run_cli(*args)
    assert resumed.returncode == 0, resumed.stderr
    for a, b in zip(_task_weights(reference), _task_weights(out)):
        assert all(th.equal(a[k], b[k]) for k in a)
    ref, got = (json.loads((d / "summary.json").read_text()) for d in (reference, out))
    assert [r["student_return_mean"] for r in ref["tasks"]] == [r["student_return_mean"] for r in got["tasks"]]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--env", "CartPole-v1"], "CartPole-v1 is given twice"),
        (["--teacher", "Acrobot-v1=x.zip"], "Acrobot-v1 is not one of the envs given"),
        (["--teacher", "x.zip"], "name the teacher's env as ENV=SPEC"),
        (["--env", "Acrobot-v1"], "none shipped for Acrobot-v1: pass --teacher Acrobot-v1=SPEC"),
        (["--task-weights", "1,2,3"], "--task-weights has 3 weights for 2 tasks"),
        (["--task-weights", "1,-1"], "--task-weights must be non-negative"),
        (["--task-balance", "greedy"], "unknown task balance 'greedy': choose from fixed, adaptive"),
        (["--rl-steps", "1000"], "--rl-steps is not supported with several --env"),
    ],
    ids=[
        "env-twice",
        "teacher-elsewhere",
        "teacher-without-env",
        "no-teacher",
        "weights-length",
        "weights-negative",
        "balance-unknown",
        "rl",
    ],
)
def test_bad_input_is_one_line_before_any_work(zoo, tmp_path, extra, message):
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    args = ["distill", "--env", "CartPole-v1", "--env", "Hopper-v5", "--out", str(out), "--overwrite", *extra]
    done = cli(*args)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and done.stderr.count("\n") == 1, done.stderr
    assert (out / "keep.txt").read_text() == "mine"


def test_task_weights_need_several_envs():
    done = cli("distill", "--env", "CartPole-v1", "--task-weights", "1")
    assert done.returncode == 2 and "two or more" in done.stderr, done.stderr


def test_a_shared_input_with_task_embeddings(zoo, tmp_path):
    """--task-input shared: tasks with the same observation size train one input layer's weights (each its own bias),
    and each zip still acts on raw observations as its in-process student does, its own standardisation folded into
    its own copy of those weights."""
    from stable_baselines3 import PPO

    import policykd

    teacher = zoo / "ppo/CartPole-v1_1"
    result = policykd.distill_tasks(
        ["CartPole-v1", "CartPole-v0"],
        teachers=[f"CartPole-v1={teacher}", f"CartPole-v0={teacher}"],
        task_input="shared",
        steps=1000,
        rounds=1,
        epochs=1,
        eval_episodes=1,
        quiet=True,
        out=str(tmp_path / "shared"),
    )
    summary = result.summary
    width = summary["student_arch"][0]
    each = [row["student_params"] for row in summary["tasks"]]
    assert summary["task_input"] == "shared"
    assert summary["student_params"] == sum(each) - summary["trunk_params"] - 4 * width  # the input weights once
    obs = np.random.default_rng(1).normal(size=(8, 4)).astype(np.float32)
    for env, student in result.students.items():
        saved = PPO.load(tmp_path / "shared" / env / "student.zip", device="cpu")
        np.testing.assert_array_equal(
            saved.predict(obs, deterministic=True)[0], student.predict(obs, deterministic=True)[0]
        )
    assert "--task-input" in cli("distill", "--env", "CartPole-v1", "--task-input", "shared").stderr


def test_a_run_saved_before_task_balance_existed_is_the_same_run(tmp_path):
    """An unfinished multi-task run whose config.json predates --task-balance (an upgrade of policykd) is the same run
    as the command repeated with the default, fixed, and another run with adaptive."""
    from policykd.presets import resolve_tasks
    from policykd.run.checkpoint import unstarted

    settings = resolve_tasks(["CartPole-v1", "Pendulum-v1"], out=str(tmp_path))
    saved = settings.to_dict()
    del saved["task_balance"]
    (tmp_path / "config.json").write_text(json.dumps(saved))
    assert unstarted(tmp_path, settings)
    assert not unstarted(
        tmp_path, resolve_tasks(["CartPole-v1", "Pendulum-v1"], out=str(tmp_path), task_balance="adaptive")
    )
