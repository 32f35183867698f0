"""docs/extending.md's worked examples, run exactly as written: a loss and a teacher format added with one
`register` call each, then used through the library like the built-in ones."""

from __future__ import annotations

import re
import shutil
from importlib.resources import files
from pathlib import Path

import pytest

from policykd.registry import LOSSES, TEACHER_FORMATS

DOC = Path(__file__).resolve().parents[1] / "docs" / "extending.md"


def _blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)


@pytest.fixture
def registered():
    """Leave the registries as they were: other tests in this worker see only the built-in entries."""
    yield
    LOSSES.unregister("js")
    TEACHER_FORMATS.unregister("latest")


def test_the_worked_examples_run(tmp_path: Path, registered: None) -> None:
    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    shipped = files("policykd.resources") / "agents" / "cartpole-ppo-v1" / "cartpole_ppo_v1.zip"
    shutil.copyfile(str(shipped), checkpoints / "step-1000.zip")
    scope = {"OUT": tmp_path, "CHECKPOINTS": checkpoints}
    blocks = _blocks()
    assert len(blocks) == 4, "the doc's examples changed: update this test's expectations"
    for block in blocks:
        exec(compile(block, str(DOC), "exec"), scope)
    assert "js" in LOSSES and "latest" in TEACHER_FORMATS
    assert (tmp_path / "js" / "student.zip").is_file()


def test_unregistered_spec_is_one_line(registered: None) -> None:
    from policykd.errors import PolicykdError
    from policykd.teachers import load_teacher

    with pytest.raises(PolicykdError, match="teacher not found: latest:/nowhere"):
        load_teacher("latest:/nowhere", env_id="CartPole-v1")
