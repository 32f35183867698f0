"""The `policykd` command line, generated from the settings dataclasses in `policykd.settings`."""

from policykd.cli.main import main

__all__ = ["main"]
