"""ale-py's vector env as the Atari stack: the same spaces, dtypes and episode boundaries as SB3's stack, teacher
labels close to those on SB3's frames, episodes that depend only on their seed, and where it does not serve."""

from dataclasses import replace

import gymnasium as gym
import numpy as np
import torch as th

from policykd.envs import EnvFactory
from policykd.native_atari import NativeAtariVecEnv, fits
from policykd.rollouts import run_episodes

SHORT = {"max_num_frames_per_episode": 400}  # Pong games end by truncation after ~100 agent steps


def _first_episodes(venv, steps: int) -> list[tuple[int, dict]]:
    """(step, info) of each env's first finished episode, stepping random actions."""
    rng = np.random.default_rng(0)
    first: dict[int, tuple[int, dict]] = {}
    scored = np.zeros(venv.num_envs)
    venv.reset()
    for step in range(steps):
        obs, rewards, dones, infos = venv.step(rng.integers(0, venv.action_space.n, venv.num_envs))
        assert obs.shape == (venv.num_envs, 4, 84, 84) and obs.dtype == np.uint8
        assert set(np.unique(rewards)) <= {-1.0, 0.0, 1.0}  # clipped, as SB3's AtariWrapper clips
        scored += np.where([int(i) in first for i in range(venv.num_envs)], 0, rewards)
        for i in np.flatnonzero(dones):
            if int(i) not in first:
                first[int(i)] = (step, infos[i])
                assert infos[i]["episode"]["r"] == scored[i]  # Pong scores +-1: the raw return is the clipped sum
    venv.close()
    return [first[i] for i in sorted(first)]


def test_native_stack_has_the_sb3_stacks_spaces_and_episode_boundaries():
    native, sb3 = (EnvFactory("ALE/Pong-v5", env_kwargs=SHORT, atari_stack=s) for s in ("native", "sb3"))
    assert native.native and not sb3.native
    a, b = native.make(2, 0), sb3.make(2, 0)
    assert isinstance(a, NativeAtariVecEnv) and not isinstance(b, NativeAtariVecEnv)
    assert a.observation_space == b.observation_space and a.action_space == b.action_space
    episodes = {"native": _first_episodes(a, 110), "sb3": _first_episodes(b, 110)}
    for name, ends in episodes.items():
        assert len(ends) == 2, name
        for _, info in ends:
            assert info["TimeLimit.truncated"] is True
            assert info["terminal_observation"].shape == (4, 84, 84)
    # SB3's stack: ALE stops at 400 frames, the noop reset's (up to 30) and fire reset's (8) included; Monitor counts
    # them all. ale-py's counts 100 agent steps after its reset's frames: a game truncated there is up to 38 frames
    # longer (Pong's games end long before 108,000 frames, where this could matter).
    for step, info in episodes["sb3"]:
        assert 88 <= step <= 98 and 396 <= info["episode"]["l"] <= 404, (step, info["episode"])
    for step, info in episodes["native"]:
        assert step == 99 and 400 < info["episode"]["l"] <= 440, (step, info["episode"])


