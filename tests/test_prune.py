"""Structured pruning: units of constant activation come out without changing a single output, the pruned student is a smaller
dense SB3 model that plain SB3 loads in a fresh process, prune-and-distil cycles resume, and bad input is one line."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch as th
from conftest import cli, run_fresh_python

import policykd
from policykd.envs import EnvFactory
from policykd.sb3_models import acting_params
from policykd.students.build import build_student
from policykd.students.folding import ObsStats, folded, unfold
from policykd.students.pruning import activations, cuts_of, prune_student, remove_units

CASES = [
    ("CartPole-v1", "ppo", (12, 10), (7, 6)),
    ("CartPole-v1", "dqn", (12, 10), (7, 6)),
    ("Pendulum-v1", "sac", (12, 10), (7, 6)),
    ("Pendulum-v1", "td3", (12, 10), (7, 6)),
    ("ALE/Pong-v5", "ppo", (8, 8, 8, 12), (5, 6, 4, 7)),
]


def _make_units(policy, arch, small, rng, *, constant):
    """All but `small[layer]` units per layer get zero incoming weights and a bias of 0 (dead) or of 0.5 to 1
    (constant activation); returns the producers' other units, those to keep."""
    keep = {}
    with th.no_grad():
        for cut in cuts_of(policy):
            producer = policy.get_submodule(cut.producer)
            chosen = th.as_tensor(rng.choice(arch[cut.layer], arch[cut.layer] - small[cut.layer], replace=False))
            producer.weight[chosen] = 0.0
            producer.bias[chosen] = th.as_tensor(
                rng.uniform(0.5, 1.0, len(chosen)) if constant else 0.0, dtype=th.float32
            )
            keep[cut.producer] = th.as_tensor(sorted(set(range(arch[cut.layer])) - set(chosen.tolist())))
    return keep


def _outputs(model, obs):
    """Every output a student has: logits and values (PPO), else the greedy action."""
    with th.no_grad():
        x = model.policy.obs_to_tensor(obs)[0]
        if hasattr(model.policy, "mlp_extractor"):
            return [
                model.policy.get_distribution(x).distribution.logits.numpy(),
                model.policy.predict_values(x).numpy(),
            ]
        return [model.predict(obs, deterministic=True)[0]]


