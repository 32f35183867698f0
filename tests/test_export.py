"""Export is exact: the ONNX and C files give SB3's `predict(deterministic=True)` action on observations
from real rollouts, and `policykd evaluate` on them repeats the run's returns on its seeds."""

import json
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
from conftest import run_cli
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecNormalize

import policykd
from policykd.errors import PolicykdError
from policykd.sb3_models import ALGOS

FAST = dict(quiet=True, rounds=1, epochs=1, eval_episodes=2, n_envs=2)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Run folders distilled in seconds, by name; built on first use (the zoo case skips without ../shared)."""
    root, built = tmp_path_factory.mktemp("export"), {}

    def get(name, request=None):
        if name not in built:
            built[name] = _distill(name, root / name, request)
        return built[name]

    return get


def _distill(name, out, request):
    if name == "cartpole":  # the shipped CartPole teacher (PPO), a discrete PPO student
        policykd.distill("CartPole-v1", steps=1600, rounds=2, epochs=2, eval_episodes=2, out=out, quiet=True)
    elif name == "pendulum-sac":  # a real SAC teacher trained here in seconds, a SAC student: tanh + rescale
        from stable_baselines3 import SAC

        teacher = SAC(
            "MlpPolicy", "Pendulum-v1", learning_starts=100, policy_kwargs={"net_arch": [32, 32]}, seed=1, device="cpu"
        )
        teacher.learn(200)
        teacher.save(out.with_name("sac_pendulum.zip"))
        policykd.distill("Pendulum-v1", [out.with_name("sac_pendulum.zip")], steps=1000, out=out, **FAST)
    elif name == "pendulum-td3":  # TD3 student: its actor ends in tanh, then rescale
        policykd.distill("Pendulum-v1", [request.getfixturevalue("pendulum_td3_teacher")], steps=1000, out=out, **FAST)
    elif name == "halfcheetah-vecnormalize":  # rl-zoo PPO with VecNormalize: a Gaussian PPO student, clipped
        zoo = request.getfixturevalue("zoo")
        policykd.distill(
            "HalfCheetah-v5", [zoo / "ppo/HalfCheetah-v3_1"], steps=2000, out=out, **{**FAST, "eval_episodes": 1}
        )
        assert (out / "vecnormalize.pkl").is_file()
    return out


def _reference(run):
    """The student as plain SB3 loads it, and its greedy action on raw observations (VecNormalize applied first)."""
    summary = json.loads((run / "summary.json").read_text())
    model = ALGOS[summary["student_algo"]].load(run / "student.zip", device="cpu")
    norm = None
    if (run / "vecnormalize.pkl").is_file():
        norm = VecNormalize.load(str(run / "vecnormalize.pkl"), make_vec_env(summary["env_id"], n_envs=1))
        norm.training = False

    def predict(obs):
        return model.predict(norm.normalize_obs(obs) if norm else obs, deterministic=True)[0]

    return summary["env_id"], predict


def _rollout_observations(env_id, predict, steps=150, n_envs=4):
    """Raw observations the student meets in its env (and some from random actions, off its path)."""
    venv = make_vec_env(env_id, n_envs=n_envs, seed=7)
    seen, obs = [], venv.reset()
    for t in range(steps):
        seen.append(obs)
        actions = predict(obs) if t % 3 else np.array([venv.action_space.sample() for _ in range(n_envs)])
        obs, _, _, _ = venv.step(actions)
    venv.close()
    return np.concatenate(seen)


CASES = ["cartpole", "pendulum-sac", "pendulum-td3", "halfcheetah-vecnormalize"]


@pytest.mark.parametrize("name", CASES)
def test_onnx_gives_predicts_action(runs, request, name):
    import onnx
    import onnxruntime as ort

    run = runs(name, request)
    path = policykd.export(run, "onnx")
    assert path == run / "student.onnx"
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    assert model.opset_import[0].version >= 17
    props = {p.key: p.value for p in model.metadata_props}
    env_id, predict = _reference(run)
    assert props["env_id"] == env_id and json.loads(props["policykd"])["student_returns"]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    obs = _rollout_observations(env_id, predict)
    expected = predict(obs)
    feed = obs.astype(np.float64 if session.get_inputs()[0].type == "tensor(double)" else np.float32)
    outputs = dict(zip([o.name for o in session.get_outputs()], session.run(None, {"obs": feed})))
    if name == "cartpole":
        assert set(outputs) == {"action", "logits"}
        np.testing.assert_array_equal(outputs["action"], expected)  # discrete: identical
    else:
        assert outputs["action"].shape == expected.shape
        np.testing.assert_allclose(outputs["action"], expected, rtol=0, atol=1e-5)
        assert name == "pendulum-td3" or {"mean", "log_std"} <= set(outputs)


@pytest.mark.parametrize("name", CASES)
def test_c_compiles_warning_free_and_gives_predicts_action(runs, request, name, tmp_path):
    import ctypes

    run = runs(name, request)
    source = policykd.export(run, "c", out=str(tmp_path / "policy.c"))
    header = (tmp_path / "policy.h").read_text()
    assert "#define POLICYKD_OBS_DIM" in header and "void policykd_act(const float obs[POLICYKD_OBS_DIM]" in header
    built = subprocess.run(
        [
            "cc",
            "-std=c99",
            "-O2",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-shared",
            "-fPIC",
            "-o",
            str(tmp_path / "libpolicy.so"),
            str(source),
            "-lm",
        ],
        capture_output=True,
        text=True,
    )
    assert built.returncode == 0 and built.stderr == "", built.stderr
    library = ctypes.CDLL(str(tmp_path / "libpolicy.so"))
    env_id, predict = _reference(run)
    obs = _rollout_observations(env_id, predict)
    expected = predict(obs)
    rows = np.ascontiguousarray(obs, dtype=np.float32)
    actions = np.zeros((len(rows), 1 if expected.ndim == 1 else expected.shape[1]), dtype=np.float32)
    floats = ctypes.POINTER(ctypes.c_float)
    for row, action in zip(rows, actions):
        library.policykd_act(row.ctypes.data_as(floats), action.ctypes.data_as(floats))
    if name == "cartpole":
        np.testing.assert_array_equal(actions[:, 0].astype(np.int64), expected)  # ACT_DIM 1, the index
    else:
        np.testing.assert_allclose(actions, expected, rtol=0, atol=1e-4)


@pytest.mark.parametrize(
    "name, fmt",
    [
        ("cartpole", "onnx"),
        ("cartpole", "c"),
        ("pendulum-sac", "onnx"),
        ("halfcheetah-vecnormalize", "onnx"),
        ("halfcheetah-vecnormalize", "c"),
    ],
)
def test_evaluate_on_the_exported_file_repeats_the_summary(runs, request, name, fmt):
    """The real CLI, the summary's seeds: the deployed file plays as the zip did (same returns, to Monitor's rounding)."""
    run = runs(name, request)
    if name == "cartpole":  # the export command end to end; the library call elsewhere (one interpreter start less)
        export = run_cli("export", str(run), "--format", fmt)
        assert export.returncode == 0, export.stderr
        artifact = export.stdout.strip().splitlines()[-1]
    else:
        artifact = str(policykd.export(run, fmt))
    summary = json.loads((run / "summary.json").read_text())
    result = run_cli(
        "evaluate",
        "--env",
        summary["env_id"],
        "--model",
        artifact,
        "--episodes",
        str(summary["eval_episodes"]),
        "--seed",
        str(summary["eval_seed"]),
        "--json",
    )
    assert result.returncode == 0, result.stderr
    returns = json.loads(result.stdout)["model"]["returns"]
    assert returns == pytest.approx(summary["student_returns"], abs=1e-3)


@pytest.mark.parametrize(
    "args, message",
    [
        (["export", "{empty}"], "holds no student.zip"),
        (["export", "{cartpole}", "--format", "tflite"], "unknown format 'tflite': choose from onnx, c"),
        (
            ["export", "{cartpole}", "--out", "{cartpole}/student.zip"],
            "must be a folder or a file ending in .onnx for --format onnx",
        ),
        (
            ["export", "{cartpole}", "--out", "{cartpole}/summary.json/student.onnx"],
            "summary.json is a file, not a folder",
        ),
        (
            ["evaluate", "--env", "Pendulum-v1", "--model", "{cartpole}/student.onnx"],
            "contract.json expects 4 sensor entries, but Pendulum-v1 gives 3",
        ),
    ],
)
def test_bad_input_is_one_line(runs, tmp_path, args, message):
    cartpole = runs("cartpole")
    policykd.export(cartpole, "onnx")
    before = (cartpole / "student.zip").read_bytes()
    (tmp_path / "empty").mkdir()
    result = run_cli(*(a.format(empty=tmp_path / "empty", cartpole=cartpole) for a in args))
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and message in result.stderr, result.stderr
    assert (cartpole / "student.zip").read_bytes() == before  # nothing written over


def test_cnn_student_takes_the_uint8_frame_stack_and_c_refuses_it(tmp_path):
    """A CNN student (untrained: the graph is what is tested) on Pong's frame stack: uint8 in, /255 inside."""
    import onnxruntime as ort
    from stable_baselines3 import PPO

    from policykd.envs import EnvFactory
    from policykd.errors import PolicykdError

    venv = EnvFactory("ALE/Pong-v5").make(2, 0)
    model = PPO(
        "CnnPolicy",
        venv,
        n_steps=16,
        batch_size=16,
        device="cpu",
        policy_kwargs={"net_arch": [], "features_extractor_kwargs": {"features_dim": 32}},
    )
    model.save(tmp_path / "student.zip")
    path = policykd.export(tmp_path / "student.zip", "onnx", env_id="ALE/Pong-v5")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].type == "tensor(uint8)" and session.get_inputs()[0].shape == ["batch", 4, 84, 84]
    seen, obs = [], venv.reset()
    for _ in range(60):
        seen.append(obs)
        obs, *_ = venv.step(np.array([venv.action_space.sample() for _ in range(2)]))
    venv.close()
    frames = np.concatenate(seen)
    np.testing.assert_array_equal(
        session.run(["action"], {"obs": frames})[0], model.predict(frames, deterministic=True)[0]
    )
    # int8 quantises the convolutions too: they hold almost every weight
    int8 = policykd.export(tmp_path / "student.zip", "onnx", env_id="ALE/Pong-v5", int8=True)
    assert int8.stat().st_size <= 0.30 * path.stat().st_size, (int8.stat().st_size, path.stat().st_size)
    logits = ort.InferenceSession(str(int8), providers=["CPUExecutionProvider"]).run(["logits"], {"obs": frames})[0]
    expected = session.run(["logits"], {"obs": frames})[0]
    assert np.abs(logits - expected).max() <= 0.05 * (np.abs(expected).max() + 1e-3)
    with pytest.raises(PolicykdError, match="format='c' exports MLP students"):
        policykd.export(tmp_path / "student.zip", "c", env_id="ALE/Pong-v5")


