"""Teacher formats: what a teacher spec can name, and how each is found on disk (`policykd.registry.TEACHER_FORMATS`
lists them in the order they are tried; the first that claims a spec resolves it).

A format resolves a spec to the SB3 zip to load, the env it was trained on (when the files say), its rl-zoo config
(env wrapper, frame stack) and its VecNormalize statistics; loading the zip itself is the same for every format
(`policykd.teachers.load_teacher`). A new format (a model hub, another training library's folder) is one `Format`
in a new module and one registry line.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from policykd.errors import PolicykdError
from policykd.teachers.shipped import find_agent, read_card
from policykd.teachers.zoo import is_zoo_folder, read_zoo_run, resolve_zoo_spec


@dataclass(frozen=True)
class Resolved:
    """Where a teacher's files are."""

    zip_path: Path
    env_id: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    vecnormalize: Path | None = None


@dataclass(frozen=True)
class Format:
    claims: Callable[[str], bool]
    """Whether a spec is of this format (cheap: no loading)."""
    resolve: Callable[[str, str | Path | None], Resolved]
    """(spec, rl-zoo folder for zoo: specs) -> the files; a one-line PolicykdError when they are not there."""


def _path(spec: str) -> Path:
    return Path(spec).expanduser()


def _card_folder(folder: Path) -> Resolved:
    card = read_card(folder)
    return Resolved(card.model_path, card.env_id, {}, card.vecnormalize_path)


def _shipped(spec: str, zoo_folder: str | Path | None) -> Resolved:
    agent = find_agent(spec)
    assert agent is not None  # claimed
    return _card_folder(agent.folder)


def _zoo_run(spec: str, zoo_folder: str | Path | None) -> Resolved:
    path = resolve_zoo_spec(spec, zoo_folder) if spec.startswith("zoo:") else _path(spec)
    run = read_zoo_run(path)
    return Resolved(run.zip_path, run.env_name, run.config, run.vecnormalize)


def _zip(spec: str, zoo_folder: str | Path | None) -> Resolved:
    path = _path(spec)
    beside = path.with_name("vecnormalize.pkl")  # how policykd writes students
    return Resolved(path, None, _run_config(path.parent), beside if beside.is_file() else None)


def _run(spec: str, zoo_folder: str | Path | None) -> Resolved:
    return _zip(str(_path(spec) / "student.zip"), zoo_folder)


def _run_config(folder: Path) -> dict[str, Any]:
    """The rl-zoo config a distill run folder's zips are played with: its rl-zoo copy's (`<algo>/<ENV>_1/`), which
    names the teacher's env wrapper (TimeFeature, Atari's) and frame stack; empty for a folder without one. Without
    it a student of a TimeFeature-wrapped teacher is refused (17 observations, not 18)."""
    if not (folder / "student.zip").is_file():  # not a run folder
        return {}
    copy = next((c for c in sorted(folder.glob("*/*_1")) if c.is_dir() and is_zoo_folder(c)), None)
    return read_zoo_run(copy).config if copy else {}


def _folder(spec: str, zoo_folder: str | Path | None) -> Resolved:
    path = _path(spec)
    zips = sorted(path.glob("*.zip"))
    if len(zips) != 1:
        raise PolicykdError(f"teacher folder {path} is not an rl-zoo run folder and holds {len(zips)} zips, not one")
    return Resolved(zips[0])


def _is_name(spec: str) -> bool:
    return "/" not in spec and not spec.endswith(".zip") and find_agent(spec) is not None


shipped = Format(_is_name, _shipped)
zoo_spec = Format(lambda spec: spec.startswith("zoo:"), _zoo_run)
sb3_zip = Format(lambda spec: _path(spec).is_file(), _zip)
card = Format(lambda spec: (_path(spec) / "card.yaml").is_file(), lambda spec, _: _card_folder(_path(spec)))
zoo_folder = Format(lambda spec: _path(spec).is_dir() and is_zoo_folder(_path(spec)), _zoo_run)
run_folder = Format(lambda spec: (_path(spec) / "student.zip").is_file(), _run)
folder = Format(lambda spec: _path(spec).is_dir(), _folder)
