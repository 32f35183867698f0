"""Settings declared once: the CLI is generated from the dataclasses, and precedence is defaults < preset < flags."""

import json
import typing
from dataclasses import fields

import pytest
from conftest import run_cli

from policykd.cli.main import main
from policykd.errors import PolicykdError
from policykd.fields import field_choices, flag_of
from policykd.presets import preset_for, resolve_distill
from policykd.registry import LOSSES, PERTURBATIONS, STUDENT_FAMILIES, augmentations
from policykd.rollouts import collapsed_episodes
from policykd.settings import COMMANDS, DistillSettings, EvaluateSettings


def _choices(cls, name):
    f = next(f for f in fields(cls) if f.name == name)
    return field_choices(f, typing.get_type_hints(cls)[name])


def test_choices_are_read_from_the_registries_when_checked():
    """A loss registered after import is a valid `loss` (and listed); unregistered, the same value is refused."""
    assert _choices(DistillSettings, "loss") == LOSSES.names()
    assert _choices(DistillSettings, "student_algo") == STUDENT_FAMILIES.names()
    assert _choices(DistillSettings, "augment") == augmentations() and set(augmentations()) < set(PERTURBATIONS)
    assert _choices(EvaluateSettings, "perturb") == PERTURBATIONS.names()
    LOSSES.register("test_only_loss", lambda *a, **k: None, "a loss registered by a user", needs_distribution=False)
    try:
        assert DistillSettings(env_id="CartPole-v1", loss="test_only_loss").loss == "test_only_loss"
        assert "test_only_loss" in _choices(DistillSettings, "loss")
    finally:
        LOSSES.unregister("test_only_loss")
    with pytest.raises(PolicykdError, match="unknown loss 'test_only_loss': choose from kl, "):
        DistillSettings(env_id="CartPole-v1", loss="test_only_loss")
    with pytest.raises(PolicykdError, match="unknown name 'pgd', choose from obs-noise, fgsm"):
        DistillSettings(env_id="CartPole-v1", augment=("pgd=0.1",))  # pgd perturbs evaluations, it does not augment
    with pytest.raises(PolicykdError, match="at most 1"):
        EvaluateSettings(env_id="CartPole-v1", model="m.zip", perturb=("sticky=2",))


