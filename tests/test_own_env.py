"""docs/own-env.md as written: the user's own env as `module:EnvId`, with `--env-kwargs` and `--env-wrapper`, through
train-teacher, distill, evaluate and export on the real CLI; and its bad-input table, row by row."""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from conftest import cli

DOC = Path(__file__).resolve().parents[1] / "docs" / "own-env.md"
ENV = "pointbot:Point-v0"
OPTIONS = ["--env-kwargs", "size=2", "--env-kwargs", "horizon=50", "--env-wrapper", "pointbot:Distance"]


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC.read_text(), flags=re.S)


def _commands() -> list[list[str]]:
    """The doc's `policykd ...` command lines, as argument lists without `policykd`."""
    lines = "\n".join(_blocks("bash")).replace("\\\n", " ").splitlines()
    return [line.split()[1:] for line in lines if line.startswith("policykd ")]


def _doc_command(name: str, budget: str, ours: str) -> list[str]:
    """The doc's `policykd NAME ...` with a test-sized budget (`--steps`) in place of `budget`."""
    (args,) = [c for c in _commands() if c[0] == name]
    assert args[args.index("--steps") + 1] == budget, "the doc's command changed: update this test"
    args[args.index("--steps") + 1] = ours
    return args


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """A folder holding the doc's pointbot.py, importable as `pointbot` (as it is when the commands run beside it);
    afterwards the module and its registration are gone again."""
    folder = tmp_path_factory.mktemp("own-env")
    (folder / "pointbot.py").write_text(_blocks("python")[0])
    sys.path.insert(0, str(folder))
    yield folder
    sys.path.remove(str(folder))
    sys.modules.pop("pointbot", None)
    gym.envs.registry.pop("Point-v0", None)


@pytest.fixture(scope="module")
def teacher(home: Path) -> Path:
    """The doc's train-teacher command, one PPO rollout long; it writes runs/teachers/ppo-Point-v0 (no module)."""
    result = cli(*_doc_command("train-teacher", "50000", "2048"), "--eval-episodes", "2", cwd=home)
    assert result.returncode == 0, result.stderr
    return home / "runs" / "teachers" / "ppo-Point-v0"


@pytest.fixture(scope="module")
def run(home: Path, teacher: Path) -> Path:
    """The doc's distill command with a tiny budget; it writes runs/Point-v0."""
    args = _doc_command("distill", "20000", "400")
    assert args[args.index("--teacher") + 1] == "runs/teachers/ppo-Point-v0" and all(o in args for o in OPTIONS)
    result = cli(*args, "--rounds", "1", "--eval-episodes", "2", "--quiet", cwd=home)
    assert result.returncode == 0, result.stderr
    return home / "runs" / "Point-v0"


def test_the_docs_commands_run_as_written(run: Path, home: Path) -> None:
    """evaluate, export, evaluate the export: the doc's lines, without the flags (the run remembers them)."""
    rest = [c for c in _commands() if c[0] in ("evaluate", "export")]
    assert [c[0] for c in rest] == ["evaluate", "export", "evaluate"], "the doc's commands changed: update this test"
    for args in rest:
        result = cli(*args, cwd=home)
        assert result.returncode == 0, (args, result.stderr)
    assert (run / "student.onnx").is_file()


def test_the_env_id_names_its_module(home: Path) -> None:
    from policykd.envs import folder_name, is_atari, newest_version, split_env_id

    assert split_env_id(ENV) == ("pointbot", "Point-v0") and split_env_id("ALE/Pong-v5") == (None, "ALE/Pong-v5")
    assert folder_name(ENV) == "Point-v0" and folder_name("ALE/Pong-v5") == "ALE-Pong-v5"
    assert is_atari("ale_py:ALE/Pong-v5") and not is_atari(ENV)
    assert newest_version(ENV) == ENV


def test_the_teacher_card_says_how_it_was_trained(teacher: Path) -> None:
    card = (teacher / "CARD.md").read_text()
    assert "--env-kwargs size=2 --env-kwargs horizon=50 --env-wrapper pointbot:Distance" in card
    assert "SB3's defaults (no entry for the env" in card  # rl-zoo has no hyperparameters for the user's env


