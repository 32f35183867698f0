"""Beyond the teacher: RL continuation with the kick (`--rl-steps`), kickstarting from scratch, resume during RL."""

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch as th
from conftest import REPO, cli, run_fresh_python


@pytest.fixture(scope="module")
def weak_teacher(tmp_path_factory):
    """A CartPole PPO stopped after 1,024 steps: it balances ~130 steps of 500."""
    from stable_baselines3 import PPO

    path = tmp_path_factory.mktemp("weak") / "weak.zip"
    model = PPO("MlpPolicy", "CartPole-v1", seed=0, n_steps=256, device="cpu")
    model.learn(1024)
    model.save(path)
    return path


@pytest.fixture(scope="module")
def lifted(weak_teacher, tmp_path_factory):
    import policykd

    out = tmp_path_factory.mktemp("rl") / "run"
    policykd.distill(
        "CartPole-v1",
        [weak_teacher],
        steps=4000,
        rounds=2,
        out=str(out),
        rl_steps=30_000,
        baseline_scratch=True,
        quiet=True,
    )
    return out


def _scalars(folder, tag):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    acc.Reload()
    return [(e.step, e.value) for e in acc.Scalars(tag)]


def test_rl_lifts_the_student_above_its_weak_teacher_and_beats_scratch(lifted):
    """RL after distillation lifts the student to 1.5x a weak teacher and above the same RL from scratch on the same
    steps, at the end and along the way (the mean of the RL evaluations); the saved student is the RL one. Checked by
    hand at seeds 0-4 (`--rl-steps 30000`, 2026-12-03): continued 360/402/478/368/472 against plain 190/167/346/162/309,
    evaluation means 335/361/418/355/413 against 169/138/311/270/240; this test runs seed 0."""
    summary = json.loads((lifted / "summary.json").read_text())
    rl, teacher = summary["rl"], summary["teacher_return_mean"]
    assert teacher < 200
    assert rl["hyperparameters"].startswith("rl-zoo ppo [CartPole-v1]") and rl["n_envs"] == 8
    assert rl["rl_steps"] == 30_208  # 30,000 rounded up to whole rollouts of 8 envs x 32 steps
    assert rl["return_after_rl"] >= 1.5 * teacher
    along, plain = ([e["return_mean"] for e in rl[key]] for key in ("evals", "scratch_evals"))
    assert np.mean(along) > np.mean(plain)
    assert summary["student_return_mean"] == rl["return_after_rl"]  # the saved student is the RL student
    assert rl["temperature"] == 1.0  # the default: RL starts from the distilled policy as it is
    assert rl["critic_warmup"] == rl["evals"][0]["env_steps"] == 3072  # the default: the first segment, critic only
    assert rl["hyperparameters"].endswith("learning rate x 0.333")  # fine-tuning; the baseline keeps rl-zoo's
    assert rl["return_after_rl"] > rl["scratch_return"]  # same net, same random start, same RL steps, no teacher
    assert [e["env_steps"] for e in rl["evals"]] == [e["env_steps"] for e in rl["scratch_evals"]]
    assert (lifted / "student-distilled.zip").is_file()