def _weight_bytes(c_source):
    """Bytes of the static const arrays a policy.c declares (what the compiled file's read-only data holds)."""
    import re

    sizes = {"float": 4, "double": 8, "int8_t": 1}
    return sum(sizes[t] * int(n) for t, n in re.findall(r"static const (float|double|int8_t) \w+\[(\d+)\]", c_source))


@pytest.mark.parametrize("name", ["cartpole", "pendulum-sac"])
def test_int8_is_smaller_and_acts_as_the_float_student(runs, request, name, tmp_path):
    """int8 ONNX (static, calibrated on a seeded rollout) and int8 C (per-row weights, float scales) against the
    float student's predict on real rollout observations: discrete agrees on >= 95 % of states; continuous within
    2 % of the action range (SAC on Pendulum: measured 0.015 ONNX, 0.011 C, i.e. <= 0.4 % of [-2, 2]: the 8-bit
    rounding of weights and hidden activations; 2 % leaves 5x room for another seed's student)."""
    import onnx
    import onnxruntime as ort

    from policykd.exporters.artifact import load_artifact

    run = runs(name, request)
    onnx_float, onnx_int8 = policykd.export(run, "onnx"), policykd.export(run, "onnx", int8=True)
    assert onnx_int8 == run / "student.int8.onnx" and onnx_int8.stat().st_size < onnx_float.stat().st_size
    session = ort.InferenceSession(str(onnx_int8), providers=["CPUExecutionProvider"])
    assert {"QuantizeLinear", "DequantizeLinear"} <= {n.op_type for n in onnx.load(str(onnx_int8)).graph.node}
    c_float = policykd.export(run, "c", out=str(tmp_path / "policy.c"))
    c_int8 = policykd.export(run, "c", int8=True, out=str(tmp_path / "policy_int8.c"))
    assert "static const int8_t" in c_int8.read_text() and (tmp_path / "policy_int8.h").is_file()
    assert _weight_bytes(c_int8.read_text()) < _weight_bytes(c_float.read_text())  # tiny students: scales weigh
    built = subprocess.run(
        ["cc", "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-c", "-o", str(tmp_path / "q.o"), str(c_int8)],
        capture_output=True,
        text=True,
    )
    assert built.returncode == 0 and built.stderr == "", built.stderr
    env_id, predict = _reference(run)
    obs = _rollout_observations(env_id, predict, steps=100)
    expected = predict(obs)
    feed = obs.astype(np.float64 if session.get_inputs()[0].type == "tensor(double)" else np.float32)
    for actions in (session.run(["action"], {"obs": feed})[0], load_artifact(c_int8, env_id).act(obs)):
        if name == "cartpole":
            assert np.mean(actions == expected) >= 0.95
        else:
            np.testing.assert_allclose(actions, expected, rtol=0, atol=0.02 * 4.0)  # Pendulum's torque range is [-2, 2]


