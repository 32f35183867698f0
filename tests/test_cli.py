"""The real `policykd` CLI in subprocesses: outputs, fresh-process SB3 loading, TensorBoard, bad input."""

import json

import pytest
from conftest import run_cli, run_fresh_python


@pytest.fixture(scope="module")
def cartpole_run(zoo, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "cp"
    result = run_cli(
        "distill",
        "--env",
        "CartPole-v1",
        "--teacher",
        str(zoo / "ppo/CartPole-v1_1"),
        "--out",
        str(out),
        "--steps",
        "8000",
        "--rounds",
        "3",
        "--eval-episodes",
        "5",
        "--seed",
        "3",
    )
    assert result.returncode == 0, result.stderr
    return out, result


def test_distill_writes_student_summary_and_zoo_layout(cartpole_run):
    out, result = cartpole_run
    summary = json.loads((out / "summary.json").read_text())
    for key in (
        "env_id",
        "teachers",
        "teacher_algo",
        "student_algo",
        "teacher_params",
        "student_params",
        "env_steps",
        "wall_seconds",
        "teacher_return_mean",
        "teacher_return_std",
        "student_return_mean",
        "student_return_std",
        "eval_episodes",
        "action_agreement",
    ):
        assert key in summary, key
    assert summary["teacher_algo"] == "ppo" and summary["student_algo"] == "ppo"
    assert summary["student_params"] <= 0.25 * summary["teacher_params"]
    assert summary["env_steps"] == 8000
    seconds = summary["seconds_by_phase"]
    assert {"teacher_eval", "collect", "train", "evaluate", "checkpoint"} <= set(seconds)
    assert 0 < sum(seconds.values()) <= summary["wall_seconds"] + 1
    assert summary["teacher_return_mean"] == 500.0
    assert summary["student_return_mean"] >= 0.95 * summary["teacher_return_mean"]
    assert (out / "ppo" / "CartPole-v1_1" / "CartPole-v1.zip").is_file()
    assert (out / "ppo" / "CartPole-v1_1" / "CartPole-v1" / "config.yml").is_file()
    assert "student return" in result.stdout  # the summary table


def test_student_loads_in_plain_sb3_in_a_fresh_process(cartpole_run):
    out, _ = cartpole_run
    summary = json.loads((out / "summary.json").read_text())
    code = f"""
import sys, gymnasium as gym
from stable_baselines3 import PPO
from stable_baselines3.common.evaluation import evaluate_policy
model = PPO.load({str(out / "student.zip")!r}, device="cpu")
mean, std = evaluate_policy(model, gym.make("CartPole-v1"), n_eval_episodes=5, deterministic=True)
model.set_env(gym.make("CartPole-v1"))
model.learn(1000)
assert not any(m.startswith("policykd") for m in sys.modules), "policykd was imported"
print(mean)
"""
    result = run_fresh_python(code)
    assert result.returncode == 0, result.stderr
    assert float(result.stdout.strip().splitlines()[-1]) == pytest.approx(summary["student_return_mean"], abs=25)


def test_tensorboard_has_both_returns_on_one_chart(cartpole_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.custom_scalar import layout_pb2
    from tensorboard.plugins.custom_scalar import metadata as cs_metadata

    out, _ = cartpole_run
    acc = EventAccumulator(str(out / "tb"), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {
        "eval/teacher_return",
        "eval/student_return",
        "train/loss",
        "train/kl",
        "train/action_agreement",
        "train/entropy",
        "time/env_steps",
    } <= tags
    assert [e.step for e in acc.Scalars("eval/student_return")][-1] == 8000
    layout = layout_pb2.Layout()
    layout.ParseFromString(acc.Tensors(cs_metadata.CONFIG_SUMMARY_TAG)[0].tensor_proto.string_val[0])
    charts = [c for cat in layout.category for c in cat.chart]
    returns = next(c for c in charts if "teacher vs student" in c.title)
    assert list(returns.multiline.tag) == ["eval/teacher_return", "eval/student_return"]


def test_evaluate_prints_student_and_teacher_side_by_side(cartpole_run, zoo):
    out, _ = cartpole_run
    result = run_cli(
        "evaluate",
        "--env",
        "CartPole-v1",
        "--model",
        str(out / "student.zip"),
        "--teacher",
        str(zoo / "ppo/CartPole-v1_1"),
        "--episodes",
        "3",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["teacher"]["return_mean"] == 500.0
    assert report["model"]["algo"] == "ppo" and len(report["model"]["returns"]) == 3


def test_existing_output_is_never_overwritten(cartpole_run, zoo):
    out, _ = cartpole_run
    before = (out / "student.zip").read_bytes()
    result = run_cli("distill", "--env", "CartPole-v1", "--teacher", str(zoo / "ppo/CartPole-v1_1"), "--out", str(out))
    assert result.returncode == 2
    assert "already exists" in result.stderr and "--overwrite" in result.stderr
    assert (out / "student.zip").read_bytes() == before


@pytest.mark.parametrize(
    "args, message",
    [
        (["--env", "CartPole-v9", "--teacher", "{zoo}/ppo/CartPole-v1_1"], "unknown env id 'CartPole-v9'"),
        (["--env", "Acrobot-v1", "--teacher", "{zoo}/ppo/CartPole-v1_1"], "does not match Acrobot-v1"),
        (["--env", "CartPole-v1", "--teacher", "{tmp}/nope.zip"], "teacher not found"),
        (["--env", "CartPole-v1", "--teacher", "{zoo}/ppo/CartPole-v1_1", "--steps", "0"], "--steps must be positive"),
        (["--env", "CartPole-v1", "--teacher", "{zoo}/ppo/CartPole-v1_1", "--loss", "mse_q"], "Q-value teacher"),
        (["--env", "CartPole-v1", "--teacher", "{zoo}/ppo/CartPole-v1_1", "--loss", "bogus"], "unknown loss"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(zoo, tmp_path, args, message):
    out = tmp_path / "out"
    args = [a.format(zoo=zoo, tmp=tmp_path) for a in args]
    result = run_cli("distill", *args, "--out", str(out))
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not out.exists()


def test_teachers_lists_shipped_agents():
    result = run_cli("teachers")
    assert result.returncode == 0, result.stderr
    assert "shipped teachers" in result.stdout


@pytest.mark.parametrize(
    "env_id, agent, algo",
    [
        ("HalfCheetah-v5", "halfcheetah-sac-v5", "sac"),
        ("Hopper-v5", "hopper-tqc-v5", "tqc"),
        ("Walker2d-v5", "walker2d-tqc-v5", "tqc"),
    ],
)
def test_mujoco_distils_from_the_shipped_teacher_with_no_teacher_argument(tmp_path, env_id, agent, algo):
    out = tmp_path / "run"
    result = run_cli(
        "distill",
        "--env",
        env_id,
        "--steps",
        "2000",
        "--rounds",
        "1",
        "--epochs",
        "1",
        "--eval-episodes",
        "1",
        "--out",
        str(out),
        "--quiet",
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["teachers"][0].endswith(f"agents/{agent}") and summary["teacher_algo"] == algo
    assert summary["student_algo"] == "sac" and summary["params_ratio"] <= 0.05
    assert (
        summary["config"]["driver"] == "dagger" and summary["config"]["sample_actions"]
    )  # the preset (envs/mujoco.yaml)
    # the widest 2-layer MLP within 5 % of the actor: 4 units wider would not fit
    from stable_baselines3.common.env_util import make_vec_env

    from policykd.sb3_models import acting_params
    from policykd.students.build import build_student

    width = summary["student_arch"][0]
    assert summary["student_arch"] == [width, width] and width % 4 == 0
    wider = build_student("sac", make_vec_env(env_id, n_envs=1), (width + 4, width + 4), seed=0)
    assert acting_params(wider.policy) > 0.05 * summary["teacher_params"]


def test_first_run_needs_nothing_but_the_package(tmp_path):
    """README's first command: no teacher argument, no ../shared; the shipped CartPole teacher, matched."""
    result = run_cli("distill", "--env", "CartPole-v1", "--quiet", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "runs" / "CartPole-v1" / "summary.json").read_text())
    assert summary["teachers"][0].endswith("agents/cartpole-ppo-v1")
    assert summary["teacher_return_mean"] == summary["student_return_mean"] == 500.0
    assert (tmp_path / "runs" / "CartPole-v1" / "curves.png").is_file()
