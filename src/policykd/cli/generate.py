"""Typer commands built from the settings dataclasses, so an option exists once: as a field.

Every option defaults to None on the command line ("not given"), so the caller can layer
what was given over presets; the help text is the field's docstring plus its real default.
Lists: a `tuple[str, ...]` field is a repeatable option (`--teacher A --teacher B`), a tuple of
numbers is one comma-separated value (`--student-arch 64,64`).
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import MISSING, Field, fields
from typing import Any, Optional, cast

import typer
from typer.core import TyperCommand, TyperGroup

from policykd.errors import PolicykdError
from policykd.fields import field_choices, field_docs, flag_of

Handler = Callable[[dict[str, object]], None]
"""A command's handler: the options given, by field name."""


class _FlagsWithoutType:
    """Typer shows every option's type, `--help <bool>` and `--int8 <bool>` included, and a required argument as
    `{source}`: flags get no type here and arguments their upper-case names."""

    def get_params(self, ctx: Any) -> list[Any]:  # typer's own vendored click: its internals
        params = super().get_params(ctx)  # type: ignore[misc]
        for param in params:
            if getattr(param, "is_flag", False) and param.metavar is None:
                param.metavar = ""
        return params

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        return [piece.replace("{", "").replace("}", "") for piece in super().collect_usage_pieces(ctx)]  # type: ignore[misc]


class Command(_FlagsWithoutType, TyperCommand):
    """A settings command."""


class Group(_FlagsWithoutType, TyperGroup):
    """`policykd` itself."""


def _base(tp: object) -> object:
    """`int | None` -> int; other unions are not settings types."""
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    return args[0] if typing.get_origin(tp) in (typing.Union, types.UnionType) and len(args) == 1 else tp


def _element(tp: object) -> type | None:
    """The element type of a `tuple[X, ...]` field, else None."""
    tp = _base(tp)
    return typing.get_args(tp)[0] if typing.get_origin(tp) is tuple else None


def _cli_type(f: Field[object], tp: object) -> object:
    """What Typer parses: choices stay strings (`fields.check` names the choices in one line), number lists a
    comma-separated string, string lists a repeatable option."""
    element = _element(tp)
    if element is str:
        return list[str] | None
    if element is not None or field_choices(f, tp) is not None:
        return str | None
    return Optional[_base(tp)]  # noqa: UP045 (`|` would need the field's type to be a class: Optional takes any)


SHORT = 24
"""Choices up to this many characters show as the option's type (`<onnx|c>`); longer lists go in its help text, so
the type column stays narrow."""


def _metavar(f: Field[object], tp: object) -> str | None:
    """`<onnx|c>` for a choice, `<obs-noise|fgsm>=SIZE` for NAME=SIZE specs (`<loss>` where the list is long),
    `<int,...>` for number lists, nothing for a flag, else Typer's own type label."""
    allowed = field_choices(f, tp)
    if allowed is not None:
        listed = "|".join(allowed)
        shown = listed if len(listed) <= SHORT else ("NAME" if f.metadata.get("specs") else f.name.replace("_", "-"))
        return f"<{shown}>" + ("=SIZE" if f.metadata.get("specs") else "")
    element = _element(tp)
    if element in (int, float):
        return f"<{element.__name__},...>"
    return "" if _base(tp) is bool else None


def _help(cls: type, f: Field[object], tp: object) -> str:
    """The field's docstring, its default and (where the type column does not show them) its choices."""
    text = field_docs(cls).get(f.name, "")
    allowed = field_choices(f, tp)
    if allowed is not None and len("|".join(allowed)) > SHORT:
        text += f" Choices: {', '.join(allowed)}."
    default = f.default
    if default is MISSING:
        return text
    if isinstance(default, tuple):
        default = ",".join(map(str, default)) or None
    return f"{text} (default: {default})" if default not in (None, False) and "(default" not in text else text


def _param(cls: type, f: Field[object], tp: object) -> inspect.Parameter:
    meta = f.metadata
    if meta.get("positional"):
        default = typer.Argument(..., metavar=f.name.upper(), help=_help(cls, f, tp), show_default=False)
    else:
        decls = [flag_of(f) + (f"/{meta['negative']}" if meta.get("negative") else "")]
        default = typer.Option(
            ... if f.default is MISSING else None,
            *decls,
            metavar=_metavar(f, tp),
            help=_help(cls, f, tp),
            show_default=False,
        )
    return inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=_cli_type(f, tp))


def parse_list(flag: str, element: type, text: str) -> tuple:
    try:
        return tuple(element(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise PolicykdError(f"{flag} must be comma-separated {element.__name__}s like 64,64, got {text!r}") from None


def given_values(cls: type, values: Mapping[str, object]) -> dict[str, object]:
    """The options the user gave, as field values (comma lists parsed, repeatable lists as tuples)."""
    hints = typing.get_type_hints(cls)
    given = {}
    for f in fields(cls):
        value = values.get(f.name)
        if value is None:
            continue
        element = _element(hints[f.name])
        if element is str:
            value = tuple(cast("list[str]", value))  # a repeatable option
        elif element is not None:
            value = parse_list(flag_of(f), element, cast(str, value))  # one comma-separated value
        given[f.name] = value
    return given


def paragraphs(doc: str) -> str:
    """A docstring with each paragraph on one line: Typer would keep the source's line breaks in the command list."""
    return "\n\n".join(" ".join(part.split()) for part in inspect.cleandoc(doc).split("\n\n"))


def command_for(cls: type, handle: Handler) -> Callable[..., None]:
    """A Typer command whose options are `cls`'s fields; it calls `handle` with the values given."""
    hints = typing.get_type_hints(cls)

    def command(**values: object) -> None:
        handle(given_values(cls, values))

    ordered = sorted(fields(cls), key=lambda f: f.default is not MISSING)  # required first, e.g. --env, then --model
    command.__signature__ = inspect.Signature([_param(cls, f, hints[f.name]) for f in ordered])  # type: ignore[attr-defined]
    command.__doc__ = paragraphs(cls.__doc__ or "")
    return command
