"""`policykd record --human` on real ALE Pong, real pygame (SDL's dummy video driver) and real Minari datasets."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import cli

ENV = "ALE/Pong-v5"
SHORT = {"max_episode_steps": 200}  # ALE counts emulator frames: about 45 agent steps per episode
DATASET = "pong/human-v0"
# Pong's own table (ALE get_keys_to_action): d RIGHT (paddle up), a LEFT (down), space FIRE, e NOOP
SCRIPT = [set(), {"d"}, {"a"}, {" ", "d"}, {" ", "a"}, {" "}, {"e"}, {"d", "a"}]
MAPPED = [0, 2, 3, 4, 5, 1, 0, 0]  # {"d", "a"} is no combination in the table: noop


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """Two short episodes played by a scripted key source through the real recorder and window."""
    import pygame

    from policykd.data.human import human_policy
    from policykd.data.record import Recording, record
    from policykd.envs import EnvFactory

    root = tmp_path_factory.mktemp("minari")
    calls: list[int] = []
    surfaces: list[tuple[tuple[int, int], int]] = []

    def keys(i: int) -> set[str]:
        calls.append(i)
        surface = pygame.display.get_surface()  # what the person sees: the emulator frame, 3x
        surfaces.append((surface.get_size(), int(pygame.surfarray.array3d(surface).max())))
        return SCRIPT[(i // 3) % len(SCRIPT)]

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MINARI_DATASETS_PATH", str(root))
        mp.setenv("SDL_VIDEODRIVER", "dummy")
        factory, policy = human_policy(EnvFactory(ENV, env_kwargs=SHORT), fps=0, keys=keys)
        summary = record(factory, policy, Recording(ENV, DATASET, 2, 0, "human", None), quiet=True)
        window_closed = not pygame.display.get_init()
    return {"root": root, "summary": summary, "calls": calls, "surfaces": surfaces, "window_closed": window_closed}


def test_scripted_keys_are_recorded_as_their_actions(recorded):
    """Each scripted key set is recorded as the action Pong's own key table maps it to, with frames and no labels."""
    import minari
    from minari.dataset.minari_dataset import MinariDataset

    folder = recorded["root"] / DATASET
    data = MinariDataset(str(folder / "data"))
    episodes = list(data.iterate_episodes())
    assert len(episodes) == 2 and recorded["summary"]["episodes"] == 2
    assert isinstance(data, minari.MinariDataset)
    # the recorder calls the policy once per step and once more on each final observation
    expected = [MAPPED[(i // 3) % len(MAPPED)] for i in recorded["calls"]]
    start = 0
    for ep in episodes:
        steps = len(ep.actions)
        assert 20 < steps < 100  # the 200-frame limit, not Pong's thousands of steps
        assert np.asarray(ep.actions).tolist() == expected[start : start + steps]
        start += steps + 1
        assert ep.observations.shape == (steps + 1, 84, 84) and ep.observations.dtype == np.uint8
        assert not any(k.startswith("teacher_") for k in ep.infos)
        assert bool(ep.truncations[-1]) and not bool(ep.terminations[-1])
    assert start == len(recorded["calls"])
    assert {0, 1, 2, 3, 4, 5} <= set(np.concatenate([ep.actions for ep in episodes]).tolist())
    meta = json.loads((folder / "policykd.json").read_text())
    assert meta["label_kind"] is None and meta["source"] == "human" and meta["teacher"] is None
    assert meta["frame_stack"] == 4 and len(meta["episode_returns"]) == 2


def test_the_window_shows_the_emulator_frame_and_closes_with_the_env(recorded):
    """The window shows the emulator frame at 3x before keys are read, and closes with the env."""
    sizes = {size for size, _ in recorded["surfaces"]}
    assert sizes == {(160 * 3, 210 * 3)}
    assert all(brightest > 0 for _, brightest in recorded["surfaces"])  # the frame is drawn before the keys are read
    assert recorded["window_closed"]


def test_real_pygame_events_drive_the_policy(monkeypatch, tmp_path):
    """Real pygame key events (posted to its queue) drive the actions; Escape stops with KeyboardInterrupt."""
    import pygame

    from policykd.data.human import human_policy
    from policykd.envs import EnvFactory

    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    factory, policy = human_policy(EnvFactory(ENV, env_kwargs=SHORT), fps=0)
    venv = factory.make(1, 0)
    obs = venv.reset()
    seen = []
    try:
        for event in [
            None,
            (pygame.KEYDOWN, pygame.K_d),
            (pygame.KEYDOWN, pygame.K_SPACE),
            (pygame.KEYUP, pygame.K_d),
            (pygame.KEYUP, pygame.K_SPACE),
            (pygame.KEYDOWN, pygame.K_a),
            (pygame.KEYDOWN, pygame.K_x),
        ]:
            if event is not None:
                pygame.event.post(pygame.event.Event(event[0], key=event[1]))
            action, dist, value = policy(obs)
            assert action.shape == (1,) and dist is None and value is None
            seen.append(int(action[0]))
            shown = pygame.surfarray.array3d(pygame.display.get_surface())[::3, ::3].swapaxes(0, 1)
            assert np.array_equal(shown, venv.render())  # the person saw the emulator frame the action is for
            obs, *_ = venv.step(action)
        # x is no key of Pong's: ignored, a still held
        assert seen == [0, 2, 4, 1, 0, 3, 3]
        pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=pygame.K_ESCAPE))
        with pytest.raises(KeyboardInterrupt):
            policy(obs)
    finally:
        venv.close()
    assert not pygame.display.get_init()


def test_escape_stops_the_recording_and_a_rerun_resumes(monkeypatch, tmp_path):
    """Escape mid-episode keeps the finished episodes; a rerun records only the rest."""
    import pygame

    from policykd.data.human import human_policy
    from policykd.data.record import Recording, partial_folder, record
    from policykd.envs import EnvFactory

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    settings = Recording(ENV, "pong/stopped-v0", 2, 0, "human", None)

    def esc_in_second_episode(i: int) -> set[str]:
        if i == 60:  # episode 1 has fewer than 60 steps
            pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=pygame.K_ESCAPE))
        return {"d"}

    factory, policy = human_policy(EnvFactory(ENV, env_kwargs=SHORT), fps=0, keys=esc_in_second_episode)
    with pytest.raises(KeyboardInterrupt):
        record(factory, policy, settings, quiet=True)
    assert [p.name for p in partial_folder(settings.dataset).glob("episode_*.npz")] == ["episode_000000.npz"]
    assert not (tmp_path / settings.dataset / "data").exists()
    factory, policy = human_policy(EnvFactory(ENV, env_kwargs=SHORT), fps=0, keys=lambda i: {"a"})
    summary = record(factory, policy, settings, quiet=True)
    assert summary["episodes"] == 2
    from minari.dataset.minari_dataset import MinariDataset

    first, second = MinariDataset(str(tmp_path / settings.dataset / "data")).iterate_episodes()
    assert set(first.actions.tolist()) == {2} and set(second.actions.tolist()) == {3}