def test_tensorboard_has_teacher_student_and_scratch_and_adaptive_lambda_is_zero_once_the_student_passes(lifted):
    """The RL curves read back from TensorBoard, and the adaptive kick weight of each segment equals the QDagger formula
    on the return before it (0 once the student passes)."""
    tb = lifted / "tb"
    teacher = _scalars(tb, "rl/teacher_return")
    student = _scalars(tb, "rl/student_return")
    scratch = _scalars(tb, "rl/scratch_return")
    weights = _scalars(tb, "rl/kick_weight")
    assert len(teacher) == len(student) == len(scratch) == len(weights) == 10
    summary = json.loads((lifted / "summary.json").read_text())
    before = [summary["rl"]["return_before_rl"]] + [v for _, v in student[:-1]]  # what each segment's lambda saw
    gap_target = summary["teacher_return_mean"]
    warm = summary["rl"]["critic_warmup"]
    for seen, (step, weight) in zip(before, weights):
        expected = min(1.0, max(0.0, (gap_target - seen) / abs(gap_target))) if step > warm else 0.0
        assert weight == pytest.approx(expected, abs=1e-5)
    assert weights[0][1] == 0.0 and weights[-1][1] == 0.0  # the critic's warm-up; the student above the teacher
    per_update = _scalars(tb / "rl", "train/kick_weight")  # beside SB3's train/*, at each of its updates
    assert len(per_update) > len(weights)
    assert {round(v, 4) for _, v in per_update} <= {round(w, 4) for _, w in weights}
    assert _scalars(tb / "rl", "rollout/ep_rew_mean") and _scalars(tb / "scratch", "rollout/ep_rew_mean")


def test_the_rl_student_loads_evaluates_and_learns_in_plain_sb3(lifted):
    """The RL student is a plain PPO zip: a fresh interpreter without policykd loads, evaluates and trains it."""
    code = f"""
import sys
sys.modules["policykd"] = None
import gymnasium as gym
from stable_baselines3 import PPO
from stable_baselines3.common.evaluation import evaluate_policy
model = PPO.load({str(lifted / "student.zip")!r}, device="cpu", env=gym.make("CartPole-v1"))
mean, _ = evaluate_policy(model, model.get_env(), n_eval_episodes=3)
model.learn(256)
print(mean)
"""
    done = run_fresh_python(code)
    assert done.returncode == 0, done.stderr
    assert float(done.stdout.split()[-1]) > 200


def test_kickstarting_from_scratch_follows_the_teacher(zoo, tmp_path):
    """--rl-start scratch: a random student, RL and the kick from step 0; a constant kick pulls it toward the
    teacher (measured: returns 53 vs 9.3, agreement 0.63 vs 0.18 at 2,048 steps), RL alone does not get there."""
    import policykd

    agreement, returns = {}, {}
    for weight in (0.0, 5.0):
        out = tmp_path / f"kick-{weight}"
        policykd.distill(
            "CartPole-v1",
            [zoo / "ppo/CartPole-v1_1"],
            out=str(out),
            rl_start="scratch",
            rl_steps=2048,
            kick_schedule="constant",
            kick_weight=weight,
            eval_episodes=3,
            quiet=True,
        )
        summary = json.loads((out / "summary.json").read_text())
        assert summary["env_steps"] == 0 and summary["rl"]["start"] == "scratch"
        agreement[weight], returns[weight] = summary["action_agreement"], summary["student_return_mean"]
        assert summary["rl"]["return_before_rl"] < 100  # the random student
    assert returns[5.0] > 3 * returns[0.0] and agreement[5.0] > agreement[0.0] + 0.2


def test_kickstarting_from_a_vecnormalize_teacher_writes_the_normaliser_it_plays_behind(zoo, tmp_path):
    """--rl-start scratch saves no distilled student.zip, which is what wrote vecnormalize.pkl: RL's envs loaded it
    from the run folder and crashed (FileNotFoundError, rl-zoo's PPO Hopper). The folder now has it before RL, and the
    RL student evaluates behind it."""
    import policykd

    out = tmp_path / "kick-norm"
    result = policykd.distill(
        "Hopper-v5",
        [zoo / "ppo/Hopper-v3_1"],
        out=str(out),
        rl_start="scratch",
        rl_steps=1024,
        eval_episodes=2,
        quiet=True,
    )
    assert (out / "vecnormalize.pkl").is_file() and (out / "student.zip").is_file()
    assert result.summary.rl is not None
    assert np.isfinite(policykd.evaluate("Hopper-v5", out, episodes=1)["model"]["return_mean"])


