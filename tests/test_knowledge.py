"""Feature hints and relational KD: the losses against values computed by hand, latents of every student family,
end to end with the projection kept out of student.zip, and bad input."""

import itertools
import json

import numpy as np
import pytest
import torch as th
from conftest import cli

from policykd.run.knowledge import latent, latent_of_forward, relation_loss


def _huber(a, b):
    d = np.abs(np.asarray(a) - np.asarray(b))
    return float(np.mean(np.where(d < 1, 0.5 * d**2, d - 0.5)))


def _by_hand(s, t):
    """Relational KD written out with loops: normalised pairwise distances, then triplet angle cosines."""

    def distances(e):
        d = np.array([[np.linalg.norm(e[i] - e[j]) for j in range(len(e))] for i in range(len(e))])
        return d / d[d > 0].mean()

    def cosines(e):
        out = []
        for j, i, k in itertools.product(range(len(e)), repeat=3):
            u, v = e[i] - e[j], e[k] - e[j]
            nu, nv = np.linalg.norm(u), np.linalg.norm(v)
            out.append(0.0 if nu == 0 or nv == 0 else float(u @ v / (nu * nv)))
        return np.array(out)

    return _huber(distances(s), distances(t)) + _huber(cosines(s), cosines(t))


def test_relation_loss_by_hand():
    """The relational loss equals the loops of its definition, and is 0 between embeddings of the same shape."""
    t = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    s = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
    got = relation_loss(th.tensor(s, dtype=th.float32), th.tensor(t, dtype=th.float32)).item()
    assert got == pytest.approx(_by_hand(s, t), rel=1e-5) and got > 0
    # the same shape at another scale and width: nothing to learn
    wide = np.concatenate([3 * t, np.zeros((3, 5))], axis=1)
    assert relation_loss(th.tensor(wide, dtype=th.float32), th.tensor(t, dtype=th.float32)).item() == pytest.approx(
        0, abs=1e-6
    )


@pytest.mark.parametrize("algo", ["ppo", "sac", "td3", "dqn"])
def test_latent_is_the_last_hidden_layer(algo):
    """The latent read by a hook is each family's last hidden layer, computed by hand through SB3's modules, and
    training's own forward pass catches the same tensor with its gradient."""
    from policykd.distributions import policy_outputs
    from policykd.envs import EnvFactory
    from policykd.students.build import build_student

    env = "CartPole-v1" if algo in ("ppo", "dqn") else "Pendulum-v1"
    venv = EnvFactory(env).make(1, 0)
    model = build_student(algo, venv, (24, 12), seed=0)
    obs = model.policy.obs_to_tensor(np.concatenate([venv.reset(), venv.reset()]))[0]
    policy = model.policy
    if algo == "ppo":
        want = policy.mlp_extractor.forward_actor(policy.extract_features(obs))
    elif algo == "sac":
        want = policy.actor.latent_pi(policy.actor.extract_features(obs, policy.actor.features_extractor))
    elif algo == "td3":  # its actor: Linear, ReLU, Linear, ReLU, Linear, Tanh
        want = policy.actor.mu[:-2](policy.actor.extract_features(obs, policy.actor.features_extractor))
    else:
        want = policy.q_net.q_net[:-1](policy.q_net.extract_features(obs, policy.q_net.features_extractor))
    assert want.shape == (2, 12) and th.allclose(latent(policy, obs), want)
    with latent_of_forward(policy) as seen:  # what training reads from its own forward pass: the same
        policy_outputs(policy, obs)
    assert len(seen) == 1 and th.allclose(seen[0], want) and seen[0].requires_grad
    venv.close()


def test_hints_and_relations_train_and_stay_out_of_the_student(tmp_path):
    """Hints and relations end to end: both losses logged, the hint falling; the projection never in student.zip."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    import policykd

    common = dict(steps=3000, rounds=2, eval_episodes=2, quiet=True, seed=2)
    plain = policykd.distill("CartPole-v1", out=str(tmp_path / "plain"), **common)
    hinted = policykd.distill(
        "CartPole-v1", out=str(tmp_path / "hinted"), hint_weight=1.0, relation_weight=1.0, **common
    )
    assert set(hinted.student.policy.state_dict()) == set(plain.student.policy.state_dict())  # no projection inside
    acc = EventAccumulator(str(tmp_path / "hinted" / "tb"), size_guidance={"scalars": 0})
    acc.Reload()
    hints = [e.value for e in acc.Scalars("train/hint_loss")]
    relations = [e.value for e in acc.Scalars("train/relation_loss")]
    assert len(hints) == 2 and hints[-1] < hints[0] and all(r > 0 for r in relations)
    assert json.loads((tmp_path / "hinted" / "config.json").read_text())["hint_weight"] == 1.0


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--teacher", "cartpole-ppo-v1", "--hint-weight", "1", "--hint-layer", "nope"],
            "--hint-layer nope is not a module",
        ),
        (["--teacher", "cartpole-ppo-v1", "--teacher", "cartpole-ppo-v1", "--relation-weight", "1"], "an ensemble"),
        (["--teacher", "cartpole-ppo-v1", "--hint-weight", "-1"], "--hint-weight must be non-negative"),
    ],
    ids=["unknown layer", "ensemble", "negative weight"],
)
def test_bad_knowledge_input_is_one_line(tmp_path, args, message):
    """Each refusal is one line on stderr and exit 2, before a summary is written (the CLI in-process)."""
    done = cli("distill", "--env", "CartPole-v1", *args, "--out", str(tmp_path / "out"))
    assert done.returncode == 2 and message in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not (tmp_path / "out" / "summary.json").exists()


def test_a_hint_layer_by_name_is_what_the_hints_match(tmp_path):
    """--hint-layer NAME: the hints match that module's output, not the default latent. `action_net` (the teacher's
    2 logits) has a width no latent of this teacher has (64), so a run that ignored the name fails each check: the
    projection maps the student's latent onto 2 numbers, the target is exactly the teacher's logits on the states
    it visits, and the run trains that projection (only the hint term gives it a gradient)."""
    from policykd.rollouts import rollout_observations, teacher_actor
    from policykd.run.build import build_run
    from policykd.run.loop import execute
    from policykd.settings import DistillSettings

    settings = DistillSettings(
        env_id="CartPole-v1",
        teachers=("cartpole-ppo-v1",),
        out=str(tmp_path / "layer"),
        steps=1000,
        rounds=1,
        eval_episodes=2,
        student_arch=(16, 16),
        hint_weight=1.0,
        hint_layer="action_net",
    )
    run = build_run(settings)
    teacher, knowledge = run.teacher.model.policy, run.knowledge
    assert knowledge.layer is teacher.action_net
    assert (knowledge.projection.in_features, knowledge.projection.out_features) == (16, 2)
    obs = rollout_observations(teacher_actor(run.teacher), run.teacher.factory, 16, 4, 3)
    seen = run.teacher.normalizer.normalize_obs(obs) if run.teacher.normalizer is not None else obs
    with th.no_grad():  # the action head's raw output, through SB3's modules
        x = teacher.obs_to_tensor(seen)[0]
        logits = teacher.action_net(teacher.mlp_extractor.forward_actor(teacher.extract_features(x)))
    assert th.allclose(knowledge.teacher_latent(obs), logits, atol=1e-5)

    untrained = knowledge.projection.weight.detach().clone()
    execute(run, quiet=True)
    assert not th.allclose(knowledge.projection.weight, untrained)
    assert json.loads((tmp_path / "layer" / "config.json").read_text())["hint_layer"] == "action_net"