def _help(command, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # rich cuts long option names in a narrow terminal
    assert main([command, "--help"]) == 0
    return " ".join(capsys.readouterr().out.split())


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_field_is_an_option_with_its_docstring(command, capsys, monkeypatch):
    """One field, one option: its flag is in --help; flags show no type, arguments their names, choices their
    registry's names."""
    help_text = _help(command, capsys, monkeypatch)
    for f in fields(COMMANDS[command]):
        assert (f.name.upper() if f.metadata.get("positional") else flag_of(f)) in help_text, (command, f.name)
    assert "<bool>" not in help_text and "{" not in help_text.split("Usage:")[1].split("╭")[0]


def test_help_lists_registered_choices_and_the_right_docs(capsys, monkeypatch):
    distill = _help("distill", capsys, monkeypatch)
    assert "<obs-noise|fgsm>=SIZE" in distill
    algo_help = " ".join(distill.split("--student-algo")[1].split("--student-arch")[0].replace("│", " ").split())
    assert f"Choices: {', '.join(STUDENT_FAMILIES.names())}." in algo_help  # many choices: listed, not in the metavar
    loss_help = distill.split("--loss")[1].split("--temperature")[0]
    assert "Choices:" in loss_help and all(name in loss_help for name in LOSSES.names())
    assert "<onnx|c>" in _help("export", capsys, monkeypatch)
    prune = _help("prune", capsys, monkeypatch)
    assert "docs/prune.md" in prune and "docs/export.md" not in prune


def test_a_library_caller_reads_keywords_and_the_cli_reads_flags(capsys):
    """The same bad value: `steps=0` in Python is named `steps`, on the command line `--steps`."""
    with pytest.raises(PolicykdError) as python_error:
        DistillSettings(env_id="CartPole-v1", steps=0)
    assert str(python_error.value) == "steps must be positive, got 0"
    assert main(["distill", "--env", "CartPole-v1", "--steps", "0"]) == 2
    assert capsys.readouterr().err.strip() == "error: --steps must be positive, got 0"
    with pytest.raises(PolicykdError, match=r"^rl_start='scratch' needs rl_steps > 0"):
        DistillSettings(env_id="CartPole-v1", rl_start="scratch")  # the CLI spelling did not leak out of main()


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
    result = run_cli(
        "distill",
        "--env",
        "CartPole-v1",
        "--steps",
        "800",
        "--rounds",
        "1",
        "--eval-episodes",
        "1",
        "--student-arch",
        "8,8",
        "--greedy-actions",
        "--quiet",
        "--out",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    config = json.loads((out / "config.json").read_text())
    assert config["steps"] == 800 and config["student_arch"] == [8, 8] and config["sample_actions"] is False
    assert config["epochs"] == 20  # from the classic-control preset
    assert config["teachers"] == [] and json.loads((out / "summary.json").read_text())["config"] == config


@pytest.mark.parametrize(
    "args, message",
    [
        (["--student-arch", "64,x"], "--student-arch must be comma-separated ints like 64,64, got '64,x'"),
        (["--teacher-weights", "1,-1"], "--teacher-weights must be non-negative, got 1.0,-1.0"),
        (["--driver", "robot"], "unknown driver 'robot': choose from teacher, student, dagger"),
        (["--alpha", "1.5"], "--alpha must be within [0, 1], got 1.5"),
    ],
)
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


@pytest.mark.parametrize(
    "teacher_params, arch, why",
    [
        (73_484, (44, 44), "the widest within 5 % of the teacher's 73,484 acting parameters"),
        (6_092, (32, 32), "the width floor 32"),  # a 64x64 actor: the floor, a third of it
        (1_000, (16, 16), "the widest no larger than it"),  # the floor (2,028) would be twice the teacher
        (150, (), "a linear student"),  # a linear policy: no hidden layer fits
    ],
)
def test_the_default_student_is_never_larger_than_its_teacher(teacher_params, arch, why):
    """The width floor applies only where the teacher is larger than the floored student; below that the student
    is the widest no larger than the teacher, and a linear teacher gets a linear student (issue 35: an ARS linear
    HalfCheetah policy of 102 parameters got an 18x larger student)."""
    from stable_baselines3.common.env_util import make_vec_env

    from policykd.sb3_models import acting_params
    from policykd.students.build import build_student, default_size

    walker = make_vec_env("Walker2d-v5", n_envs=1)
    size = default_size("sac", walker, teacher_params, 0.05, min_width=32)
    assert size.arch == arch and why in size.reason, size
    if arch:  # a linear SAC actor has 216 parameters (mean and log-std heads): the smallest there is
        assert acting_params(build_student("sac", walker, size.arch, seed=0).policy) <= teacher_params
    # an LSTM student cannot be linear: the narrowest LSTM instead
    assert default_size("recurrent-ppo", walker, 10, 0.05, min_width=32).arch == (4,)


def test_a_linear_teacher_gets_a_linear_student_and_the_summary_says_why(tmp_path):
    """An ARS linear policy (102 parameters, no bias) is distilled into a linear TD3 actor: the smallest student SB3
    builds (108, its bias), never the floor's 32x32 (1,830)."""
    import json

    from sb3_contrib import ARS

    ARS("LinearPolicy", "HalfCheetah-v5", seed=0).save(tmp_path / "ars.zip")
    out = tmp_path / "run"
    result = run_cli(
        "distill",
        "--env",
        "HalfCheetah-v5",
        "--teacher",
        str(tmp_path / "ars.zip"),
        "--steps",
        "400",
        "--rounds",
        "1",
        "--eval-episodes",
        "1",
        "--out",
        str(out),
        "--quiet",
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["student_arch"] == [] and summary["teacher_params"] == 102 and summary["student_params"] == 108
    assert summary["student_size"].startswith("a linear student")
    assert summary["collapsed_episodes"] in (0, 1)


def test_a_collapse_is_an_episode_below_half_the_teachers_return_of_either_sign():
    """A walker that falls early scores under half its teacher; Pendulum's returns are negative, where half as good
    is 1.5x the teacher's cost, not half of it (`return_ratio`)."""
    assert collapsed_episodes([3000.0, 1600.0, 1499.0, -20.0], 3000.0) == 2
    assert collapsed_episodes([-150.0, -220.0, -230.0, -400.0], -150.0) == 2  # -230: 0.47 of the teacher
    assert collapsed_episodes([], 100.0) == 0


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


@pytest.mark.parametrize(
    "args, message",
    [
        (["distill", "--env", "CartPole-v1", "--bogus"], "No such option: --bogus"),
        (["distill", "--env", "CartPole-v1", "--steps", "x"], "Invalid value for '--steps'"),
        (["distill"], "Missing option '--env'"),
        (["nope"], "No such command 'nope'"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(args, message, capsys):
    """Typer's own parse errors (it vendors click: catching click's exceptions missed them, exit 1 and a traceback)."""
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and len(err.splitlines()) == 1, err