def _checkpoint_number(out):
    try:
        return json.loads((out / "checkpoint.json").read_text())["number"]
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        return -1


@pytest.mark.parametrize("algo", ["ppo", "sac"])
def test_kill_9_during_rl_resumes_to_the_uninterrupted_weights(algo, weak_teacher, sac_pendulum_teacher, tmp_path):
    """Checkpoints 1-2 are the distillation's, 3 on are RL segments (the models, SAC's replay buffer and critic): a
    run killed in RL and resumed ends with the uninterrupted run's weights and evaluations. Only the killed run needs
    a process of its own; the reference and the resume run through the CLI in-process."""
    from stable_baselines3 import PPO, SAC

    env, teacher, rl = (
        ("CartPole-v1", weak_teacher, "2048") if algo == "ppo" else ("Pendulum-v1", sac_pendulum_teacher, "300")
    )
    args = [
        "distill",
        "--env",
        env,
        "--teacher",
        str(teacher),
        "--steps",
        "1000",
        "--rounds",
        "1",
        "--rl-steps",
        rl,
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
        text=True,
    )
    deadline = time.time() + 240
    while _checkpoint_number(out) < 5:
        assert proc.poll() is None, proc.stderr.read()
        assert time.time() < deadline
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert not (out / "summary.json").exists()
    resumed = cli(*args, "--out", str(out))
    assert resumed.returncode == 0, resumed.stderr
    cls = PPO if algo == "ppo" else SAC
    a, b = (cls.load(path / "student.zip", device="cpu").policy.state_dict() for path in (reference, out))
    assert all(th.equal(a[k], b[k]) for k in a)
    ref, got = (json.loads((path / "summary.json").read_text())["rl"] for path in (reference, out))
    assert got["evals"] == ref["evals"]
    if algo == "sac":
        assert got["critic_from_teacher"] is True


def test_kick_weight_schedules():
    """The kick weight's schedules at chosen points, negative and tiny teacher returns included."""
    from policykd.rl.kick import kick_weight

    assert kick_weight("constant", 2.0, 500, 1000, 0.0, 10.0) == 2.0
    assert kick_weight("linear", 2.0, 250, 1000, 0.0, 10.0) == 1.5
    assert kick_weight("adaptive", 1.0, 0, 1000, 5.0, 10.0) == 0.5
    assert kick_weight("adaptive", 1.0, 0, 1000, 12.0, 10.0) == 0.0
    assert kick_weight("adaptive", 1.0, 0, 1000, -300.0, -150.0) == 1.0  # negative returns: the gap over |teacher|
    assert kick_weight("adaptive", 1.0, 0, 1000, -200.0, -150.0) == pytest.approx(1 / 3)
    assert kick_weight("adaptive", 1.0, 0, 1000, float("nan"), 10.0) == 1.0
    assert np.isclose(kick_weight("adaptive", 1.0, 0, 1000, -0.5, 0.0), 0.5)  # |teacher| < 1: divided by 1