@pytest.mark.parametrize("env_id,algo,arch,small", CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_pruning_dead_units_or_removing_constant_ones_keeps_every_output(env_id, algo, arch, small):
    """Dead units have importance 0: `prune_student` must choose them. Constant units are removed by name: what
    they gave their readers moves into the readers' biases (exact for a constant), so nothing may change."""
    venv = EnvFactory(env_id).make(1, 0)
    try:
        obs = np.stack([venv.observation_space.sample() for _ in range(256)])
        for constant in (False, True):
            model = build_student(algo, venv, arch, seed=0)
            keep = _make_units(model.policy, arch, small, np.random.default_rng(0), constant=constant)
            if constant:
                pruned = remove_units(model, algo, keep, activations(model.policy, cuts_of(model.policy), obs), venv)
            else:
                pruned = prune_student(model, algo, small, obs, venv)
            assert acting_params(pruned.policy) < acting_params(model.policy)
            for before, after in zip(_outputs(model, obs), _outputs(pruned, obs)):
                np.testing.assert_allclose(after, before, atol=1e-5, err_msg=f"constant={constant}")
    finally:
        venv.close()


def test_unfold_undoes_folding():
    """Unfolding the input statistics out of the first layer gives back a student that reads standardised input."""
    venv = EnvFactory("Pendulum-v1").make(1, 0)
    try:
        model = build_student("sac", venv, (8, 8), seed=0)
    finally:
        venv.close()
    stats = ObsStats(np.array([0.5, -0.2, 3.0], np.float32), np.array([0.3, 2.0, 4.0], np.float32))
    obs = np.random.default_rng(0).normal(size=(64, 3)).astype(np.float32) * 3
    with folded(model, stats):
        raw = model.predict(obs, deterministic=True)[0]
        unfold(model, stats)
        np.testing.assert_allclose(model.predict(stats.apply(obs), deterministic=True)[0], raw, atol=1e-5)


@pytest.fixture(scope="module")
def cartpole_run(tmp_path_factory, cartpole_ppo_teacher):
    """A 24x24 CartPole student, pruned after distilling (`--prune-to`) into run/pruned."""
    out = tmp_path_factory.mktemp("prune") / "run"
    result = policykd.distill(
        "CartPole-v1",
        [cartpole_ppo_teacher],
        steps=2000,
        rounds=2,
        student_arch=(24, 24),
        out=out,
        eval_episodes=3,
        quiet=True,
        prune_to=0.05,
        prune_cycles=2,
    )
    assert (
        result.pruned is not None
        and result.pruned["student_arch"] == json.loads((out / "pruned" / "summary.json").read_text())["student_arch"]
    )
    # the library's student is the saved one (standardisation folded in): what the first prune cycle cuts
    from stable_baselines3 import PPO

    saved = PPO.load(out / "student.zip", device="cpu").policy.state_dict()
    assert all(th.equal(value, saved[key]) for key, value in result.student.policy.state_dict().items())
    return out


def test_prune_gives_a_smaller_dense_model_plain_sb3_loads(cartpole_run):
    """--prune-to: cycles within the fraction, a plain dense PPO that SB3 loads in a fresh interpreter without
    policykd, and a pruned folder that `export` takes like any run folder."""
    out = cartpole_run / "pruned"
    summary = json.loads((cartpole_run / "summary.json").read_text())
    pruned = json.loads((out / "summary.json").read_text())
    assert [c["cycle"] for c in pruned["cycles"]] == [1, 2]
    assert pruned["student_params"] <= 0.05 * summary["teacher_params"] < summary["student_params"]
    assert pruned["cycles"][0]["params"] > pruned["cycles"][1]["params"] == pruned["student_params"]
    width = pruned["student_arch"]
    check = run_fresh_python(
        "import sys; from stable_baselines3 import PPO; from stable_baselines3.common.evaluation import evaluate_policy\n"
        "import gymnasium as gym\n"
        f"m = PPO.load({str(out / 'student.zip')!r}, device='cpu')\n"
        "assert 'policykd' not in sys.modules\n"
        f"assert m.policy_kwargs['net_arch'] == {{'pi': {width}, 'vf': {width}}}, m.policy_kwargs\n"
        "print(evaluate_policy(m, gym.make('CartPole-v1'), n_eval_episodes=1)[0])"
    )
    assert check.returncode == 0, check.stderr
    assert float(check.stdout.split()[-1]) > 0
    exported = cli("export", str(out))  # a pruned folder is an export source like any run folder
    assert exported.returncode == 0, exported.stderr
    assert (out / "student.onnx").is_file()


def test_an_unfinished_prune_resumes_without_redoing_finished_cycles(cartpole_run, tmp_path):
    """`policykd prune` stopped before its last cycle finishes it and leaves the finished cycle's files alone."""
    out = tmp_path / "pruned"
    args = ("prune", str(cartpole_run), "--fraction", "0.05", "--cycles", "2", "--steps", "1000", "--out", str(out))
    first = cli(*args)
    assert first.returncode == 0, first.stderr
    assert "after distilling" in first.stdout  # the summary table
    finished = (out / "cycle-1" / "student.zip").stat().st_mtime_ns
    (out / "summary.json").unlink()  # as if stopped before the end
    for name in ("summary.json", "student.zip"):
        (out / "cycle-2" / name).unlink()
    again = cli(*args)
    assert again.returncode == 0, again.stderr
    assert (out / "cycle-1" / "student.zip").stat().st_mtime_ns == finished
    assert len(json.loads((out / "summary.json").read_text())["cycles"]) == 2 and (out / "student.zip").is_file()


@pytest.mark.parametrize(
    "args,message",
    [
        (["--fraction", "0.5"], "already within --fraction"),
        (["--fraction", "0.00001"], "the smallest PPO student of this shape"),
        (["--fraction", "1.5"], "--fraction must be within (0, 1]"),
    ],
)
def test_bad_prune_input_is_one_line(cartpole_run, args, message):
    """Each refusal is one line, exit 2, and no output folder."""
    result = cli("prune", str(cartpole_run), *args, "--out", str(cartpole_run / "never"))
    assert result.returncode == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (cartpole_run / "never").exists()


def test_a_folder_without_a_run_is_one_line(tmp_path):
    """A folder that holds no finished run is named as such, not a traceback."""
    result = cli("prune", str(tmp_path), "--fraction", "0.1")
    assert result.returncode == 2 and "not a finished distill run folder" in result.stderr


def test_init_student_of_another_size_is_one_line(cartpole_run, tmp_path):
    """--init-student with other layer sizes than --student-arch is refused before any work."""
    result = cli(
        "distill",
        "--env",
        "CartPole-v1",
        "--init-student",
        str(cartpole_run / "student.zip"),
        "--student-arch",
        "8,8",
        "--steps",
        "500",
        "--out",
        str(tmp_path / "x"),
    )
    assert result.returncode == 2 and "other layer sizes" in result.stderr, result.stderr


def test_gradients_too_large_for_float32_norms_are_still_clipped_not_zeroed():
    """A pruned SAC student whose log-std sits at SB3's floor has a KL near 1e19: float32's squared norm overflows,
    and torch's own clip would multiply every gradient by 0, freezing the student for good."""
    from policykd.run.train import clip_gradients

    layer = th.nn.Linear(4, 3)
    layer.weight.grad = th.full((3, 4), 3e19)
    layer.bias.grad = th.full((3,), -1e19)
    clip_gradients(layer.parameters(), 10.0)
    norm = th.sqrt(sum(p.grad.double().pow(2).sum() for p in layer.parameters()))
    assert norm == pytest.approx(10.0, rel=1e-4)
    assert (layer.weight.grad > 0).all() and (layer.bias.grad < 0).all()
