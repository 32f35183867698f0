"""What a run prints where nobody watches it live: a file, a CI log (not a terminal, 80 columns).

A tiny CartPole distillation in-process, its console a StringIO: the output a user greps or copies from has every
path whole, the TensorBoard command on one line, the wall-clock with its unit, and a resumed run says so.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from conftest import REPO
from rich.console import Console

from policykd.api import distill_with
from policykd.run.console import duration, plus_minus
from policykd.run.state import Evaluation
from policykd.settings import DistillSettings

TEACHER = REPO / "src/policykd/resources/agents/cartpole-ppo-v1/cartpole_ppo_v1.zip"


def _settings(out: Path) -> DistillSettings:
    return DistillSettings(
        env_id="CartPole-v1",
        teachers=(str(TEACHER),),
        steps=800,
        rounds=2,
        epochs=1,
        eval_episodes=2,
        student_arch=(8, 8),
        seed=0,
        out=str(out),
    )


def _log() -> tuple[Console, io.StringIO]:
    """A console as a CI runner or `> run.log` gives one: not a terminal, 80 columns."""
    text = io.StringIO()
    console = Console(file=text, width=80)
    assert not console.is_terminal
    return console, text


def _stop_after_first_evaluation(evaluation: Evaluation, teacher: float, final: bool) -> None:
    """Ctrl-C right after the first evaluation's checkpoint: an unfinished run, left as an interrupt leaves it."""
    raise KeyboardInterrupt


def test_a_logged_run_keeps_paths_and_commands_whole(tmp_path):
    out = tmp_path / "runs" / "CartPole-v1-student-[8,8]-a-name-longer-than-a-column"  # [8,8]: not rich markup
    console, text = _log()
    distill_with(_settings(out), console=console)
    lines = text.getvalue().splitlines()
    assert not any("…" in line for line in lines)
    assert any(f"│ {TEACHER} " in line for line in lines)  # the teacher's path whole, in one row
    assert f"TensorBoard: tensorboard --logdir {out / 'tb'}" in lines
    assert f"student: {out / 'student.zip'}" in lines
    wall = next(line for line in lines if "wall-clock" in line)
    assert wall.split("│")[2].strip().endswith(" s")
    assert "resuming" not in text.getvalue()  # a fresh run


def test_a_resumed_run_says_it_resumes_and_from_where(tmp_path):
    out = tmp_path / "run"
    console, text = _log()
    with pytest.raises(KeyboardInterrupt):
        distill_with(_settings(out), console=console, on_evaluation=_stop_after_first_evaluation)
    assert "run the same command again to resume" in text.getvalue()
    console, text = _log()
    distill_with(_settings(out), console=console)
    assert text.getvalue().splitlines()[0] == f"resuming {out} from its checkpoint at 400 env steps"


@pytest.mark.parametrize(
    "seconds, text",
    [
        (0.52, "0.5 s"),
        (12.345, "12.3 s"),
        (123.4, "123.4 s (2 min 03 s)"),
        (7384.0, "7,384.0 s (2 h 03 min)"),
        (None, "-"),
    ],
)
def test_wall_clock_has_one_unit_and_one_decimal(seconds, text):
    assert duration(seconds) == text


@pytest.mark.parametrize(
    "mean, std, text",
    [
        (500.0, 0.0, "500.0 ± 0.0"),
        (-0.531, 0.1234, "-0.53 ± 0.12"),
        (123456.0, 3456.0, "1.23e+05 ± 3.46e+03"),
        (None, None, "-"),
    ],
)
def test_mean_and_std_share_the_means_precision(mean, std, text):
    assert plus_minus(mean, std) == text