@pytest.mark.parametrize("algo,env_id", [("ppo", "CartPole-v1"), ("ppo", "Pendulum-v1"), ("sac", "Pendulum-v1")])
def test_rl_temperature_sharpens_ppo_policies_and_the_kick_sees_them_at_one(algo, env_id):
    """--rl-temperature divides PPO's logits (or scales its std) without changing the greedy action; the kick undoes it;
    SAC is left alone."""
    from policykd.distributions import policy_dist
    from policykd.envs import EnvFactory
    from policykd.rl.kick import at_unit_temperature
    from policykd.rl.model import set_temperature
    from policykd.students.build import build_student

    venv = EnvFactory(env_id).make(1, 0)
    model = build_student(algo, venv, (8, 8), seed=0)
    obs = model.policy.obs_to_tensor(np.stack([venv.observation_space.sample() for _ in range(16)]))[0]
    with th.no_grad():
        before = policy_dist(model.policy, obs)
        applied = set_temperature(model, 0.25)
        after = policy_dist(model.policy, obs)
    venv.close()
    if algo == "sac":  # tunes its own entropy: left as it is
        assert applied is None and th.equal(after.mean, before.mean) and th.equal(after.log_std, before.log_std)
        return
    assert applied == 0.25
    if after.logits is not None:  # probabilities are softmax(logits / T); argmax (greedy play) unchanged
        assert th.allclose(after.logits.softmax(-1), (before.logits / 0.25).softmax(-1), atol=1e-6)
        assert th.equal(after.logits.argmax(-1), before.logits.argmax(-1))
        assert th.allclose(at_unit_temperature(after, 0.25).logits.softmax(-1), before.logits.softmax(-1), atol=1e-6)
    else:  # std x T, mean unchanged
        assert th.allclose(after.log_std.exp(), 0.25 * before.log_std.exp()) and th.equal(after.mean, before.mean)
        assert th.allclose(at_unit_temperature(after, 0.25).log_std, before.log_std)


@pytest.mark.parametrize("algo", ["ppo", "sac"])
def test_critic_warm_up_moves_only_the_critic_until_its_end(algo):
    """`warm_up_critic`: until the given env step the actor's weights stay as distilled while the critic learns;
    after it, both learn. SAC's actor has its own optimizer, PPO's shares one with the critic."""
    from policykd.envs import EnvFactory
    from policykd.rl.model import actor_parameters, warm_up_critic
    from policykd.students.build import build_student

    env_id = "CartPole-v1" if algo == "ppo" else "Pendulum-v1"
    model = build_student(algo, EnvFactory(env_id).make(1, 0), (8, 8), seed=0)
    if algo == "ppo":
        model.n_steps, model.batch_size = 64, 32
        model._setup_model()
    else:
        model.learning_starts = 32
    actor = actor_parameters(model)
    critic = [p for p in model.get_parameters()["policy"] if not any(p is a for a in actor)]
    names = {n for n, p in model.policy.named_parameters() if any(p is a for a in actor)}
    assert any("action" in n or "mu" in n for n in names) and not any("value" in n or "qf" in n for n in names)

    def snapshot():
        return {n: p.detach().clone() for n, p in model.policy.named_parameters()}

    warm_up_critic(model, 128)
    before = snapshot()
    model.learn(128)
    during = snapshot()
    assert all(th.equal(before[n], during[n]) for n in names)
    assert any(not th.equal(before[n], during[n]) for n in before if n not in names)
    model.learn(128, reset_num_timesteps=False)
    after = snapshot()
    assert any(not th.equal(during[n], after[n]) for n in names)
    assert critic is not None


def test_the_learning_rate_scales_with_its_schedule_and_the_model_loads_without_policykd(tmp_path):
    """rl-zoo's lin_0.001 at a third is SB3's own LinearSchedule from 0.000333: the saved model needs nothing of ours."""
    from stable_baselines3.common.utils import LinearSchedule

    from policykd.envs import EnvFactory
    from policykd.rl.model import load_rl_model, rl_config
    from policykd.students.build import build_student

    venv = EnvFactory("CartPole-v1").make(1, 0)
    config = rl_config("ppo", "CartPole-v1", venv.action_space).with_learning_rate_scaled("ppo", 1 / 3)
    rate = config.kwargs["learning_rate"]
    assert isinstance(rate, LinearSchedule) and rate(1.0) == pytest.approx(0.001 / 3) and rate(0.0) == 0.0
    assert rl_config("a2c", "CartPole-v1", venv.action_space).with_learning_rate_scaled("a2c", 0.5).kwargs[
        "learning_rate"
    ] == pytest.approx(7e-4 / 2)  # no rl-zoo entry: SB3's default, scaled
    model = load_rl_model("ppo", build_student("ppo", venv, (8, 8), seed=0), venv, config)
    model.save(tmp_path / "rl.zip")
    code = f"""
import sys
sys.modules["policykd"] = None
from stable_baselines3 import PPO
print(PPO.load({str(tmp_path / "rl.zip")!r}, device="cpu").lr_schedule(1.0))
"""
    done = run_fresh_python(code)
    assert done.returncode == 0 and float(done.stdout.split()[-1]) == pytest.approx(0.001 / 3), done.stderr


