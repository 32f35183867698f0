"""The teacher's games on the run's seeds are played once and kept: a second run reads them (and says so), and
anything that changes the games (seeds, episodes, the teacher's weights) plays them again."""

import json

import numpy as np
import pytest
from conftest import cli


def _summary(out) -> dict:
    return json.loads((out / "summary.json").read_text())


def test_the_teachers_games_are_kept_and_replayed_only_when_a_key_differs(cartpole_ppo_teacher, tmp_path, monkeypatch):
    monkeypatch.setenv("POLICYKD_CACHE", str(tmp_path / "cache"))
    common = ["distill", "--env", "CartPole-v1", "--teacher", str(cartpole_ppo_teacher), "--steps", "500"]
    common += ["--rounds", "1", "--eval-episodes", "3", "--quiet", "--overwrite"]
    first, second, other_seed = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for out, extra in ((first, []), (second, []), (other_seed, ["--seed", "1"])):
        result = cli(*common, "--out", str(out), *extra)
        assert result.returncode == 0, result.stderr
    kept = list((tmp_path / "cache" / "teacher-returns").glob("*.json"))
    assert len(kept) == 2  # seeds 10000+ and 10001+
    assert _summary(first)["teacher_returns_source"] == "played"
    assert _summary(second)["teacher_returns_source"] in {str(k) for k in kept}
    assert _summary(second)["teacher_returns"] == _summary(first)["teacher_returns"]
    assert _summary(other_seed)["teacher_returns_source"] == "played"


def test_a_kept_entry_is_replayed_when_unreadable_and_another_teacher_misses(
    cartpole_ppo_teacher, tmp_path, monkeypatch
):
    from stable_baselines3 import PPO

    from policykd.teachers import load_teacher
    from policykd.teachers.evaluated import play_key, teacher_returns

    monkeypatch.setenv("POLICYKD_CACHE", str(tmp_path / "cache"))
    teacher = load_teacher(cartpole_ppo_teacher, env_id="CartPole-v1")
    played = teacher_returns(teacher, 2, 10_000)
    (entry,) = (tmp_path / "cache" / "teacher-returns").glob("*.json")
    assert teacher_returns(teacher, 2, 10_000).source == str(entry)
    entry.write_text("{not json")
    again = teacher_returns(teacher, 2, 10_000)
    assert again.source == "played"
    np.testing.assert_array_equal(again.returns.returns, played.returns.returns)
    model = PPO.load(cartpole_ppo_teacher, device="cpu")
    with __import__("torch").no_grad():
        next(iter(model.policy.parameters())).add_(0.01)
    changed = tmp_path / "changed.zip"
    model.save(changed)
    other = load_teacher(changed, env_id="CartPole-v1")
    assert play_key(other, 2, 10_000) != play_key(teacher, 2, 10_000)
    assert teacher_returns(other, 2, 10_000).source == "played"


def test_the_key_hashes_the_libraries_that_decide_the_games_and_the_entry_lists_them(
    cartpole_ppo_teacher, tmp_path, monkeypatch
):
    """A MuJoCo upgrade (4.0.0 to 4.0.1) once made the shipped Pong agent's kept games unreadable: only the packages
    that step the env or run the network are in the key, and each entry says what its key hashed."""
    import policykd.teachers.evaluated as evaluated
    from policykd.teachers import load_teacher

    assert "mujoco" not in evaluated.libraries("ALE/Pong-v5") and "ale-py" in evaluated.libraries("ALE/Pong-v5")
    assert "ale-py" not in evaluated.libraries("CartPole-v1") and "numpy" not in evaluated.libraries("CartPole-v1")
    monkeypatch.setenv("POLICYKD_CACHE", str(tmp_path / "cache"))
    teacher = load_teacher(cartpole_ppo_teacher, env_id="CartPole-v1")
    key = evaluated.play_key(teacher, 2, 10_000)
    real = evaluated._version
    monkeypatch.setattr(evaluated, "_version", lambda lib: "0.0" if lib in ("ale-py", "numpy") else real(lib))
    assert evaluated.play_key(teacher, 2, 10_000) == key
    monkeypatch.setattr(evaluated, "_version", lambda lib: "0.0" if lib == "gymnasium" else real(lib))
    assert evaluated.play_key(teacher, 2, 10_000) != key
    monkeypatch.setattr(evaluated, "_version", real)
    evaluated.teacher_returns(teacher, 2, 10_000)
    (entry,) = (tmp_path / "cache" / "teacher-returns").glob("*.json")
    assert f"gymnasium=={real('gymnasium')}" in json.loads(entry.read_text())["key"]


@pytest.mark.parametrize("agent", ["cartpole-ppo-v1", "halfcheetah-sac-v5", "hopper-tqc-v5", "walker2d-tqc-v5"])
def test_a_shipped_agents_kept_games_are_read_by_its_default_run(agent, monkeypatch):
    """Every library in an MLP agent's key is pinned, so its shipped entry must be found on any fresh install: when
    this fails, a pinned dependency changed and `python benchmarks/keep_teacher_games.py` must be run again. (Pong's
    key also holds the core count and OpenCV's version, which pip does not pin.)"""
    import torch as th

    from policykd.constants import EVAL_SEED_OFFSET
    from policykd.presets import resolve_distill
    from policykd.teachers import load_teacher
    from policykd.teachers.evaluated import play_key
    from policykd.teachers.shipped import AGENTS_DIR, find_agent

    card = find_agent(agent)
    assert card is not None
    settings = resolve_distill(card.env_id)
    monkeypatch.setattr(th, "get_num_threads", lambda: 1)  # distill's thread count for MLP teachers
    teacher = load_teacher(agent, env_id=card.env_id)
    key = play_key(teacher, settings.eval_episodes, settings.seed + EVAL_SEED_OFFSET)
    assert (AGENTS_DIR / agent / "returns" / f"{key}.json").is_file()