def test_the_docs_sb3_teacher_trains(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The doc's by-hand teacher (one rollout instead of 50,000 steps) acts in the env the flags describe."""
    from stable_baselines3 import PPO

    (block,) = [b for b in _blocks("python") if "make_vec_env" in b]
    monkeypatch.chdir(home)
    exec(compile(block.replace("50_000", "2_048"), str(DOC), "exec"), {})
    model = PPO.load(home / "teacher.zip")
    assert model.observation_space.shape == (3,)  # the Distance wrapper's range reading
    assert model.observation_space.high[0] == 2  # size=2


def test_the_docs_library_call_takes_a_dict(teacher: Path, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (block,) = [b for b in _blocks("python") if "policykd.distill(" in b]
    monkeypatch.chdir(home)
    scope: dict[str, object] = {}
    exec(compile(block.replace("20_000", "400"), str(DOC), "exec"), scope)
    summary = json.loads((home / "runs" / "Point-v0-python" / "summary.json").read_text())
    assert summary["env_kwargs"] == {"size": 2, "horizon": 50} and summary["env_wrappers"] == ["pointbot:Distance"]
    assert summary["config"]["env_kwargs"] == ["size=2", "horizon=50"]  # one form in config.json, as the CLI's


def test_distill_makes_the_env_its_flags_describe(run: Path) -> None:
    from stable_baselines3 import PPO

    summary = json.loads((run / "summary.json").read_text())
    assert summary["env_id"] == ENV
    assert summary["env_kwargs"] == {"size": 2, "horizon": 50}  # YAML values: ints, not strings
    assert summary["env_wrappers"] == ["pointbot:Distance"]
    config = json.loads((run / "config.json").read_text())
    assert config["env_kwargs"] == ["size=2", "horizon=50"] and config["env_wrappers"] == ["pointbot:Distance"]
    student = PPO.load(run / "student.zip")  # built on the env it was distilled in
    assert student.observation_space.shape == (3,)
    np.testing.assert_array_equal(student.observation_space.high[:2], [2, 2])


def _returns(*args: str, cwd: Path) -> list[float]:
    result = cli("evaluate", "--env", ENV, *args, "--episodes", "3", "--json", cwd=cwd)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["model"]["returns"]


def test_evaluate_and_export_step_the_same_env(run: Path, home: Path) -> None:
    """The run folder and its ONNX file remember the env options (summary.json, the file's metadata): evaluated
    without the flags, both play the episodes distill evaluated on; flags given replace them."""
    from policykd.exporters.to_onnx import read_metadata

    from_folder = _returns("--model", str(run), cwd=home)
    assert all(r < -5 for r in from_folder), "50 steps away from the origin cost more than one step's distance"
    exported = cli("export", str(run), cwd=home)
    assert exported.returncode == 0, exported.stderr
    onnx = run / "student.onnx"
    meta = read_metadata(onnx)
    assert meta["env_kwargs"] == {"size": 2, "horizon": 50} and meta["env_wrappers"] == ["pointbot:Distance"]
    elsewhere = home / "elsewhere"  # no summary.json beside it: the file's own metadata names the env
    elsewhere.mkdir()
    for name in ("student.onnx", "contract.json"):  # what export wrote, as a deployment carries it
        if (run / name).is_file():
            shutil.copyfile(run / name, elsewhere / name)
    assert _returns("--model", str(elsewhere / "student.onnx"), cwd=home) == pytest.approx(from_folder, rel=1e-4)
    one_step = ["--env-kwargs", "size=2", "--env-kwargs", "horizon=1", "--env-wrapper", "pointbot:Distance"]
    short = _returns("--model", str(run), *one_step, cwd=home)
    assert all(-2 * np.sqrt(2) <= r <= 0 for r in short), "horizon=1: an episode is one step"


ROWS = {
    "module cannot be imported": (
        ["distill", "--env", "nomod:Point-v0"],
        "env module 'nomod' cannot be imported: ModuleNotFoundError: No module named 'nomod'",
    ),
    "module registers no such env": (
        ["distill", "--env", "pointbot:Pointt-v0"],
        "env module 'pointbot' registers no env 'Pointt-v0'; did you mean Point-v0?",
    ),
    "a keyword the env does not take": (
        ["distill", "--env", ENV, "--env-kwargs", "sise=2"],
        "--env-kwargs sise=2: pointbot:Point-v0 does not take 'sise'",
    ),
    "not KEY=VALUE": (["distill", "--env", ENV, "--env-kwargs", "size"], "--env-kwargs 'size' is not KEY=VALUE"),
    "a value that is not YAML": (["distill", "--env", ENV, "--env-kwargs", "size=[2"], "the value is not YAML"),
    "a wrapper that is not there": (
        ["distill", "--env", ENV, "--env-wrapper", "pointbot:Nope"],
        "--env-wrapper 'pointbot:Nope' cannot be imported: AttributeError",
    ),
    "a wrapper that is no class": (
        ["distill", "--env", ENV, "--env-wrapper", "pointbot:np"],
        "--env-wrapper 'pointbot:np' is not a class but a module",
    ),
    "a wrapper that cannot wrap the env": (
        ["distill", "--env", ENV, "--env-wrapper", "gymnasium.wrappers:TimeLimit"],
        "--env-wrapper 'gymnasium.wrappers:TimeLimit' cannot wrap pointbot:Point-v0: TypeError",
    ),
    "a wrapper without its module": (
        ["distill", "--env", ENV, "--env-wrapper", "Distance"],
        "--env-wrapper must name classes as module:Class, got Distance",
    ),
    "evaluate: module cannot be imported": (
        ["evaluate", "--env", "nomod:Point-v0", "--model", "{teacher}"],
        "env module 'nomod' cannot be imported",
    ),
    "train-teacher: a keyword the env does not take": (
        ["train-teacher", "--env", ENV, "--algo", "ppo", "--steps", "2048", "--env-kwargs", "sise=2"],
        "does not take 'sise'",
    ),
    "train-teacher: no rl-zoo entry and no --steps": (
        ["train-teacher", "--env", ENV, "--algo", "ppo"],
        "no rl-zoo hyperparameters for ppo on Point-v0",
    ),
}


@pytest.mark.parametrize("row", sorted(ROWS))
def test_bad_input_row(teacher: Path, tmp_path: Path, row: str) -> None:
    """One line, exit 2, before any work: --out is never made."""
    args, message = ROWS[row]
    out = tmp_path / "out"
    given = [a.format(teacher=teacher) for a in args] + ([] if args[0] == "evaluate" else ["--out", str(out)])
    result = cli(*given, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not out.exists()


def test_record_stores_the_env_with_its_kwargs(teacher: Path, home: Path, tmp_path: Path, monkeypatch) -> None:
    """Minari keeps the env's spec to remake it: the module's entry point and the --env-kwargs are in it."""
    import minari

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    dataset = "pointbot/teacher-v0"
    args = ["--env", ENV, "--teacher", str(teacher), *OPTIONS, "--episodes", "2", "--dataset", dataset, "--quiet"]
    result = cli("record", *args, cwd=home)
    assert result.returncode == 0, result.stderr
    spec = minari.load_dataset(dataset).spec.env_spec
    assert spec is not None and spec.entry_point == "pointbot:Point"
    assert spec.kwargs == {"size": 2, "horizon": 50}