def test_rl_segments_end_on_whole_rollouts():
    """RL segments end on whole rollouts, the last one rounded up."""
    from policykd.rl.model import segment_ends

    assert segment_ends(20_000, 2_000, 256) == [2048, 4096, 6144, 8192, 10240, 12288, 14336, 16384, 18432, 20224]
    assert segment_ends(100, 1000, 256) == [256]
    assert segment_ends(600, 60, 1) == list(range(60, 601, 60))


def test_stages_distil_through_an_assistant_into_one_folder_with_a_row_per_stage(zoo, tmp_path):
    """--stages: the assistant distils from the teacher and teaches the last stage, one summary row per stage, evaluated
    on the same seeds."""
    import policykd

    out = tmp_path / "staged"
    result = policykd.distill(
        "CartPole-v1",
        [zoo / "ppo/CartPole-v1_1"],
        out=str(out),
        stages="16,16:4,4",
        steps=3000,
        rounds=2,
        eval_episodes=3,
        quiet=True,
    )
    summary = json.loads((out / "summary.json").read_text())
    first, second = summary["stages"]
    assert first["student_arch"] == [16, 16] and second["student_arch"] == [4, 4]
    assert first["teacher"].endswith("CartPole-v1_1") or "CartPole-v1" in first["teacher"]
    assert second["teacher"] == str(out / "stage-1" / "student.zip")  # the assistant teaches the last stage
    assert second["teacher_return_mean"] == pytest.approx(first["student_return_mean"])  # same evaluation seeds
    assert summary["student_arch"] == [4, 4] and summary["teacher_params"] == first["teacher_params"]
    assert summary["teacher_return_mean"] == first["teacher_return_mean"]
    assert result.summary.stages == summary["stages"]
    assert (out / "student.zip").is_file() and (out / "curves.png").is_file()