def _headless(monkeypatch: pytest.MonkeyPatch, minari_root: Path) -> None:
    """No display of any kind, and datasets under `minari_root`."""
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "SDL_VIDEODRIVER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(minari_root))


def test_without_a_display_record_human_fails_in_one_line_before_any_work(tmp_path, monkeypatch):
    """No $DISPLAY: one line that says so, exit 2, and nothing written (the CLI in-process)."""
    _headless(monkeypatch, tmp_path)
    result = cli("record", "--env", ENV, "--human", "--episodes", "1", "--dataset", "human/refused-v0")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "display" in lines[0] and "$DISPLAY" in lines[0], result.stderr
    assert list(tmp_path.iterdir()) == []


def test_without_pygame_record_human_fails_in_one_line(tmp_path, monkeypatch):
    """pygame missing (an import of it fails here): one line that says how to install it, and nothing written."""
    _headless(monkeypatch, tmp_path)
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    monkeypatch.setitem(sys.modules, "pygame", None)
    result = cli("record", "--env", ENV, "--human", "--episodes", "1", "--dataset", "human/refused-v0")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install pygame" in lines[0], result.stderr
    assert list(tmp_path.iterdir()) == []


def test_distilling_from_a_human_dataset_is_behaviour_cloning(recorded, tmp_path, monkeypatch):
    """A human dataset has actions only: the student is trained with NLL on them, and the summary says so."""
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(recorded["root"]))
    out = tmp_path / "run"
    result = cli(
        "distill",
        "--env",
        ENV,
        "--dataset",
        DATASET,
        "--steps",
        "1000",
        "--rounds",
        "1",
        "--epochs",
        "1",
        "--eval-episodes",
        "1",
        "--student-arch",
        "8,8,8,8",
        "--torch-threads",
        "1",
        "--out",
        str(out),
        "--quiet",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["loss"] == "nll"
    assert summary["dataset"]["source"] == "human" and summary["dataset"]["distributions"] is False
    assert (out / "student.zip").is_file()
