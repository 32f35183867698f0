"""Export carries the view (issue 31): ONNX and C take one sensor reading per step and keep the student's memory
themselves (a `history=K` window, a RecurrentPPO student's LSTM state), give SB3's `predict(deterministic=True)` along
real episodes with resets, write contract.json, and `policykd evaluate` on them repeats the SB3 student's returns."""

import ctypes
import json
import subprocess
from collections.abc import Iterator

import numpy as np
import pytest
from conftest import run_cli
from sb3_contrib import RecurrentPPO
from stable_baselines3 import PPO

import policykd
from policykd.envs import EnvFactory
from policykd.errors import PolicykdError
from policykd.rollouts import run_episodes, student_actor
from policykd.views import view_for, with_view

HISTORY = ["mask=2", "noise=0.05", "delay=1", "history=3"]  # Pendulum without its angular velocity: 2 sensors, 3 steps
STUDENTS = {
    # name: (env, view, algo); untrained students: export is exact whatever the weights
    "history": ("Pendulum-v1", HISTORY, "ppo"),
    "recurrent": ("Pendulum-v1", ["mask=2", "history=2"], "recurrent-ppo"),  # an LSTM on a window of 2 readings
    "recurrent-discrete": ("CartPole-v1", [], "recurrent-ppo"),  # an LSTM on the env's own observation
    "mask": ("CartPole-v1", ["mask=1"], "ppo"),  # a view without memory: 3 entries in, nothing kept
}
STATE = {"history": ["state"], "recurrent": ["state", "h", "c"], "recurrent-discrete": ["h", "c"], "mask": []}
SHORT = {"max_episode_steps": 40}  # several episodes, and their resets, in a few hundred steps


@pytest.fixture(scope="module")
def students(tmp_path_factory):
    """Run folders (student.zip and the summary.json a distill run writes beside it), by name, built on first use."""
    root, built = tmp_path_factory.mktemp("views"), {}

    def get(name):
        if name not in built:
            built[name] = _student(root / name, *STUDENTS[name])
        return built[name]

    return get


def _student(out, env_id, specs, algo):
    factory = EnvFactory(env_id)
    venv = with_view(factory, view_for(factory, specs)).make(1, 0)
    if algo == "ppo":
        model = PPO("MlpPolicy", venv, policy_kwargs={"net_arch": [16]}, seed=0, device="cpu")
    else:
        kwargs = {"lstm_hidden_size": 16, "net_arch": [16]}
        model = RecurrentPPO("MlpLstmPolicy", venv, policy_kwargs=kwargs, seed=0, device="cpu")
    out.mkdir()
    model.save(out / "student.zip")
    summary = {"env_id": env_id, "student_algo": algo, "student_obs": specs}
    (out / "summary.json").write_text(json.dumps(summary))
    return out


def _model(run):
    summary = json.loads((run / "summary.json").read_text())
    cls = RecurrentPPO if summary["student_algo"] == "recurrent-ppo" else PPO
    return cls.load(run / "student.zip", device="cpu"), summary


def _episodes(run, steps=240, n_envs=2, seed=3):
    """Real episodes of the student's view (short ones, so resets come at different steps in different envs): the
    sensor readings (the window's newest block), where episodes start, and SB3's greedy actions."""
    model, summary = _model(run)
    factory = EnvFactory(summary["env_id"], env_kwargs=SHORT)
    view = view_for(factory, summary["student_obs"])
    d = model.observation_space.shape[0] // (view.history if view else 1)
    venv = with_view(factory, view).make(n_envs, seed)
    obs, starts, state, seen = venv.reset(), np.ones(n_envs, bool), None, []
    for t in range(steps):
        if isinstance(model, RecurrentPPO):
            action, state = model.predict(obs, state, episode_start=starts, deterministic=True)
        else:
            action, _ = model.predict(obs, deterministic=True)
        seen.append((obs[:, -d:].copy(), starts.copy(), action))
        if t % 7 == 3:  # off the student's path too
            action = np.array([venv.action_space.sample() for _ in range(n_envs)])
        obs, _, dones, _ = venv.step(action)
        starts = dones
    venv.close()
    assert sum(s.sum() for _, s, _ in seen) >= 3 * n_envs, "the episodes should restart several times"
    return seen


def _same(got, expected, atol):
    if expected.dtype.kind in "iu":  # Discrete: the index itself
        np.testing.assert_array_equal(np.asarray(got).reshape(expected.shape).astype(np.int64), expected)
    else:
        np.testing.assert_allclose(np.asarray(got).reshape(expected.shape), expected, rtol=0, atol=atol)


