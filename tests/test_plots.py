"""curves.png and comparison figures, drawn from run folders that the real CLI wrote.

Three tiny CartPole runs (a few seconds each): two online students of different sizes with two
evaluations each, and one offline run from a recorded dataset with a single evaluation, whose
x-axis has to fall back to gradient steps.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.image import imread

from policykd.errors import PolicykdError
from policykd.report.compare import _size_panel, plot_benchmark, plot_runs
from policykd.report.plots import Series, curves_figure, load_run, write_curves
from policykd.run.console import tensorboard_logger

TEACHER = REPO / "src/policykd/resources/agents/cartpole-ppo-v1/cartpole_ppo_v1.zip"
TINY = ("--env", "CartPole-v1", "--epochs", "2", "--eval-episodes", "2", "--seed", "0", "--quiet")


def _start(*args: str, env: dict | None = None) -> subprocess.Popen:
    """The real entry point, started; `_finish` waits for it."""
    return subprocess.Popen(
        [sys.executable, "-m", "policykd.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env=env,
    )


def _finish(*processes: subprocess.Popen) -> None:
    """Wait for each; a failure shows its stderr."""
    for process in processes:
        _, err = process.communicate(timeout=300)
        assert process.returncode == 0, f"{' '.join(process.args[3:])}\n{err[-2000:]}"


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """The three runs; the two online ones and the recording run at the same time (most of each
    is interpreter start-up), then the offline distillation of what was recorded."""
    root = tmp_path_factory.mktemp("plots")
    folders = {"8x8": root / "arch-8x8", "16x16": root / "arch-16x16", "offline": root / "offline"}
    env = {**os.environ, "MINARI_DATASETS_PATH": str(root / "minari")}
    online = [
        _start(
            "distill",
            *TINY,
            "--teacher",
            str(TEACHER),
            "--steps",
            "1600",
            "--rounds",
            "2",
            "--student-arch",
            arch,
            "--out",
            str(folders[arch.replace(",", "x")]),
        )
        for arch in ("8,8", "16,16")
    ]
    record = _start(
        "record",
        "--env",
        "CartPole-v1",
        "--teacher",
        str(TEACHER),
        "--episodes",
        "2",
        "--dataset",
        "plots/teacher-v0",
        "--quiet",
        env=env,
    )
    _finish(record)
    offline = _start(
        "distill",
        *TINY,
        "--dataset",
        "plots/teacher-v0",
        "--rounds",
        "1",
        "--student-arch",
        "8,8",
        "--out",
        str(folders["offline"]),
        env=env,
    )
    _finish(*online, offline)
    return folders


def _png(path: Path) -> np.ndarray:
    """The image as matplotlib reads it back (a PNG it cannot parse fails here)."""
    assert path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return imread(path)


def _assert_drawn(image: np.ndarray, width: int, height: int) -> None:
    assert image.shape[:2] == (height, width)
    rgb = image[..., :3].reshape(-1, 3)
    assert rgb.std() > 0.05  # not a blank canvas
    assert len(np.unique((rgb * 255).astype(np.uint8), axis=0)) > 50  # curves, bands, text in several colours


def test_load_run_reads_evaluations_and_tensorboard_scalars(runs):
    run = load_run(runs["8x8"])
    summary = json.loads((runs["8x8"] / "summary.json").read_text())
    assert run.x.tolist() == [e["env_steps"] for e in summary["evals"]] == [800, 1600]
    assert run.mean.tolist() == [e["student_return_mean"] for e in summary["evals"]]
    assert np.isfinite(run.std).all()  # from the eval entries, else from eval/student_return_std
    for tag in ("train/loss", "train/kl", "train/action_agreement", "eval/student_return"):
        assert run.scalars[tag].steps.tolist() == [800, 1600], tag  # one point per round, on env steps
    assert not run.offline and run.x_label == "env steps"


def test_every_distill_run_writes_its_curves(runs):
    for folder in runs.values():
        _assert_drawn(_png(folder / "curves.png"), 800, 800)


def test_write_curves_draws_one_run(runs):
    path = write_curves(runs["8x8"])
    assert path == runs["8x8"] / "curves.png"
    _assert_drawn(_png(path), 800, 800)


def test_write_curves_of_an_offline_run_with_one_evaluation_uses_gradient_steps(runs, tmp_path):
    run = load_run(runs["offline"])
    summary = run.summary
    assert summary["env_steps"] == 0 and run.offline and len(run.x) == 1
    assert run.x.tolist() == [summary["gradient_steps"]]
    assert run.scalars["train/loss"].steps.tolist() == [summary["gradient_steps"]]
    _assert_drawn(_png(write_curves(runs["offline"], tmp_path / "elsewhere" / "offline.png")), 800, 800)


def test_plot_runs_compares_student_sizes(runs, tmp_path):
    path = plot_runs([runs["8x8"], runs["16x16"]], tmp_path / "sizes.png", labels=["8,8", "16,16"])
    _assert_drawn(_png(path), 1200, 800)  # the sizes differ: a third panel, return vs params
    same = plot_runs([runs["8x8"]], tmp_path / "one.png")
    _assert_drawn(_png(same), 1000, 800)


def test_plot_benchmark_skips_failed_rows_and_groups_by_env(runs, tmp_path):
    failed = tmp_path / "failed-row"
    failed.mkdir()
    paths = plot_benchmark([runs["8x8"], runs["16x16"], failed], tmp_path / "bench", "sizes")
    assert paths == [tmp_path / "bench" / "sizes.png"]
    _assert_drawn(_png(paths[0]), 1200, 800)


def test_bad_input_is_refused_in_one_line(runs, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(PolicykdError, match=r"is not a finished policykd run folder \(no summary.json"):
        write_curves(empty)
    with pytest.raises(PolicykdError, match="is not a folder"):
        plot_runs([tmp_path / "missing"], tmp_path / "x.png")
    with pytest.raises(PolicykdError, match="1 labels for 2 run folders"):
        plot_runs([runs["8x8"], runs["16x16"]], tmp_path / "x.png", labels=["a"])
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "summary.json").write_text('{"env_id": "CartPole-v1"')
    with pytest.raises(PolicykdError, match="is not valid JSON"):
        write_curves(broken)
    (broken / "summary.json").write_text('{"env_id": "CartPole-v1"}')
    with pytest.raises(PolicykdError, match="lacks env_steps"):
        write_curves(broken)
    other = tmp_path / "other-env"
    other.mkdir()
    summary = json.loads((runs["8x8"] / "summary.json").read_text())
    (other / "summary.json").write_text(json.dumps({**summary, "env_id": "Acrobot-v1"}))
    with pytest.raises(PolicykdError, match=r"different envs \(Acrobot-v1, CartPole-v1\)"):
        plot_runs([runs["8x8"], other], tmp_path / "x.png")
    with pytest.raises(PolicykdError, match="no run folders"):
        plot_runs([], tmp_path / "x.png")


def _drawn(run) -> Figure:
    """curves.png's figure, laid out as it is saved (tick labels and limits final)."""
    fig = curves_figure(run)
    FigureCanvasAgg(fig).draw()
    return fig


