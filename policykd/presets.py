"""Per-environment presets read from the package data `policykd/resources/envs/*.yaml` (the repository's `envs/`).

A preset file names the env ids it matches (shell patterns) and the DistillConfig
settings that suit that family (student size, loss, budget, driver).
"""

from __future__ import annotations

import fnmatch
from pathlib import Path
from typing import Any

import yaml

from policykd.config import DistillConfig
from policykd.errors import PolicykdError
from policykd.resources import resource_path

PRESETS_DIR = resource_path("envs")


def preset_for(env_id: str) -> dict[str, Any]:
    """Settings of the first preset whose `match` patterns cover `env_id` (empty if none)."""
    for path in sorted(PRESETS_DIR.glob("*.yaml")):
        preset = yaml.safe_load(path.read_text()) or {}
        if any(fnmatch.fnmatch(env_id, pattern) for pattern in preset.get("match", [])):
            settings = dict(preset.get("config", {}))
            specific = (preset.get("envs") or {}).get(env_id) or {}
            return {**settings, **specific}
    return {}


def resolve_config(env_id: str, **overrides: Any) -> DistillConfig:
    """Defaults < the env's preset < `overrides` (None values mean "not given")."""
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        return DistillConfig.from_dict({**preset_for(env_id), **given, "env_id": env_id})
    except TypeError as err:
        raise PolicykdError(f"bad setting: {err}") from None