@pytest.mark.parametrize("name", list(STUDENTS))
def test_onnx_keeps_the_memory_and_gives_predicts_action(students, name):
    import onnxruntime as ort

    run = students(name)
    path = policykd.export(run, "onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inputs = {i.name: i for i in session.get_inputs()}
    terms = json.loads((run / "contract.json").read_text())
    state_names = STATE[name]
    assert list(inputs) == ["obs", *state_names, *(["reset"] if state_names else [])]
    assert inputs["obs"].shape[1] == terms["sensors"]["size"]
    outputs = [o.name for o in session.get_outputs()]
    assert outputs[0] == "action" and outputs[len(outputs) - len(state_names) :] == [f"{n}_out" for n in state_names]
    seen = _episodes(run)
    state = {n: np.zeros((2, inputs[n].shape[1]), np.float32) for n in state_names}
    for obs, starts, expected in seen:
        feeds = {"obs": obs.astype(np.float32), **({"reset": starts.astype(np.float32)} if state else {}), **state}
        action, *kept = session.run(["action", *(f"{n}_out" for n in state_names)], feeds)
        _same(action, expected, 1e-5)
        state = dict(zip(state_names, kept))


def _compile(run, tmp_path, c_file="policy.c"):
    source = run / c_file
    flags = ["-std=c99", "-O2", "-Wall", "-Wextra", "-Werror"]
    library = tmp_path / "libpolicy.so"
    built = subprocess.run(
        ["cc", *flags, "-shared", "-fPIC", "-o", str(library), str(source), "-lm"], capture_output=True, text=True
    )
    assert built.returncode == 0 and built.stderr == "", built.stderr
    driver = tmp_path / "driver.c"  # the header as a user's loop includes it
    driver.write_text(
        '#include "policy.h"\n#include <stdio.h>\nint main(void) {\n'
        "    float obs[POLICYKD_OBS_DIM] = {0}, action[POLICYKD_ACT_DIM];\n"
        "    policykd_reset();\n    policykd_act(obs, action);\n    policykd_act(obs, action);\n"
        '    printf("%g\\n", (double)action[0]);\n    return 0;\n}\n'
    )
    program = tmp_path / "driver"
    built = subprocess.run(
        ["cc", *flags, f"-I{run}", "-o", str(program), str(driver), str(source), "-lm"], capture_output=True, text=True
    )
    assert built.returncode == 0 and built.stderr == "", built.stderr
    assert subprocess.run([str(program)], capture_output=True, text=True).returncode == 0
    return ctypes.CDLL(str(library))


@pytest.mark.parametrize("name", list(STUDENTS))
def test_c_keeps_the_memory_and_gives_predicts_action(students, name, tmp_path):
    run = students(name)
    policykd.export(run, "c")
    header = (run / "policy.h").read_text()
    terms = json.loads((run / "contract.json").read_text())
    assert f"#define POLICYKD_OBS_DIM {terms['sensors']['size']}\n" in header
    assert f"#define POLICYKD_HISTORY {terms['history']}\n" in header and "void policykd_reset(void);" in header
    for got, expected in _c_actions(_compile(run, tmp_path), _episodes(run)):
        _same(got, expected, 1e-4)


def _c_actions(library: ctypes.CDLL, seen: list) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The C file's actions beside SB3's at each step of `_episodes`: envs side by side, one memory each (the file's
    state copied out after an env's step and back in before its next), reset where an episode starts."""
    library.policykd_state.restype = ctypes.c_void_p
    library.policykd_state_size.restype = ctypes.c_ulong
    pointer, size = library.policykd_state(), library.policykd_state_size()
    floats = ctypes.POINTER(ctypes.c_float)
    memories: list = []
    for obs, starts, expected in seen:
        memories = memories or [ctypes.create_string_buffer(size) for _ in range(len(obs))]
        got = np.zeros((len(obs), 1 if expected.ndim == 1 else expected.shape[1]), np.float32)
        for env in range(len(obs)):
            if starts[env]:
                library.policykd_reset()
            else:
                ctypes.memmove(pointer, memories[env], size)
            row = np.ascontiguousarray(obs[env], dtype=np.float32)
            library.policykd_act(row.ctypes.data_as(floats), got[env].ctypes.data_as(floats))
            ctypes.memmove(memories[env], pointer, size)
        yield (got[:, 0] if expected.ndim == 1 else got), expected


def test_contract_says_what_the_robot_feeds_and_what_is_not_inside(students):
    run = students("history")
    policykd.export(run, "onnx")
    terms = json.loads((run / "contract.json").read_text())
    assert terms["env_id"] == "Pendulum-v1" and terms["student_obs"] == HISTORY
    sensors = terms["sensors"]
    assert sensors["size"] == 2 and sensors["dtype"] == "float32"
    assert [e["env_index"] for e in sensors["entries"]] == [0, 1]  # cos, sin; the angular velocity (2) masked
    assert terms["history"] == 3 and terms["lstm"] is None
    assert terms["sensor_model"] == {
        "noise_sigma": 0.05,
        "delay_steps": 1,
        "stages": ["mask=2", "noise=0.05", "delay=1"],
        "inside_the_file": False,
    }
    assert terms["action"] == {"space": "Box(1,) float32", "low": [-2.0], "high": [2.0]}
    assert terms["rate_hz"] == pytest.approx(20.0) and terms["dt"] == pytest.approx(0.05)  # Pendulum's dt
    assert terms["interface"]["onnx_inputs"]["state"] == {"shape": ["batch", 4], "dtype": "float32"}
    policykd.export(students("recurrent"), "c")
    recurrent = json.loads((students("recurrent") / "contract.json").read_text())
    assert recurrent["lstm"]["hidden_size"] == 16 and recurrent["lstm"]["state"] == {"h": 16, "c": 16}
    assert recurrent["history"] == 2 and recurrent["sensor_model"]["noise_sigma"] is None


def test_contract_names_mujoco_groups():
    pytest.importorskip("mujoco")
    from policykd.exporters.contract import _entries
    from policykd.views import probe

    factory = EnvFactory("Hopper-v5")
    view = view_for(factory, ["mask=velocities"])
    entries = _entries(probe(factory)[0], view.stages)
    assert [e["name"] for e in entries] == [f"positions[{j}]" for j in range(5)]
    assert [e["env_index"] for e in entries] == list(range(5))


class _RecurrentSB3:
    """SB3's RecurrentPPO `predict` with each episode's LSTM state, as `run_episodes` asks of an actor with memory."""

    def __init__(self, model):
        self.model, self.states = model, {}

    def __call__(self, obs):
        raise AssertionError("run_episodes calls step() on an actor with memory")

    def step(self, obs, episodes, starts):
        n = self.model.policy.lstm_hidden_state_shape[-1]
        zero = np.zeros((1, 1, n), np.float32)
        hs = [(zero, zero) if s else self.states[e] for e, s in zip(episodes, starts)]
        state = (np.concatenate([h for h, _ in hs], 1), np.concatenate([c for _, c in hs], 1))
        actions, (h, c) = self.model.predict(obs, state, episode_start=starts, deterministic=True)
        self.states.update({e: (h[:, [k]], c[:, [k]]) for k, e in enumerate(episodes)})
        return actions


@pytest.mark.parametrize("name", ["history", "recurrent"])
def test_evaluate_on_the_export_repeats_the_sb3_students_returns(students, name):
    """The same seeds, the same sensor noise: the exported file plays as the zip does on its view."""
    run = students(name)
    model, summary = _model(run)
    factory = EnvFactory(summary["env_id"])
    student_env = with_view(factory, view_for(factory, summary["student_obs"]))
    actor = _RecurrentSB3(model) if name == "recurrent" else student_actor(model)
    expected = run_episodes(actor, student_env, 3, 500).returns
    for fmt in ("onnx", "c"):
        result = policykd.evaluate(summary["env_id"], policykd.export(run, fmt), episodes=3, seed=500)
        assert result["model"]["returns"] == pytest.approx(expected.tolist(), abs=1e-3), fmt


def test_a_contract_that_does_not_fit_the_env_is_one_line(students, tmp_path):
    run = students("history")
    onnx_path = policykd.export(run, "onnx", out=tmp_path / "deploy")
    wrong_env = run_cli("evaluate", "--env", "CartPole-v1", "--model", str(onnx_path), "--episodes", "1")
    assert wrong_env.returncode == 2 and wrong_env.stdout == ""
    assert wrong_env.stderr.strip().count("\n") == 0
    assert "contract.json expects 2 sensor entries, but CartPole-v1 seen through mask=2" in wrong_env.stderr
    contract = tmp_path / "deploy" / "contract.json"
    terms = json.loads(contract.read_text())
    contract.write_text(json.dumps({**terms, "action": {"space": "Box(2,) float32"}}))
    with pytest.raises(PolicykdError, match=r"^student\.onnx's contract\.json acts in Box\(2,\) float32, but Pendulum"):
        policykd.evaluate("Pendulum-v1", onnx_path, episodes=1)
    contract.unlink()
    with pytest.raises(PolicykdError, match=r"keeps memory, but no contract\.json is beside it$"):
        policykd.evaluate("Pendulum-v1", onnx_path, episodes=1)


def test_int8_onnx_of_a_view_student_is_one_line_and_c_int8_compiles(students, tmp_path):
    run = students("history")
    with pytest.raises(
        PolicykdError, match=r"^int8=True with format='onnx' is not supported for a student with a view"
    ):
        policykd.export(run, "onnx", int8=True, out=tmp_path / "q")
    assert not (tmp_path / "q").exists()
    c_int8 = policykd.export(run, "c", int8=True, out=tmp_path / "c")
    built = subprocess.run(
        ["cc", "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-c", "-o", str(tmp_path / "q.o"), str(c_int8)],
        capture_output=True,
        text=True,
    )
    assert built.returncode == 0 and built.stderr == "", built.stderr