def test_the_title_names_the_env_once(runs, tmp_path):
    named_after_env = tmp_path / "CartPole-v1"  # the default folder, runs/<env>
    shutil.copytree(runs["8x8"], named_after_env)
    title = _drawn(load_run(named_after_env)).get_suptitle()
    assert title.startswith("CartPole-v1  (1,600 env steps") and title.count("CartPole-v1") == 1
    assert _drawn(load_run(runs["8x8"])).get_suptitle().startswith("CartPole-v1: arch-8x8  (")


def test_the_gradient_axis_marks_only_gradient_steps_the_run_reached(runs):
    """Each tick of the top axis sits at env steps the run reached and reads the gradient steps it had done there;
    the last reads the run's total (a scale drawn between or past the evaluations would read counts it never had)."""
    summary = json.loads((runs["8x8"] / "summary.json").read_text())
    fig = _drawn(load_run(runs["8x8"]))
    (axis,) = fig.axes[0].child_axes
    lo, hi = axis.get_xlim()
    ticks = [(t.get_position()[0], t.get_text()) for t in axis.get_xticklabels() if lo <= t.get_position()[0] <= hi]
    assert ticks == [(0, "0")] + [(e["env_steps"], f"{e['gradient_steps']:,}") for e in summary["evals"]]
    assert ticks[-1][1] == f"{summary['gradient_steps']:,}"


def _loss_lines(run) -> list[tuple[str, str]]:
    return [(line.get_label(), line.get_linestyle()) for line in _drawn(run).axes[1].get_lines()]


def test_the_total_loss_is_drawn_on_top_or_said_to_equal_its_one_part(runs):
    run = load_run(runs["8x8"])
    assert _loss_lines(run) == [("train/policy_loss", "-"), ("train/value_loss", "-"), ("train/loss", "--")]
    policy = run.scalars["train/policy_loss"]
    no_value = {**run.scalars, "train/loss": policy, "train/value_loss": Series(policy.steps, 0 * policy.values)}
    assert _loss_lines(dataclasses.replace(run, scalars=no_value)) == [
        ("train/loss (= train/policy_loss: no value term)", "--")
    ]  # a SAC student: no value loss


def test_action_agreement_says_what_it_counts(runs):
    run = load_run(runs["8x8"])
    assert run.continuous is False  # CartPole's Discrete(2), read from student.zip
    label = _drawn(run).axes[-1].get_ylabel()
    assert label == "action agreement\n(the same action)"
    label = _drawn(dataclasses.replace(run, continuous=True)).axes[-1].get_ylabel()
    assert label == "action agreement\n(every dim within\n5 % of its range)"  # AGREEMENT_TOLERANCE = 0.05


def test_the_size_panel_shows_the_return_ratio_of_negative_returns(runs):
    """A student at -300 against a teacher at -150 is 0 % (1 + (s - t)/|t|), not the 200 % of s / t."""
    runs_ = [load_run(runs["8x8"]), load_run(runs["16x16"])]
    runs_ = [
        dataclasses.replace(
            r,
            summary={
                **r.summary,
                "teacher_return_mean": -150.0,
                "teacher_return_std": 0.0,
                "student_return_mean": s,
                "student_return_std": 15.0,
            },
        )
        for r, s in zip(runs_, (-300.0, -150.0))
    ]
    ax = Figure().subplots()
    _size_panel(ax, runs_, ["8,8", "16,16"], ["tab:blue", "tab:red"])
    points = [line.get_ydata()[0] for line in ax.get_lines() if line.get_marker() == "o"]
    assert points == pytest.approx([0.0, 100.0])
    assert ax.get_ylabel() == "return ratio to teacher (%)"


def test_rl_continuation_scalars_stay_out_of_the_distillation_curves(runs, tmp_path):
    """RL continuation's SB3 model logs its own train/loss to tb/rl on RL env steps; read with the distillation's, it
    stretched the x-axis (and the gradient axis with it) far past the run's last evaluation."""
    folder = tmp_path / "with-rl"
    shutil.copytree(runs["8x8"], folder)
    logger = tensorboard_logger(folder / "tb" / "rl")
    logger.record("train/loss", 7.0)
    logger.dump(5000)
    logger.close()
    run = load_run(folder)
    assert run.scalars["train/loss"].steps.tolist() == [800, 1600]
    assert _drawn(run).axes[1].get_xlim()[1] < 2000