def test_stages_keep_prune_to_and_an_interrupted_run_resumes_to_the_same_students(zoo, tmp_path):
    """--stages with --prune-to prunes the last stage (once silently dropped); a run stopped before its last stage
    resumes with `resume=True`: the finished stage is read back untouched, the rest repeats the uninterrupted run."""
    import shutil

    import policykd

    out = tmp_path / "staged"
    kwargs = dict(out=str(out), stages="16,16:8,8", steps=2000, rounds=1, eval_episodes=2, quiet=True)
    first = policykd.distill("CartPole-v1", [zoo / "ppo/CartPole-v1_1"], prune_to=0.02, prune_cycles=1, **kwargs)
    assert first.pruned is not None and (out / "pruned" / "student.zip").is_file()
    assert first.pruned["student_params"] <= 0.02 * first.summary.teacher_params
    stage_one = (out / "stage-1" / "student.zip").read_bytes()
    done = json.loads((out / "summary.json").read_text())
    for gone in ("stage-2", "pruned"):  # stopped after stage 1: what the last stage and pruning write is not there
        shutil.rmtree(out / gone)
    for gone in ("summary.json", "student.zip"):
        (out / gone).unlink()
    again = policykd.distill(
        "CartPole-v1", [zoo / "ppo/CartPole-v1_1"], prune_to=0.02, prune_cycles=1, resume=True, **kwargs
    )
    assert (out / "stage-1" / "student.zip").read_bytes() == stage_one
    resumed = json.loads((out / "summary.json").read_text())
    assert [r["student_return_mean"] for r in resumed["stages"]] == [r["student_return_mean"] for r in done["stages"]]
    assert again.pruned is not None and again.pruned["student_params"] == first.pruned["student_params"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--stages", "16,16:32,32"], "--stages must list shrinking hidden sizes"),
        (["--stages", "16,16:8,x"], "--stages must list shrinking hidden sizes"),
        (["--stages", "16,16:8,8", "--student-arch", "8,8"], "leave out --student-arch"),
        (["--rl-start", "scratch"], "--rl-start scratch needs --rl-steps"),
        (["--rl-steps", "1000", "--kick-schedule", "cosine"], "unknown kick schedule 'cosine'"),
        (["--rl-steps", "-1"], "--rl-steps must be non-negative"),
        (["--rl-steps", "1000", "--rl-start", "scratch", "--rl-critic-warmup", "500"], "needs --rl-start distilled"),
        (["--rl-steps", "1000", "--rl-critic-warmup", "1000"], "warms up a distilled student's critic"),
        (["--rl-steps", "1000", "--rl-lr-scale", "0"], "--rl-lr-scale must be positive, got 0.0"),
    ],
    ids=[
        "widening",
        "not a number",
        "with arch",
        "scratch without steps",
        "unknown schedule",
        "negative steps",
        "warm-up from scratch",
        "warm-up as long as RL",
        "learning rate scaled to nothing",
    ],
)
def test_bad_rl_and_stage_input_is_one_line_before_any_work(zoo, tmp_path, args, message):
    """Each refusal is one line on stderr, exit 2, and no output folder."""
    out = tmp_path / "out"
    done = cli("distill", "--env", "CartPole-v1", "--teacher", str(zoo / "ppo/CartPole-v1_1"), "--out", str(out), *args)
    assert done.returncode == 2 and message in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_rl_with_a_dataset_alone_says_it_needs_a_teacher(tmp_path):
    """RL's kick needs a live teacher: a dataset alone is refused before the dataset is even opened."""
    done = cli(
        "distill",
        "--env",
        "CartPole-v1",
        "--dataset",
        "cartpole/teacher-v0",
        "--rl-steps",
        "1000",
        "--out",
        str(tmp_path / "out"),
    )
    assert done.returncode == 2 and "needs a live --teacher" in done.stderr


def test_the_kick_sees_the_rl_minibatchs_frames_as_the_env_gave_them():
    """Off-policy students (here DQN's Q-network) take the general kick: SB3 divides frames by 255 before the features
    extractor, where the kick's hook reads them, so the kick must hand the teacher and the student the uint8 frames
    again, bit for bit. (PPO's one-pass kick reads the rollout buffer: tests/test_rollout_kick.py.)"""
    from policykd.envs import EnvFactory
    from policykd.rl.kick import Kick
    from policykd.students.build import build_student
    from policykd.teachers import load_teacher

    factory = EnvFactory("ALE/Pong-v5")
    venv = factory.make(2, 0)
    obs = venv.reset()
    for _ in range(20):
        obs, *_ = venv.step(np.array([2, 3]))
    model = build_student("dqn", venv, (8, 8, 8, 8), seed=0)
    teacher = load_teacher("pong-ppo-v5", env_id="ALE/Pong-v5")
    kick = Kick(teacher, "mse_logits", 1.0, None, schedule="constant", weight=1.0, total=1, teacher_return=0.0)
    kick.attach(model)
    with th.enable_grad():
        model.q_net(model.policy.obs_to_tensor(obs)[0])
    assert kick._obs is not None and kick._obs.max() <= 1.0
    assert np.array_equal(kick._policy_input(kick._obs), obs)
    model.policy.optimizer.zero_grad()
    assert all(p.grad is None for p in model.policy.parameters())
    kick._add_gradient(model.policy.optimizer, (), {})  # what the step pre-hook does: lambda x grad(KL) on them
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.policy.parameters())
    assert np.isfinite(kick.take_losses())
    venv.close()
