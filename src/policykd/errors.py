"""The one exception type that means "the user's input is wrong", and how its messages name a setting."""

from __future__ import annotations

from contextvars import ContextVar

_SPELLING: ContextVar[str] = ContextVar("policykd_spelling", default="python")


class PolicykdError(Exception):
    """Bad input or an unrecoverable run condition.

    The CLI prints the message on one line and exits with status 2, before any env
    is stepped where the check allows it.
    """


def use_cli_spelling() -> None:
    """Called once by the CLI: from then on messages name settings as flags (`--overwrite`), not keywords."""
    _SPELLING.set("cli")


def option(name: str, value: object = True) -> str:
    """A setting as the caller writes it: `--overwrite` / `--steps 4000` on the command line, `overwrite=True` /
    `steps=4000` in Python, so a library caller is never told to pass a flag."""
    if _SPELLING.get() == "cli":
        flag = "--" + name.replace("_", "-")
        return flag if value is True else f"{flag} {value}"
    return f"{name}={value!r}"
