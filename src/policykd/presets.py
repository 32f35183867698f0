"""Per-environment presets, package data in `policykd/resources/envs/*.yaml` (the repository's `envs/`).

A preset file names the env ids it matches (shell patterns) and the DistillSettings values
that suit that family (student size, loss, budget, driver). Resolution is the one place where
precedence lives: the dataclass defaults < the env's preset < what the caller gives.
"""

from __future__ import annotations

import fnmatch

import yaml

from policykd.envs import folder_name, split_env_id
from policykd.errors import PolicykdError
from policykd.fields import build, spelled
from policykd.resources import resource_path
from policykd.settings import DistillSettings

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