@pytest.mark.parametrize("fmt", ["onnx", "c"])
def test_evaluate_runs_on_the_int8_files(runs, fmt):
    run = runs("cartpole")
    artifact = policykd.export(run, fmt, int8=True)
    result = run_cli("evaluate", "--env", "CartPole-v1", "--model", str(artifact), "--episodes", "2", "--json")
    assert result.returncode == 0, result.stderr
    assert len(json.loads(result.stdout)["model"]["returns"]) == 2


class _BrokenCartPole(gym.Wrapper):
    """CartPole whose physics fail on the first step: no rollout, so no calibration, can be made in it."""

    def __init__(self) -> None:
        super().__init__(gym.make("CartPole-v1"))

    def step(self, action):
        raise RuntimeError("the simulator failed")


def test_int8_without_calibration_data_is_one_line_and_writes_nothing(runs, tmp_path):
    gym.register("BrokenCartPole-v0", entry_point=_BrokenCartPole)
    out = tmp_path / "new" / "folders" / "student.int8.onnx"  # nor the folders made for it
    with pytest.raises(
        PolicykdError, match="int8=True cannot calibrate: no rollout of the student in BrokenCartPole-v0"
    ) as err:
        policykd.export(runs("cartpole") / "student.zip", "onnx", int8=True, env_id="BrokenCartPole-v0", out=out)
    assert "\n" not in str(err.value)
    assert not out.exists() and not list(tmp_path.iterdir())


