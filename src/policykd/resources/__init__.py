"""Package data: env presets (`envs/*.yaml`), rl-zoo's teacher hyperparameters (`envs/teachers.yaml`)
and the shipped teachers (`agents/<name>/` with their cards), read with `importlib.resources` so an
installed wheel finds them wherever it runs. The repository's top-level `agents/` and `envs/` are links here."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def resource_path(*parts: str) -> Path:
    """A file or folder of the installed package data (pip installs packages unzipped: a real path)."""
    return Path(str(files(__name__).joinpath(*parts)))
