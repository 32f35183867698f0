"""Per-environment presets, package data in `policykd/resources/envs/*.yaml` (the repository's `envs/`).

A preset file names the env ids it matches (shell patterns) and the DistillSettings values
that suit that family (student size, loss, budget, driver). Resolution is the one place where
precedence lives: the dataclass defaults < the env's preset < what the caller gives.
"""

from __future__ import annotations

import fnmatch
from pathlib import Path

import yaml

from policykd.envs import folder_name, split_env_id
from policykd.errors import PolicykdError
from policykd.fields import build, spelled
from policykd.resources import resource_path
from policykd.settings import DistillSettings
from policykd.settings.tasks import JOINT, MultiTaskSettings, TaskSettings, refuse_single_task, teachers_by_env

PRESETS_DIR = resource_path("envs")


def preset_for(env_id: str) -> dict[str, object]:
    """Settings of the first preset whose `match` patterns cover `env_id` (empty if none)."""
    for path in sorted(PRESETS_DIR.glob("*.yaml")):
        preset = yaml.safe_load(path.read_text()) or {}
        if any(fnmatch.fnmatch(env_id, pattern) for pattern in preset.get("match", [])):
            settings = dict(preset.get("config", {}))
            specific = (preset.get("envs") or {}).get(env_id) or {}
            return {**settings, **specific}
    return {}


def resolve_distill(env_id: str, **given: object) -> DistillSettings:
    """Defaults < the env's preset < `given` (None means "not given"); `out` defaults to runs/<env>."""
    if not env_id:
        raise PolicykdError(f"{spelled('env_id', '--env')} is required (a Gymnasium env id, e.g. CartPole-v1)")
    given = {k: v for k, v in given.items() if v is not None}
    values = {**preset_for(split_env_id(env_id)[1]), **given, "env_id": env_id}  # ale_py:ALE/Pong-v5 is Atari too
    values.setdefault("out", f"runs/{folder_name(env_id)}")
    return build(DistillSettings, values)


def resolve_tasks(
    env_ids: list[str] | tuple[str, ...],
    *,
    teachers: tuple[str, ...] | list[str] = (),
    task_weights: tuple[float, ...] | list[float] = (),
    task_input: str | None = None,
    task_balance: str | None = None,
    **given: object,
) -> MultiTaskSettings:
    """Several envs, one student: each task resolved as `resolve_distill` resolves one env (its preset, its teachers
    given as ENV=SPEC), with the settings all tasks share (`settings.tasks.JOINT`) the same for all: the caller's,
    else the first env's preset's. `out` defaults to runs/<ENV>+<ENV>..., each task's folder under it."""
    given = {k: v for k, v in given.items() if v is not None}
    envs = [str(e) for e in env_ids]
    refuse_single_task(given)
    by_env = teachers_by_env(envs, teachers)
    options = build(
        TaskSettings,
        {
            "task_weights": tuple(task_weights),
            "task_input": task_input or "own",
            "task_balance": task_balance or "fixed",
        },
    )
    out = Path(str(given.pop("out", None) or f"runs/{'+'.join(folder_name(e) for e in envs)}"))
    top = {name: bool(given.pop(name, False)) for name in ("overwrite", "quiet", "resume")}
    first = resolve_distill(envs[0], **given, teachers=by_env.get(envs[0]) or None, out=str(out))
    joint = {name: getattr(first, name) for name in JOINT}
    tasks = tuple(
        resolve_distill(env, **{**given, **joint}, teachers=by_env.get(env) or None, out=str(out / folder_name(env)))
        for env in envs
    )
    return MultiTaskSettings(tasks, str(out), options, **top)
