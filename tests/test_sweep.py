"""policykd sweep: a real local Ray runs CartPole trials; retries after a killed worker; resume; bad input; the search."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, run_cli
from policykd.errors import PolicykdError
from policykd.settings import SweepSettings
from policykd.sweep.run import plan_sweep
from policykd.sweep.search import smallest_passing

TINY = ["--grid", "steps=4000", "--grid", "rounds=4", "--grid", "epochs=2", "--grid", "eval-episodes=2"]
SWEEP = ["sweep", "--env", "CartPole-v1", "--grid", "student-width=8,16", *TINY, "--quiet"]


def _rows(out: Path) -> list[dict]:
    with open(out / "sweep.csv") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def swept(tmp_path_factory) -> Path:
    """Two CartPole trials on a local Ray; one trial's worker is killed (-9) once its run has a checkpoint."""
    out = tmp_path_factory.mktemp("sweep") / "cartpole"
    proc = subprocess.Popen([sys.executable, "-m", "policykd.cli", *SWEEP, "--out", str(out)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not list(out.glob("trials/*/checkpoint.json")):
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        assert time.time() < deadline
        time.sleep(0.02)
    deadline = time.time() + 60
    while not _trial_workers(proc.pid):
        assert time.time() < deadline
        time.sleep(0.02)
    os.kill(_trial_workers(proc.pid)[0], signal.SIGKILL)
    _, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr[-3000:]
    return out


def test_two_widths_are_two_trials_with_run_folders_a_csv_and_a_pareto_figure(swept):
    rows = _rows(swept)
    assert [r["student_arch"] for r in rows] == ["8x8", "16x16"] and {r["status"] for r in rows} == {"finished"}
    for row in rows:
        folder = Path(row["folder"])
        assert folder.parent == swept / "trials" and (folder / "student.zip").exists() and list((folder / "tb").iterdir())
        summary = json.loads((folder / "summary.json").read_text())
        assert summary["config"]["steps"] == 4000 and summary["config"]["epochs"] == 2  # the grid's fixed values
        assert summary["config"]["learning_rate"] == 0.001 and summary["env_steps"] == 4000  # the preset, as distill's
        assert float(row["return_ratio"]) == pytest.approx(summary["student_return_mean"] / summary["teacher_return_mean"])
    assert int(rows[0]["student_params"]) < int(rows[1]["student_params"])
    assert (swept / "pareto.png").stat().st_size > 10_000 and "student_arch=16x16" in (swept / "sweep.md").read_text()


def test_a_trial_whose_worker_was_killed_was_retried_and_finished(swept):
    assert sorted(int(r["starts"]) for r in _rows(swept)) == [1, 2]  # the retry resumed its run: see test_resume.py


def test_rerunning_the_command_resumes_without_running_finished_trials_again(swept):
    first = _rows(swept)
    summaries = sorted((swept / "trials").glob("*/summary.json"))
    before = [p.stat().st_mtime_ns for p in summaries]
    done = run_cli(*SWEEP, "--out", str(swept), timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert [p.stat().st_mtime_ns for p in summaries] == before
    assert [(r["student_arch"], r["starts"]) for r in _rows(swept)] == [(r["student_arch"], r["starts"]) for r in first]


def _parent(pid: int) -> int:
    try:
        return int((Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def _descends_from(pid: int, ancestor: int) -> bool:
    while pid > 1:
        pid = _parent(pid)
        if pid == ancestor:
            return True
    return False


def _trial_workers(sweep_pid: int) -> list[int]:
    """Ray's worker processes running a trial (`ray::ImplicitFunc.train`) of the sweep started as `sweep_pid` (the
    local Ray it starts is its descendant), not those of any other Ray on the machine."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and b"ImplicitFunc" in (proc / "cmdline").read_bytes():
                pids.append(int(proc.name))
        except OSError:
            continue
    return [pid for pid in pids if _descends_from(pid, sweep_pid)]


@pytest.mark.parametrize("args, message", [
    (["--grid", "foo=1,2"], "--grid foo: unknown distill setting"),
    (["--grid", "steps=abc"], "--grid steps: 'abc' is not an int"),
    (["--grid", "steps="], "--grid steps: no values given"),
    ([], "nothing to sweep"),
    (["--grid", "loss=kl,bogus"], "unknown loss 'bogus'"),
    (["--grid", "student-width=8", "--target", "2"], "--target must be within (0, 1.5]"),
    (["--grid", "student-width=8", "--target", "0"], "--target must be within (0, 1.5]"),
    (["--grid", "student-width=8,16", "--grid", "steps=100,200", "--target", "0.9"], "give steps one value"),
])
def test_bad_input_is_one_line_before_any_trial(args, message, tmp_path):
    values = {"env_id": "CartPole-v1", "out": str(tmp_path / "s")}
    with pytest.raises(PolicykdError, match=None) as err:
        from policykd.fields import build

        plan_sweep(build(SweepSettings, {**values, **_as_fields(args)}))
    assert message in str(err.value)
    assert not (tmp_path / "s").exists()


def test_an_address_that_does_not_answer_is_one_line_and_exit_2_within_seconds(tmp_path):
    start = time.time()
    done = run_cli("sweep", "--env", "CartPole-v1", "--grid", "student-width=8", "--address", "127.0.0.1:9",
                   "--out", str(tmp_path / "s"))
    assert done.returncode == 2 and time.time() - start < 30
    assert done.stderr.strip().count("\n") == 0 and "no Ray cluster answers" in done.stderr
    assert not (tmp_path / "s").exists()


def _as_fields(args: list[str]) -> dict:
    values: dict = {"grid": ()}
    for flag, value in zip(args[::2], args[1::2]):
        if flag == "--grid":
            values["grid"] += (value,)
        else:
            values[flag.removeprefix("--")] = float(value)
    return values


# --target: the bisection itself, on a table of return ratios (the trials are tested above).
SIZES = [(w, w) for w in (4, 8, 16, 32, 64, 128, 256)]


def _table(ratios: dict[int, list[float]]):
    ran = []

    def run_seeds(arch, seeds):
        ran.extend((arch[0], s) for s in seeds)
        return [ratios[arch[0]][s] for s in seeds]

    return run_seeds, ran


def test_search_finds_the_smallest_passing_size_with_half_the_grids_trials():
    ratios = {4: [0.2] * 3, 8: [0.5] * 3, 16: [0.9, 0.95, 0.97], 32: [0.99, 1.0, 1.0], 64: [1.0] * 3, 128: [1.0] * 3,
              256: [1.0] * 3}
    run_seeds, ran = _table(ratios)
    search = smallest_passing(SIZES, 3, 0.95, 0.1, run_seeds)
    assert search.answer == (32, 32)  # 16's first seed is within the margin; its mean over 3 seeds, 0.94, fails
    assert [p.arch[0] for p in search.probes] == [32, 8, 16] and [len(p.ratios) for p in search.probes] == [3, 1, 3]
    assert len(ran) == len(set(ran)) and search.trials == len(ran) <= len(SIZES) * 3 / 2


def test_search_confirms_a_one_seed_pass_with_every_seed_and_moves_up_when_the_mean_fails():
    ratios = {4: [0.0] * 3, 8: [0.0] * 3, 16: [0.0] * 3, 32: [1.2, 0.5, 0.5], 64: [1.0] * 3, 128: [1.0] * 3,
              256: [1.0] * 3}
    run_seeds, ran = _table(ratios)
    search = smallest_passing(SIZES, 3, 0.9, 0.1, run_seeds)
    assert search.answer == (64, 64)
    assert {(32, 1), (32, 2), (64, 0), (64, 1), (64, 2)} <= set(ran)


def test_search_says_none_when_no_size_passes():
    run_seeds, _ = _table({w: [0.1] * 2 for w in (4, 8, 16, 32, 64, 128, 256)})
    assert smallest_passing(SIZES, 2, 0.99, 0.1, run_seeds).answer is None


def test_without_ray_the_sweep_says_how_to_install_it(tmp_path):
    code = ("import sys; sys.modules['ray'] = None; sys.argv = ['policykd', 'sweep', '--env', 'CartPole-v1', "
            f"'--grid', 'student-width=8', '--out', {str(tmp_path / 's')!r}]; from policykd.cli.main import main; main()")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "pip install 'policykd[ray]'" in done.stderr


def test_a_trial_is_hopeless_only_against_the_target_late_in_its_run_and_ratios_survive_negative_returns():
    from policykd.sweep.trial import relative_return
    from policykd.sweep.tuner import Hopeless

    stop = Hopeless(target=0.99, margin=0.1)  # stops below 0.69 after half the env steps, never the final report
    assert stop("t", {"final": False, "fraction_done": 0.5, "return_ratio": 0.6})
    assert not stop("t", {"final": False, "fraction_done": 0.4, "return_ratio": 0.0})
    assert not stop("t", {"final": False, "fraction_done": 0.9, "return_ratio": 0.7})
    assert not stop("t", {"final": True, "fraction_done": 1.0, "return_ratio": 0.0})
    assert relative_return(450.0, 500.0) == pytest.approx(0.9)
    assert relative_return(-200.0, -150.0) < 1 < relative_return(-140.0, -150.0)  # Pendulum: closer to 0 is better
