"""policykd sweep: a real local Ray runs CartPole trials; retries after a killed worker; resume; bad input; the search;
the library call twice in one interpreter; trials with RL ranked by their result after RL."""

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
from policykd.fields import build
from policykd.rollouts import return_ratio
from policykd.settings import SweepSettings
from policykd.sweeps.run import plan_sweep
from policykd.sweeps.search import smallest_passing

TINY = ["--steps", "4000", "--rounds", "4", "--epochs", "2", "--eval-episodes", "2"]  # distill's flags: every trial's
SWEEP = ["sweep", "--env", "CartPole-v1", "--grid", "student-width=8,16", *TINY, "--quiet"]


def _rows(out: Path) -> list[dict]:
    with open(out / "sweep.csv") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def swept_cli(tmp_path_factory) -> tuple[Path, str, str]:
    """Two CartPole trials on a local Ray; one trial's worker is killed (-9) once its run has a checkpoint. The sweep's
    folder, and what the command printed (stdout, stderr)."""
    out = tmp_path_factory.mktemp("sweep") / "cartpole"
    proc = subprocess.Popen(
        [sys.executable, "-m", "policykd.cli", *SWEEP, "--out", str(out)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
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
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr[-3000:]
    return out, stdout, stderr


@pytest.fixture(scope="module")
def swept(swept_cli) -> Path:
    return swept_cli[0]


def test_two_widths_are_two_trials_with_run_folders_a_csv_and_a_pareto_figure(swept):
    rows = _rows(swept)
    assert [r["student_arch"] for r in rows] == ["8x8", "16x16"] and {r["status"] for r in rows} == {"finished"}
    assert [r["trial"] for r in rows] == ["student_arch=8x8_seed=0", "student_arch=16x16_seed=0"]  # fixed: not named
    for row in rows:
        folder = Path(row["folder"])
        assert (
            folder.parent == swept / "trials" and (folder / "student.zip").exists() and list((folder / "tb").iterdir())
        )
        summary = json.loads((folder / "summary.json").read_text())
        assert (
            summary["config"]["steps"] == 4000 and summary["config"]["epochs"] == 2
        )  # --steps, --epochs: every trial's
        assert summary["config"]["learning_rate"] == 0.001 and summary["env_steps"] == 4000  # the preset, as distill's
        assert float(row["return_ratio"]) == pytest.approx(
            return_ratio(summary["student_return_mean"], summary["teacher_return_mean"])
        )
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


@pytest.mark.parametrize(
    "grid, given, fixed, message",
    [
        (["foo=1,2"], {}, {}, "grid='foo=1,2': unknown distill setting 'foo'"),
        (["steps=abc"], {}, {}, "grid='steps=abc': 'abc' is not an int"),
        (["steps="], {}, {}, "grid='steps=': no values given"),
        (["student-width=8,,16"], {}, {}, "grid='student-width=8,,16': an empty value between commas"),
        (["student-width=8,16,"], {}, {}, "grid='student-width=8,16,': an empty value between commas"),
        (["seed=1,2"], {}, {}, "grid='seed=1,2': not a grid key: trials run seeds 0..N-1"),
        ([], {}, {}, "nothing to sweep"),
        (["loss=kl,bogus"], {}, {}, "trial loss=bogus: unknown loss 'bogus'"),
        (["student-width=8"], {"target": 2}, {}, "must be within (0, 1.5]"),
        (["student-width=8"], {"target": 0}, {}, "must be within (0, 1.5]"),
        (
            ["student-width=8,16", "steps=100,200"],
            {"target": 0.9},
            {},
            "target=0.9 searches the student size only: give steps one value",
        ),
        # distill's own settings, fixed for every trial (`steps=4000`)
        (["steps=100,200"], {}, {"steps": 4000}, "grid='steps=100,200' and steps=4000 both set steps: give it once"),
        (["student-width=8,16"], {}, {"student_arch": [8, 8]}, "and student_arch=[8, 8] both set student_arch"),
        (["student-width=8"], {}, {"seed": 1}, "seed=1: not a setting of the sweep's trials: trials run seeds 0..N-1"),
        (["student-width=8"], {}, {"stepz": 1}, "stepz=1: unknown setting"),
        (["student-width=8"], {}, {"steps": -1}, "trial student_arch=8x8: "),
        (
            [],
            {"target": 0.9},
            {"student_arch": (8, 8)},
            "target=0.9 searches the student size: give the sizes in the grid",
        ),
    ],
)
def test_bad_input_is_one_line_in_the_callers_words_before_any_trial(grid, given, fixed, message, tmp_path):
    settings = {"env_id": "CartPole-v1", "out": str(tmp_path / "s"), "grid": tuple(grid), **given}
    with pytest.raises(PolicykdError) as err:
        plan_sweep(build(SweepSettings, settings), fixed)
    assert message in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "s").exists()


def test_fixed_values_are_typed_as_distill_types_them_and_reach_every_trial(tmp_path):
    plan = plan_sweep(
        build(SweepSettings, {"env_id": "CartPole-v1", "grid": ("student-width=8,16",), "out": str(tmp_path)}),
        {"steps": 4000, "teacher_weights": [1.0]},
    )
    assert plan.fixed == {"steps": 4000, "teacher_weights": (1.0,)}
    assert [c.label for c in plan.combos] == ["student_arch=8x8", "student_arch=16x16"]


def test_a_distill_flag_given_in_the_grid_too_is_one_line_in_flags_and_exit_2(tmp_path):
    done = run_cli(
        "sweep", "--env", "CartPole-v1", "--grid", "steps=100,200", "--steps", "4000", "--out", str(tmp_path / "s")
    )
    assert done.returncode == 2 and done.stderr.strip().count("\n") == 0, done.stderr
    assert "--grid steps=100,200 and --steps 4000 both set steps" in done.stderr
    assert not (tmp_path / "s").exists()


def test_an_address_that_does_not_answer_is_one_line_and_exit_2_within_seconds(tmp_path):
    start = time.time()
    done = run_cli(
        "sweep",
        "--env",
        "CartPole-v1",
        "--grid",
        "student-width=8",
        "--address",
        "127.0.0.1:9",
        "--out",
        str(tmp_path / "s"),
    )
    assert done.returncode == 2 and time.time() - start < 30
    assert done.stderr.strip().count("\n") == 0 and "no Ray cluster answers" in done.stderr
    assert not (tmp_path / "s").exists()


# --target: the bisection itself, on a table of return ratios (the trials are tested above).
SIZES = [(w, w) for w in (4, 8, 16, 32, 64, 128, 256)]


def _table(ratios: dict[int, list[float]]):
    ran = []

    def run_seeds(arch, seeds):
        ran.extend((arch[0], s) for s in seeds)
        return [ratios[arch[0]][s] for s in seeds]

    return run_seeds, ran


def test_search_finds_the_smallest_passing_size_with_half_the_grids_trials():
    ratios = {
        4: [0.2] * 3,
        8: [0.5] * 3,
        16: [0.9, 0.95, 0.97],
        32: [0.99, 1.0, 1.0],
        64: [1.0] * 3,
        128: [1.0] * 3,
        256: [1.0] * 3,
    }
    run_seeds, ran = _table(ratios)
    search = smallest_passing(SIZES, 3, 0.95, 0.1, run_seeds)
    assert search.answer == (32, 32)  # 16's first seed is within the margin; its mean over 3 seeds, 0.94, fails
    assert [p.arch[0] for p in search.probes] == [32, 8, 16] and [len(p.ratios) for p in search.probes] == [3, 1, 3]
    assert len(ran) == len(set(ran)) and search.trials == len(ran) <= len(SIZES) * 3 / 2


def test_search_confirms_a_one_seed_pass_with_every_seed_and_moves_up_when_the_mean_fails():
    ratios = {
        4: [0.0] * 3,
        8: [0.0] * 3,
        16: [0.0] * 3,
        32: [1.2, 0.5, 0.5],
        64: [1.0] * 3,
        128: [1.0] * 3,
        256: [1.0] * 3,
    }
    run_seeds, ran = _table(ratios)
    search = smallest_passing(SIZES, 3, 0.9, 0.1, run_seeds)
    assert search.answer == (64, 64)
    assert {(32, 1), (32, 2), (64, 0), (64, 1), (64, 2)} <= set(ran)


def test_search_says_none_when_no_size_passes():
    run_seeds, _ = _table({w: [0.1] * 2 for w in (4, 8, 16, 32, 64, 128, 256)})
    assert smallest_passing(SIZES, 2, 0.99, 0.1, run_seeds).answer is None


def test_without_ray_the_sweep_says_how_to_install_it(tmp_path):
    code = (
        "import sys; sys.modules['ray'] = None; sys.argv = ['policykd', 'sweep', '--env', 'CartPole-v1', "
        f"'--grid', 'student-width=8', '--out', {str(tmp_path / 's')!r}]; from policykd.cli.main import main; sys.exit(main())"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "pip install 'policykd[ray]'" in done.stderr


def test_a_trial_is_hopeless_only_against_the_target_late_in_its_run():
    from policykd.sweeps.tuner import Hopeless

    stop = Hopeless(target=0.99, margin=0.1)  # stops below 0.69 after half the env steps, never the final report
    assert stop("t", {"final": False, "fraction_done": 0.5, "return_ratio": 0.6})
    assert not stop("t", {"final": False, "fraction_done": 0.4, "return_ratio": 0.0})
    assert not stop("t", {"final": False, "fraction_done": 0.9, "return_ratio": 0.7})
    assert not stop("t", {"final": True, "fraction_done": 1.0, "return_ratio": 0.0})


def test_a_trials_result_is_the_projects_return_ratio_with_every_env_step_rl_included():
    from policykd.sweeps.trial import _result

    metrics = _result(
        {"student_return_mean": -300.0, "teacher_return_mean": -150.0, "env_steps": 1000, "rl": {"rl_steps": 512}}
    )  # Pendulum-like: twice the teacher's cost is 0, not 2
    assert metrics["return_ratio"] == return_ratio(-300.0, -150.0) == 0.0
    assert metrics["env_steps"] == 1512 and metrics["final"] is True


def test_a_finished_trial_from_before_a_setting_was_added_is_the_same_run(tmp_path):
    """A summary.json written before a setting existed has no value for it: the run behaved as its default does."""
    from dataclasses import replace

    from policykd.presets import resolve_distill
    from policykd.run.folder import RunFolder
    from policykd.sweeps.trial import _finished_alike

    settings = resolve_distill("CartPole-v1", out=str(tmp_path), quiet=True)
    config = settings.to_dict()
    del config["rl_temperature"]
    (tmp_path / "summary.json").write_text(json.dumps({"config": config}))
    assert _finished_alike(RunFolder(tmp_path), settings)
    with pytest.raises(PolicykdError, match=r"other settings \(rl_temperature\)"):
        _finished_alike(RunFolder(tmp_path), replace(settings, rl_temperature=2.0))


def test_quiet_prints_the_files_written_and_nothing_of_tunes(swept_cli):
    """Nothing of Tune's own output (its experiment box, result paths, trial tables) and the files written last. Ray's
    news of the worker this test killed may come before them: Ray prints a dead worker's error to stdout itself."""
    out, stdout, stderr = swept_cli
    assert stdout.splitlines()[-3:] == [str(out.resolve() / name) for name in ("sweep.csv", "sweep.md", "pareto.png")]
    for tune_says in ("Configuration for experiment", "View detailed results", "Trial status", "╭"):
        assert tune_says not in stdout + stderr


# The library: `policykd.sweep` twice in one interpreter, trials with RL after distillation and RL from scratch.
RL = dict(student_arch=(8, 8), steps=1000, rounds=1, epochs=1, eval_episodes=2, rl_steps=512, quiet=True)
RL["rl_critic_warmup"] = 0  # the default warm-up would take the first of these two 256-step segments


@pytest.fixture(scope="module")
def rl_sweeps(tmp_path_factory):
    """A grid of RL continuing the distilled student and RL from scratch, as a library call, then the same call again
    in this interpreter (it resumes: nothing runs again)."""
    import policykd

    out = str(tmp_path_factory.mktemp("rl-sweep") / "grid")
    first = policykd.sweep("CartPole-v1", ["rl-start=distilled,scratch"], out=out, **RL)
    return first, policykd.sweep("CartPole-v1", ["rl-start=distilled,scratch"], out=out, **RL)


def _summary(row: dict) -> dict:
    return json.loads((Path(row["folder"]) / "summary.json").read_text())


def _reports(result, row: dict) -> list[dict]:
    """What the trial reported to Tune, as Tune stored it (the search ranks trials by the last one)."""
    path = result.out / "tune" / "grid" / row["trial"] / "result.json"
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_the_library_sweep_is_callable_twice_in_one_interpreter(rl_sweeps):
    import policykd
    import policykd.api
    import policykd.sweeps.run  # noqa: F401  (importing the package used to rebind policykd.sweep to it)

    first, again = rl_sweeps
    assert callable(policykd.sweep) and policykd.sweep is policykd.api.sweep
    assert [(r["trial"], r["return_ratio"], r["starts"]) for r in again.rows] == [
        (r["trial"], r["return_ratio"], r["starts"]) for r in first.rows
    ]


def test_trials_with_rl_finish_and_report_their_return_after_rl_even_from_scratch(rl_sweeps):
    result, _ = rl_sweeps
    assert [(r["settings"], r["status"]) for r in result.rows] == [
        ("rl_start=distilled", "finished"),
        ("rl_start=scratch", "finished"),
    ]
    for row in result.rows:
        summary = _summary(row)
        ratio = return_ratio(summary["rl"]["return_after_rl"], summary["teacher_return_mean"])
        assert (
            summary["config"]["rl_steps"] == 512 and summary["student_return_mean"] == summary["rl"]["return_after_rl"]
        )
        assert row["return_ratio"] == pytest.approx(ratio)
        assert row["env_steps"] == summary["env_steps"] + summary["rl"]["rl_steps"]
        last = _reports(result, row)[-1]
        assert last["final"] is True and last["return_ratio"] == pytest.approx(ratio)
    distilled = _summary(result.rows[0])["rl"]
    assert distilled["return_before_rl"] != distilled["return_after_rl"]  # else this could not tell the two apart