def test_the_library_export_stays_callable_when_the_exporters_are_imported(runs, tmp_path):
    """`policykd.export` is a function and the package is `policykd.exporters`: importing the package does not rebind
    the function, so the library call works twice in one interpreter (it used to need a callable-module patch)."""
    import policykd.api
    import policykd.exporters.write  # noqa: F401

    assert policykd.export is policykd.api.export
    run = runs("cartpole")
    assert policykd.export(run, "onnx", out=tmp_path) == tmp_path / "student.onnx"
    assert policykd.export(run, "c", out=tmp_path) == tmp_path / "policy.c"


def test_the_exporters_import_nothing_above_them():
    """The exporters sit below the API and the CLI: no module of theirs imports those (nor the sweep), at the top or
    inside a function (`import policykd` itself loads the API, so this reads the imports rather than sys.modules)."""
    import ast
    from pathlib import Path

    above = ("policykd.api", "policykd.cli", "policykd.sweeps")
    found = []
    for path in (Path(policykd.__file__).parent / "exporters").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else ([node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            )
            found += [f"{path.name}: {n}" for n in names if n == "policykd" or n.startswith(above)]
    assert found == []


def test_format_choices_and_validation_come_from_the_registry():
    from dataclasses import fields

    from policykd.exporters.registry import EXPORTERS
    from policykd.fields import field_choices

    fmt = next(f for f in fields(policykd.ExportSettings) if f.name == "format")
    assert field_choices(fmt, str) == EXPORTERS.names() == ("onnx", "c")
    with pytest.raises(PolicykdError, match="unknown format 'npz': choose from onnx, c$"):
        policykd.ExportSettings("run", format="npz")


def _doc_example():
    """The python block of docs/export.md that registers a format, as it is written there."""
    import re
    from pathlib import Path

    doc = (Path(__file__).parents[1] / "docs" / "export.md").read_text()
    return next(b for b in re.findall(r"```python\n(.*?)```", doc, re.S) if "register_exporter(" in b)


def test_a_format_registered_at_run_time_exports_through_the_same_path(runs, tmp_path):
    """docs/export.md's worked example, run as written: one writer and one register_exporter line make a format
    that settings accept and `policykd.export` writes (default name, a folder as out, int8 refused)."""
    from policykd.exporters.registry import EXPORTERS

    run = runs("cartpole")
    try:
        exec(compile(_doc_example(), "docs/export.md", "exec"), {"__name__": "my_exporters"})
        assert policykd.ExportSettings(str(run), format="npz").format == "npz"
        path = policykd.export(run, "npz", out=tmp_path / "deploy")
        assert path == tmp_path / "deploy" / "weights.npz"
        weights = np.load(path)
        assert any(name.endswith("action_net.weight") for name in weights.files)
        with pytest.raises(PolicykdError, match="int8=True: format='npz' has no int8 export"):
            policykd.export(run, "npz", int8=True)
        with pytest.raises(
            PolicykdError, match=r"^out='\S+weights\.onnx' must be a folder or a file ending in \.npz for format='npz'$"
        ):
            policykd.export(run, "npz", out=tmp_path / "weights.onnx")
    finally:
        EXPORTERS.unregister("npz")
    assert not (tmp_path / "weights.onnx").exists()


@pytest.mark.parametrize(
    "fmt, written", [("c", ("policy.c", "policy.h", "contract.json")), ("onnx", ("student.onnx", "contract.json"))]
)
def test_out_may_be_a_folder_and_missing_folders_are_made(runs, tmp_path, fmt, written):
    run = runs("cartpole")
    new = tmp_path / "new" / "deploy"  # no suffix, not there yet: a folder
    assert policykd.export(run, fmt, out=new) == new / written[0]
    existing = tmp_path / "existing.v2"  # there already: a folder, whatever its name
    existing.mkdir()
    assert policykd.export(run, fmt, out=existing) == existing / written[0]
    nested = tmp_path / "a" / "b" / written[0]  # a file in folders not there yet
    assert policykd.export(run, fmt, out=nested) == nested
    for folder in (new, existing, nested.parent):
        assert sorted(p.name for p in folder.iterdir()) == sorted(written)


def test_the_cli_writes_c_into_a_folder(runs, tmp_path):
    result = run_cli("export", str(runs("cartpole")), "--format", "c", "--out", str(tmp_path / "deploy"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == str(tmp_path / "deploy" / "policy.c")
    assert (tmp_path / "deploy" / "policy.h").is_file()


class _Float64CartPole(gym.ObservationWrapper):
    """CartPole emitting float64 observations, as MuJoCo envs do: what a C export has to cast."""

    def __init__(self) -> None:
        super().__init__(gym.make("CartPole-v1"))
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (4,), np.float64)

    def observation(self, observation):
        return observation.astype(np.float64)


def test_metadata_says_what_the_files_take_and_no_frame_stack_outside_atari(tmp_path):
    """A float64 env without a frame stack (an untrained student: the metadata is what is tested): ONNX takes float64
    in batches, C one `const float` observation; neither claims a frame stack; evaluate reads both back."""
    from stable_baselines3 import PPO

    from policykd.envs import EnvFactory
    from policykd.exporters.artifact import load_artifact
    from policykd.exporters.to_c import read_c_metadata
    from policykd.exporters.to_onnx import read_metadata

    gym.register("Float64CartPole-v0", entry_point=_Float64CartPole)
    PPO(
        "MlpPolicy",
        EnvFactory("Float64CartPole-v0").make(1, 0),
        n_steps=16,
        batch_size=16,
        device="cpu",
        policy_kwargs={"net_arch": [8]},
    ).save(tmp_path / "student.zip")
    onnx_path = policykd.export(tmp_path / "student.zip", "onnx", env_id="Float64CartPole-v0")
    c_path = policykd.export(tmp_path / "student.zip", "c", env_id="Float64CartPole-v0")
    onnx_meta, c_meta = read_metadata(onnx_path), read_c_metadata(tmp_path / "policy.h")
    assert onnx_meta["frame_stack"] is None and c_meta["frame_stack"] is None
    assert onnx_meta["observation_layout"] == "[batch, 4] float64 raw env observations"
    assert c_meta["observation_layout"] == "[4] float32 raw env observations (cast from the env's float64)"
    header = (tmp_path / "policy.h").read_text()
    assert "float64 raw" not in header and "void policykd_act(const float obs[POLICYKD_OBS_DIM]" in header
    obs = np.random.default_rng(0).normal(size=(8, 4))
    np.testing.assert_array_equal(
        load_artifact(onnx_path, "Float64CartPole-v0").act(obs), load_artifact(c_path, "Float64CartPole-v0").act(obs)
    )


@pytest.mark.parametrize("name", ["cartpole", "pendulum-sac"])
def test_no_path_of_the_build_machine_in_the_exported_files(runs, request, name, tmp_path):
    """Files meant to be shipped name the student and its teachers, not where they were on this machine (the pendulum
    run's teacher is a zip at an absolute temporary path; CartPole's the shipped agent inside this checkout)."""
    from pathlib import Path

    run = runs(name, request)
    out = tmp_path / "deploy"
    for fmt, int8 in [("onnx", False), ("onnx", True), ("c", False), ("c", True)]:
        policykd.export(run, fmt, out=out, int8=int8)
    summary = json.loads((run / "summary.json").read_text())
    machine = {
        str(run),
        str(run.parent),
        str(Path(policykd.__file__).parents[1]),
        sys.prefix,
        str(Path.home()),
        *(t for t in summary["teachers"] if Path(t).is_absolute()),
    }
    files = sorted(out.iterdir())
    assert [p.name for p in files] == [
        "contract.json",
        "policy.c",
        "policy.h",
        "policy_int8.c",
        "policy_int8.h",
        "student.int8.onnx",
        "student.onnx",
    ]
    for path in files:
        content = path.read_bytes()
        assert not [m for m in machine if m.encode() in content], path.name
    from policykd.exporters.to_onnx import read_metadata

    meta = read_metadata(out / "student.onnx")
    assert meta["source"] == "student.zip"
    assert meta["teachers"] == [t.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1] for t in summary["teachers"]]


def test_export_source_holds_the_loaded_student(runs):
    """ExportSource reads algo, model, normalizer and env stack from the student it loaded (no copies of them)."""
    from dataclasses import fields

    from policykd.exporters.source import ExportSource, load_source
    from policykd.teachers.base import SB3Teacher

    source = load_source(runs("cartpole"))
    assert [f.name for f in fields(ExportSource)] == ["path", "student", "summary"]
    assert isinstance(source.student, SB3Teacher) and source.env_id == "CartPole-v1"
