"""Settings declared once: the CLI is generated from the dataclasses, and precedence is defaults < preset < flags."""

import json
import os
import subprocess
import sys
import typing
from dataclasses import fields

import pytest

from conftest import run_cli
from policykd.errors import PolicykdError
from policykd.presets import preset_for, resolve_distill
from policykd.fields import flag_of
from policykd.settings import COMMANDS, DistillSettings, Driver, Loss, StudentAlgo


def test_literal_types_are_the_registries():
    from policykd.run.losses import LOSSES
    from policykd.students.build import STUDENT_ALGOS

    assert typing.get_args(Loss) == tuple(LOSSES)
    assert typing.get_args(StudentAlgo) == tuple(STUDENT_ALGOS)
    assert typing.get_args(Driver) == ("teacher", "student", "dagger")


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_field_is_an_option_with_its_docstring(command):
    """One field, one option: its flag and (the start of) its docstring are in --help."""
    wide = {**os.environ, "COLUMNS": "200"}  # rich cuts long option names in a narrow terminal
    result = subprocess.run([sys.executable, "-m", "policykd.cli", command, "--help"], capture_output=True, text=True, env=wide)
    help_text = " ".join(result.stdout.split())
    for f in fields(COMMANDS[command]):
        if not f.metadata.get("positional"):
            assert flag_of(f) in help_text, (command, f.name)


def test_defaults_then_preset_then_given():
    plain = DistillSettings(env_id="CartPole-v1")
    assert plain.epochs == 4.0 and preset_for("CartPole-v1")["epochs"] == 20
    resolved = resolve_distill("Pendulum-v1", epochs=3)
    assert resolved.epochs == 3  # given beats the preset
    assert resolved.steps == 40_000 and resolved.rounds == 5  # Pendulum-v1's own preset entry
    assert resolved.batch_size == 256  # neither preset nor given: the dataclass default
    assert resolved.out == "runs/Pendulum-v1"
    with pytest.raises(PolicykdError, match="unknown setting"):
        resolve_distill("CartPole-v1", epoch=3)


def test_config_json_records_the_resolved_settings(tmp_path):
    out = tmp_path / "cp"
    result = run_cli("distill", "--env", "CartPole-v1", "--steps", "800", "--rounds", "1", "--eval-episodes", "1",
                     "--student-arch", "8,8", "--greedy-actions", "--quiet", "--out", str(out))
    assert result.returncode == 0, result.stderr
    config = json.loads((out / "config.json").read_text())
    assert config["steps"] == 800 and config["student_arch"] == [8, 8] and config["sample_actions"] is False
    assert config["epochs"] == 20  # from the classic-control preset
    assert config["teachers"] == [] and json.loads((out / "summary.json").read_text())["config"] == config


@pytest.mark.parametrize("args, message", [
    (["--student-arch", "64,x"], "--student-arch must be comma-separated ints like 64,64, got '64,x'"),
    (["--teacher-weights", "1,-1"], "--teacher-weights must be non-negative, got 1.0,-1.0"),
    (["--driver", "robot"], "unknown driver 'robot': choose from teacher, student, dagger"),
    (["--alpha", "1.5"], "--alpha must be within [0, 1], got 1.5"),
])
def test_bad_values_are_one_line_before_any_work(args, message):
    result = run_cli("distill", "--env", "CartPole-v1", *args)
    assert result.returncode == 2 and result.stderr.strip() == f"error: {message}", result.stderr


def test_the_default_student_has_a_floor_the_mujoco_preset_raises():
    """5 % of a 64x64 actor is a 4x4 or 8x8 student, too few units to walk (docs/student-size.md)."""
    from stable_baselines3.common.env_util import make_vec_env

    from policykd.students.build import auto_arch

    assert resolve_distill("Walker2d-v5").student_min_width == 32
    assert resolve_distill("CartPole-v1").student_min_width == 16
    walker = make_vec_env("Walker2d-v5", n_envs=1)
    budget = int(0.05 * 6092)  # a 64x64 SAC actor on Walker2d
    assert auto_arch("sac", walker, budget, min_width=4) == (4, 4)
    assert auto_arch("sac", walker, budget, min_width=32) == (32, 32)
    assert auto_arch("sac", walker, 3674, min_width=32) == (44, 44)  # a fraction above the floor is kept


def test_a_run_saved_before_a_setting_existed_resumes_when_that_setting_is_at_its_default(tmp_path):
    """Upgrading policykd mid-run adds settings the saved config.json lacks: at their defaults they are what the saved
    run did, so it resumes; set to something else, it is another run and is refused."""
    import json

    from policykd.run.checkpoint import _settings_differing
    from policykd.settings import DistillSettings

    settings = DistillSettings(env_id="CartPole-v1", out=str(tmp_path))
    saved = settings.to_dict()
    del saved["weighting"], saved["rl_steps"]  # as a run written by an older policykd
    (tmp_path / "config.json").write_text(json.dumps(saved))
    assert _settings_differing(tmp_path, settings) == []
    changed = DistillSettings(env_id="CartPole-v1", out=str(tmp_path), weighting="kl")
    assert _settings_differing(tmp_path, changed) == ["weighting"]
