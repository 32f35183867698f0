"""How a settings field is declared, validated and documented: the machinery behind `policykd.settings`.

`opt` declares a field with its CLI spelling and value rule; `check` is the one validation of a
settings object; `build` makes one from loosely typed input (JSON, Python, the CLI); `field_docs`
reads the attribute docstrings that are both the CLI help and the library's documentation.
"""

from __future__ import annotations

import ast
import inspect
import typing
from dataclasses import MISSING, field, fields
from functools import cache
from typing import Any, Callable, Literal, get_args

from policykd.errors import PolicykdError

# --- rules: (test, what the value must be) -------------------------------------------------------
Rule = tuple[Callable[[Any], bool], str]
POSITIVE: Rule = (lambda v: v > 0, "must be positive")
NON_NEGATIVE: Rule = (lambda v: v >= 0, "must be non-negative")
UNIT: Rule = (lambda v: 0 <= v <= 1, "must be within [0, 1]")
HALF_OPEN_UNIT: Rule = (lambda v: 0 <= v < 1, "must be within [0, 1)")
FRACTION: Rule = (lambda v: 0 < v <= 1, "must be within (0, 1]")
ALL_POSITIVE: Rule = (lambda v: len(v) > 0 and min(v) > 0, "must list positive sizes, e.g. 64,64")


def opt(default: Any = MISSING, *, flag: str | None = None, negative: str | None = None, rule: Rule | None = None,
        positional: bool = False, identity: bool = True) -> Any:
    """A settings field. `identity=False`: not part of what a resumed run must repeat (quiet, overwrite)."""
    meta = {"flag": flag, "negative": negative, "rule": rule, "positional": positional, "identity": identity}
    if isinstance(default, (list, dict)):
        raise TypeError("settings defaults are immutable: use a tuple")
    return field(default=default, metadata=meta)


def flag_of(f: Any) -> str:
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def choices(tp: Any) -> tuple[str, ...] | None:
    """The allowed values of a Literal (or Optional Literal) type, else None."""
    for arg in (tp, *get_args(tp)):
        if typing.get_origin(arg) is Literal:
            return get_args(arg)
    return None


def check(settings: Any) -> None:
    """Every value rule of a settings object, in field order: one line naming the flag on the first failure."""
    hints = typing.get_type_hints(type(settings))
    for f in fields(settings):
        value = getattr(settings, f.name)
        if value is None:
            continue
        allowed = choices(hints[f.name])
        if allowed is not None and value not in allowed:
            raise PolicykdError(f"unknown {f.name.replace('_', ' ')} {value!r}: choose from {', '.join(allowed)}")
        rule = f.metadata.get("rule")
        if rule is not None and not rule[0](value):
            shown = ",".join(map(str, value)) if isinstance(value, tuple) else value
            raise PolicykdError(f"{flag_of(f)} {rule[1]}, got {shown}")


def build(cls: type, values: dict[str, Any]) -> Any:
    """`cls(**values)` from loosely typed input (lists for tuples, Paths for strings, from JSON or Python)."""
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise PolicykdError(f"unknown setting(s) for {cls.__name__}: {', '.join(unknown)}")
    hints = typing.get_type_hints(cls)
    converted = {}
    for name, value in values.items():
        text = str(hints[name])
        if value is not None and "tuple" in text and not isinstance(value, tuple):
            value = tuple(value) if isinstance(value, (list, range)) else (value,)
        elif value is not None and hints[name] in (str, str | None) and not isinstance(value, str):
            value = str(value)
        converted[name] = value
    try:
        return cls(**converted)
    except TypeError as err:
        raise PolicykdError(f"bad settings for {cls.__name__}: {err}") from None


@cache
def field_docs(cls: type) -> dict[str, str]:
    """The attribute docstrings of a dataclass (the string after each field), as one-line help texts."""
    tree = ast.parse(inspect.getsource(cls))
    body = tree.body[0].body
    docs = {}
    for node, after in zip(body, body[1:]):
        if isinstance(node, ast.AnnAssign) and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant):
            docs[node.target.id] = " ".join(str(after.value.value).split())
    return docs
