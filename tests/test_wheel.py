"""The package as a user installs it: a wheel, in a fresh venv, run from another folder.

Presets and shipped agents are package data; this proves a wheel carries them. The fresh venv
gets only the wheel (`--no-deps`); its dependencies come from this test's interpreter through a
path entry, which adds their folder to sys.path without running its .pth files, so the
editable install of the repository stays invisible there.
"""

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

from conftest import REPO

IGNORE = shutil.ignore_patterns(".git", ".venv*", "runs", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache")


def _run(args, cwd, timeout=600):
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, (args, result.stdout[-2000:], result.stderr[-3000:])
    return result


def test_wheel_in_a_fresh_venv_has_presets_and_shipped_teachers(tmp_path):
    """The built wheel, installed alone in a fresh venv and run from another folder, lists and uses its shipped teachers
    and presets (package data), not the repository's."""
    source = tmp_path / "src"
    shutil.copytree(REPO, source, ignore=IGNORE, symlinks=True)
    _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp_path / "dist"), str(source)],
        tmp_path,
    )
    (wheel,) = (tmp_path / "dist").glob("policykd-*.whl")

    env = tmp_path / "venv"
    venv.create(env, with_pip=False)
    python = env / "bin" / "python"
    site = Path(
        _run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp_path).stdout.strip()
    )
    (site / "parent-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--quiet", str(wheel)], tmp_path
    )

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = _run([str(python), "-c", "import policykd; print(policykd.__file__)"], elsewhere).stdout.strip()
    assert where.startswith(str(site)), where  # the wheel's copy, not the repository's
    teachers = _run([str(env / "bin" / "policykd"), "teachers"], elsewhere).stdout
    for name in ("cartpole-ppo-v1", "halfcheetah-sac-v5", "pong-ppo-v5"):
        assert name in teachers

    _run(
        [
            str(env / "bin" / "policykd"),
            "distill",
            "--env",
            "HalfCheetah-v5",
            "--steps",
            "2000",
            "--eval-episodes",
            "1",
            "--quiet",
        ],
        elsewhere,
    )
    summary = json.loads((elsewhere / "runs" / "HalfCheetah-v5" / "summary.json").read_text())
    assert summary["teachers"] == [str(site / "policykd" / "resources" / "agents" / "halfcheetah-sac-v5")]
    assert summary["config"]["rounds"] == 15 and summary["config"]["student_fraction"] == 0.05  # the MuJoCo preset
    assert summary["student_arch"] == [44, 44] and summary["env_steps"] == 2000
    assert (elsewhere / "runs" / "HalfCheetah-v5" / "curves.png").is_file()


def test_a_clone_named_policykd_on_sys_path_does_not_shadow_the_install(tmp_path):
    """Issue 30 item 7: with the clone's parent folder on sys.path (the working folder, or PYTHONPATH for a user's env
    module), the clone root `policykd/` was a namespace package that shadowed the editable install (flat layout).
    The src layout leaves nothing importable at the clone root."""
    (tmp_path / "policykd").symlink_to(REPO, target_is_directory=True)
    code = "import policykd; from policykd.envs import is_atari; print(callable(policykd.distill), policykd.__file__)"
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith("True") and "/src/policykd/__init__.py" in out.stdout
