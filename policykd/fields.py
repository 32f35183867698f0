"""How a settings field is declared, validated and documented: the machinery behind `policykd.settings`.

`opt` declares a field with its CLI spelling and value rule; `check` is the one validation of a
settings object; `build` makes one from loosely typed input (JSON, Python, the CLI); `field_docs`
reads the attribute docstrings that are both the CLI help and the library's documentation. Values with a
form of their own (`--perturb`/`--augment` NAME=SIZE specs, `--stages` archs) are checked here too.
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


# --- value forms beyond one rule: NAME=SIZE specs, multi-stage archs -------------------------------
PERTURBATIONS = ("obs-noise", "sticky", "action-noise", "fgsm", "pgd")
AUGMENTATIONS = ("obs-noise", "fgsm")


def check_specs(specs: tuple[str, ...], flag: str, names: tuple[str, ...]) -> None:
    """NAME=SIZE specs (`--perturb`, `--augment`): a known name and a size > 0 (sticky: at most 1)."""
    for spec in specs:
        name, _, size = spec.partition("=")
        if name not in names:
            raise PolicykdError(f"{flag} {spec!r}: unknown name {name!r}, choose from {', '.join(names)} (as NAME=SIZE)")
        try:
            value = float(size)
        except ValueError:
            raise PolicykdError(f"{flag} {spec!r}: the size must be a number, like {name}=0.05") from None
        if not value > 0 or (name == "sticky" and value > 1):
            raise PolicykdError(f"{flag} {spec!r}: the size must be > 0{' and at most 1' if name == 'sticky' else ''}")


def stage_archs(text: str) -> list[tuple[int, ...]] | None:
    """`44,44:16,16` -> [(44, 44), (16, 16)]; None unless every stage is positive sizes with fewer units than the one
    before it (an assistant wider than what it learns from would not be a step down)."""
    try:
        archs = [tuple(int(x) for x in part.split(",")) for part in text.split(":")]
    except ValueError:
        return None
    if not archs or any(not a or min(a) <= 0 for a in archs):
        return None
    return archs if all(sum(b) < sum(a) for a, b in zip(archs, archs[1:])) else None


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
