"""Typer commands built from the settings dataclasses, so an option exists once: as a field.

Every option defaults to None on the command line ("not given"), so the caller can layer
what was given over presets; the help text is the field's docstring plus its real default.
Lists: a `tuple[str, ...]` field is a repeatable option (`--teacher A --teacher B`), a tuple of
numbers is one comma-separated value (`--student-arch 64,64`).
"""

from __future__ import annotations

import inspect
import typing
from dataclasses import MISSING, Field, fields
from typing import Any, Callable, List, Optional

import typer

from policykd.errors import PolicykdError
from policykd.fields import choices, field_docs, flag_of


def _base(tp: Any) -> Any:
    """`int | None` -> int; other unions are not settings types."""
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    return args[0] if typing.get_origin(tp) in (typing.Union, __import__("types").UnionType) and len(args) == 1 else tp


def _element(tp: Any) -> Any | None:
    """The element type of a `tuple[X, ...]` field, else None."""
    tp = _base(tp)
    return typing.get_args(tp)[0] if typing.get_origin(tp) is tuple else None


def _cli_type(tp: Any) -> Any:
    element = _element(tp)
    if element is str:
        return Optional[List[str]]
    if element is not None or choices(tp) is not None:
        return Optional[str]
    return Optional[_base(tp)]


def _help(cls: type, f: Field) -> str:
    text = field_docs(cls).get(f.name, "")
    default = f.default
    if default is MISSING:
        return text
    if isinstance(default, tuple):
        default = ",".join(map(str, default)) or None
    return f"{text} (default: {default})" if default not in (None, False) and "(default" not in text else text


def _param(cls: type, f: Field, hints: dict[str, Any]) -> inspect.Parameter:
    meta = f.metadata
    decls = [flag_of(f) + (f"/{meta['negative']}" if meta.get("negative") else "")]
    required = f.default is MISSING
    if meta.get("positional"):
        default = typer.Argument(..., help=_help(cls, f), show_default=False)
    else:
        default = typer.Option(... if required else None, *decls, help=_help(cls, f), show_default=False)
    return inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=_cli_type(hints[f.name]))


def parse_list(flag: str, element: type, text: str) -> tuple:
    try:
        return tuple(element(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise PolicykdError(f"{flag} must be comma-separated {element.__name__}s like 64,64, got {text!r}") from None


def given_values(cls: type, values: dict[str, Any]) -> dict[str, Any]:
    """The options the user gave, as field values (comma lists parsed, repeatable lists as tuples)."""
    hints = typing.get_type_hints(cls)
    given = {}
    for f in fields(cls):
        value = values.get(f.name)
        if value is None:
            continue
        element = _element(hints[f.name])
        if element is str:
            value = tuple(value)
        elif element is not None:
            value = parse_list(flag_of(f), element, value)
        given[f.name] = value
    return given


def command_for(cls: type, handle: Callable[[dict[str, Any]], None]) -> Callable[..., None]:
    """A Typer command whose options are `cls`'s fields; it calls `handle` with the values given."""
    hints = typing.get_type_hints(cls)

    def command(**values: Any) -> None:
        handle(given_values(cls, values))

    command.__signature__ = inspect.Signature([_param(cls, f, hints) for f in fields(cls)])  # type: ignore[attr-defined]
    command.__doc__ = cls.__doc__
    return command