def test_teacher_labels_on_native_frames_are_close_to_those_on_sb3_frames():
    """On the same emulator states, the shipped teacher's action probabilities on ale-py's frames (its grayscale
    palette, max-pooling on gray frames) are those on SB3's (OpenCV's grayscale of max-pooled colour frames) but for
    a small difference: measured over 800 steps, greedy actions 96.5 % the same (Pong's NOOP/FIRE and RIGHT/RIGHTFIRE
    pairs are one move, where ties flip), mean KL 0.002 nats. The tolerance (90 %, 0.01) is well under what the
    student itself differs from its teacher by, and a frame out of step (7 frames: fire reset differs) scores 25 %.
    Both stacks start at the same frame here: no noops, no sticky actions, and the fire reset's two steps taken by
    hand on ale-py's env, whose own fire reset is one frame long."""
    from ale_py.vector_env import AtariVectorEnv
    from stable_baselines3.common.env_util import make_atari_env
    from stable_baselines3.common.vec_env import VecFrameStack, VecTransposeImage

    from policykd.teachers import load_teacher

    teacher = load_teacher("pong-ppo-v5", env_id="ALE/Pong-v5")
    plain = {"frameskip": 1, "repeat_action_probability": 0.0}
    sb3 = VecTransposeImage(
        VecFrameStack(make_atari_env("ALE/Pong-v5", 1, 0, env_kwargs=plain, wrapper_kwargs={"noop_max": 0}), 4)
    )
    native = AtariVectorEnv(
        "pong", 1, num_threads=1, repeat_action_probability=0.0, reward_clipping=False, noop_max=0, use_fire_reset=False
    )
    a = sb3.reset()
    native.reset(seed=0)
    for fire in (1, 2):
        b = native.step(np.array([fire]))[0]
    same, kls = [], []
    for step in range(400):
        p, q = (th.softmax(teacher.label(o)[0].logits, -1) for o in (a, b))
        if step >= 4:  # the stacks' first frames differ until four real frames fill them
            same.append(int(p.argmax() == q.argmax()))
            kls.append(float((p * (p.log() - q.log())).sum()))
        action = p.argmax(-1).numpy()
        a, b = sb3.step(action)[0], native.step(action)[0]
    sb3.close()
    native.close()
    assert np.mean(same) >= 0.9, np.mean(same)
    assert np.mean(kls) < 0.01, np.mean(kls)


def test_native_episodes_depend_only_on_their_seed():
    """`run_episodes` plays every episode in one vector env: each is the game its seed gives, as if it were played
    alone (and the same again)."""
    factory = EnvFactory("ALE/Pong-v5", env_kwargs=SHORT, atari_stack="native")

    def act(obs: np.ndarray) -> np.ndarray:  # a deterministic function of the frames
        return (obs[:, -1, 30:70].reshape(len(obs), -1).sum(1) // 7) % 6

    together = run_episodes(act, factory, 3, 100)
    again = run_episodes(act, factory, 3, 100)
    alone = [run_episodes(act, factory, 1, 100 + i) for i in range(3)]
    np.testing.assert_array_equal(together.returns, again.returns)
    np.testing.assert_array_equal(together.lengths, [r.lengths[0] for r in alone])
    np.testing.assert_array_equal(together.returns, [r.returns[0] for r in alone])


def test_sb3_stack_where_the_native_one_would_play_otherwise():
    """Games with lives (ale-py's vector env would restart the game where SB3's stack plays on), keyword arguments it
    has no counterpart for, the user's wrappers, a view that reads the console (`ram`), and `atari_stack="sb3"`."""
    import ale_py

    gym.register_envs(ale_py)
    assert fits("ALE/Pong-v5", {"frameskip": 1})
    assert not fits("ALE/Breakout-v5", {"frameskip": 1})
    assert not fits("ALE/Pong-v5", {"frameskip": 1, "mode": 1})
    assert not fits("ALE/Pong-v5", {"frameskip": 4})  # the skip would be done twice
    assert not EnvFactory("ALE/Pong-v5").native  # SB3's stack is the default
    pong = EnvFactory("ALE/Pong-v5", atari_stack="native")
    assert pong.native
    assert not replace(pong, atari_stack="sb3").native
    assert not replace(pong, wrappers=("gymnasium.wrappers:RecordEpisodeStatistics",)).native
    from policykd.views import view_for

    ram = view_for(pong, ["ram"])
    assert ram is not None and ram.reads_env
    assert not replace(pong, view=ram).native


def test_the_stack_asked_for_reaches_the_teachers_envs():
    """`--atari-stack` alone (no --env-kwargs or --env-wrapper) reaches every factory a run derives from the teacher's:
    options without kwargs are falsy, and an `options or default` once dropped the stack."""
    from policykd.envs import EnvOptions
    from policykd.teachers import load_teacher

    for stack, native in (("native", True), ("sb3", False)):
        teacher = load_teacher("pong-ppo-v5", env_id="ALE/Pong-v5", options=EnvOptions(atari_stack=stack))
        assert teacher.factory.atari_stack == stack and teacher.factory.native is native
    saved = EnvOptions({"repeat_action_probability": 0.1})
    assert EnvOptions(atari_stack="native").with_saved(saved) == EnvOptions(saved.kwargs, (), "native")
