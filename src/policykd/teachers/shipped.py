"""Teachers shipped as package data (`policykd/resources/agents/`, the repository's `agents/`), each described by a `card.yaml`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from policykd.errors import PolicykdError
from policykd.resources import resource_path

AGENTS_DIR = resource_path("agents")


@dataclass(frozen=True)
class AgentCard:
    """The machine-readable part of a model card (CARD.md says the rest)."""

    name: str
    folder: Path
    model: str
    env_id: str
    algo: str
    env_steps: int
    return_mean: float
    return_std: float
    episodes: int
    protocol: str = ""
    vecnormalize: str | None = None  # VecNormalize statistics the model was trained with, relative to folder

    @property
    def model_path(self) -> Path:
        return self.folder / self.model

    @property
    def vecnormalize_path(self) -> Path | None:
        return self.folder / self.vecnormalize if self.vecnormalize else None


def read_card(folder: Path) -> AgentCard:
    path = folder / "card.yaml"
    try:
        fields = yaml.safe_load(path.read_text())
        return AgentCard(name=folder.name, folder=folder, **fields)
    except (OSError, yaml.YAMLError, TypeError) as err:
        raise PolicykdError(f"{path} is not a valid agent card: {err}") from None


def shipped_agents() -> list[AgentCard]:
    if not AGENTS_DIR.is_dir():
        return []
    return [read_card(p) for p in sorted(AGENTS_DIR.iterdir()) if (p / "card.yaml").is_file()]


def default_agent(env_id: str) -> AgentCard | None:
    """The shipped teacher for `env_id`, if the repository has one."""
    return next((card for card in shipped_agents() if card.env_id == env_id), None)


def find_agent(name: str) -> AgentCard | None:
    folder = AGENTS_DIR / name
    return read_card(folder) if (folder / "card.yaml").is_file() else None
