"""How a settings field is declared, validated and documented: the machinery behind `policykd.settings`.

`opt` declares a field with its CLI spelling and value rule; `check` is the one validation of a
settings object; `build` makes one from loosely typed input (JSON, Python, the CLI); `field_docs`
reads the attribute docstrings that are both the CLI help and the library's documentation. Values with a
form of their own (`--perturb`/`--augment` NAME=SIZE specs, `--stages` archs) are checked here too.
"""

from __future__ import annotations

import ast
import inspect
import re
import typing
from collections.abc import Callable, Mapping
from dataclasses import MISSING, Field, field, fields, is_dataclass
from functools import cache
from typing import TYPE_CHECKING, Any, Literal, TypeVar, cast, get_args

from policykd.errors import PolicykdError, option
from policykd.registry import PERTURBATIONS

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

T = TypeVar("T", bound="DataclassInstance")

# --- rules: (test, what the value must be) -------------------------------------------------------
Rule = tuple[Callable[[Any], bool], str]
POSITIVE: Rule = (lambda v: v > 0, "must be positive")
NON_NEGATIVE: Rule = (lambda v: v >= 0, "must be non-negative")
UNIT: Rule = (lambda v: 0 <= v <= 1, "must be within [0, 1]")
HALF_OPEN_UNIT: Rule = (lambda v: 0 <= v < 1, "must be within [0, 1)")
FRACTION: Rule = (lambda v: 0 < v <= 1, "must be within (0, 1]")
ALL_POSITIVE: Rule = (lambda v: len(v) > 0 and min(v) > 0, "must list positive sizes, e.g. 64,64")


# --- value forms beyond one rule: NAME=SIZE specs, multi-stage archs -------------------------------
Choices = Callable[[], tuple[str, ...]]
"""A registry's names (`LOSSES.names`, `augmentations`), read when a value is checked: entries a user registers
before the run count, and the CLI help lists what is registered when it is built."""


def spelled(name: str, flag: str | None = None) -> str:
    """A setting named as its caller writes it: `--student-arch` (or its own `flag`) on the command line,
    `student_arch` in Python (`policykd.errors.use_cli_spelling` decides which)."""
    if not option(name).startswith("--"):  # errors.option is the one switch between the two spellings
        return name
    return flag or "--" + name.replace("_", "-")


def check_specs(specs: tuple[str, ...], named: str, names: tuple[str, ...]) -> None:
    """NAME=SIZE specs (`--perturb`, `--augment`): a registered name and a size > 0 (and at most the
    perturbation's `at_most`, e.g. sticky's probability 1)."""
    for spec in specs:
        name, _, size = spec.partition("=")
        if name not in names:
            raise PolicykdError(
                f"{named} {spec!r}: unknown name {name!r}, choose from {', '.join(names)} (as NAME=SIZE)"
            )
        try:
            value = float(size)
        except ValueError:
            raise PolicykdError(f"{named} {spec!r}: the size must be a number, like {name}=0.05") from None
        limit = PERTURBATIONS[name].meta.get("at_most") if name in PERTURBATIONS else None
        at_most = float(limit) if isinstance(limit, (int, float)) else None
        if not value > 0 or (at_most is not None and value > at_most):
            raise PolicykdError(
                f"{named} {spec!r}: the size must be > 0{f' and at most {at_most:g}' if at_most else ''}"
            )


def key_values(specs: tuple[str, ...], named: str) -> dict[str, object]:
    """`--env-kwargs` KEY=VALUE specs as keyword arguments, each VALUE read as YAML (`size=3` an int, `hard=true` a bool,
    `goal=[1, 2]` a list, `mode=fast` a string), so the CLI passes what Python would; the first malformed one is
    a one-line error."""
    import yaml

    kwargs: dict[str, object] = {}
    for spec in specs:
        key, equals, text = spec.partition("=")
        if not equals or not key.isidentifier():
            raise PolicykdError(f"{named} {spec!r} is not KEY=VALUE (like size=3 or hard=true)")
        try:
            kwargs[key] = yaml.safe_load(text)
        except yaml.YAMLError:
            raise PolicykdError(
                f"{named} {spec!r}: the value is not YAML (quote a string with odd characters)"
            ) from None
    return kwargs


def key_value_specs(kwargs: Mapping[str, object]) -> tuple[str, ...]:
    """Keyword arguments as the KEY=VALUE specs `key_values` reads back to the same values (a library caller's
    `env_kwargs={"size": 2}` is the CLI's `--env-kwargs size=2`, and config.json holds one form)."""
    import yaml

    def text(value: object) -> str:
        return yaml.safe_dump(value, default_flow_style=True, width=float("inf")).removesuffix("\n...\n").strip()

    return tuple(f"{key}={text(value)}" for key, value in kwargs.items())


def class_path(spec: str) -> tuple[str, str] | None:
    """`module:Class` (or rl-zoo's dotted `module.Class`) -> (module, Class); None when it is neither."""
    module, colon, name = spec.partition(":") if ":" in spec else spec.rpartition(".")
    if not (colon and name.isidentifier() and all(part.isidentifier() for part in module.split("."))):
        return None
    return module, name


def _keys_ok(specs: tuple[str, ...]) -> bool:
    key_values(specs, spelled("env_kwargs"))  # raises its own line, naming the bad spec
    return True


KEY_VALUES: Rule = (_keys_ok, "must be KEY=VALUE")
CLASS_PATHS: Rule = (lambda v: all(class_path(s) for s in v), "must name classes as module:Class")
DEVICE: Rule = (lambda v: re.fullmatch(r"auto|cpu|cuda(:\d+)?", v) is not None, "must be cpu, cuda, cuda:N or auto")


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


def opt(
    default: Any = MISSING,
    *,
    flag: str | None = None,
    negative: str | None = None,
    rule: Rule | None = None,
    positional: bool = False,
    identity: bool = True,
    choices: Choices | None = None,
    specs: bool = False,
) -> Any:
    """A settings field. `identity=False`: not part of what a resumed run must repeat (quiet, overwrite).
    `choices`: the registry whose names the value must be (checked, and listed in the CLI help); with `specs=True`
    the values are NAME=SIZE and NAME must be one of them."""
    meta = {
        "flag": flag,
        "negative": negative,
        "rule": rule,
        "positional": positional,
        "identity": identity,
        "choices": choices,
        "specs": specs,
    }
    if isinstance(default, (list, dict)):
        raise TypeError("settings defaults are immutable: use a tuple")
    return field(default=default, metadata=meta)


def flag_of(f: Field[object]) -> str:
    """The field's command-line flag: its declared `flag`, else `--` and its name with dashes."""
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def choices(tp: object) -> tuple[str, ...] | None:
    """The allowed values of a Literal (or Optional Literal) type, else None."""
    for arg in (tp, *get_args(tp)):
        if typing.get_origin(arg) is Literal:
            return get_args(arg)
    return None


def field_choices(f: Field[object], tp: object) -> tuple[str, ...] | None:
    """A field's allowed values: its registry's (`opt(choices=...)`), else its Literal type's, else None."""
    registry = f.metadata.get("choices")
    return registry() if registry is not None else choices(tp)


def check(settings: object) -> None:
    """Every value rule of a settings object, in field order: one line naming the setting as the caller
    spells it (`--alpha` or `alpha`) on the first failure."""
    hints = typing.get_type_hints(type(settings))
    for f in fields(settings):  # type: ignore[arg-type]
        value = getattr(settings, f.name)
        if value is not None:
            _check_value(f, hints[f.name], value)


def _check_value(f: Field[object], tp: object, value: object) -> None:
    named = spelled(f.name, f.metadata.get("flag"))
    allowed = field_choices(f, tp)
    if allowed is not None and f.metadata.get("specs"):
        check_specs(cast("tuple[str, ...]", value), named, allowed)
    elif allowed is not None and value not in allowed:
        raise PolicykdError(f"unknown {f.name.replace('_', ' ')} {value!r}: choose from {', '.join(allowed)}")
    rule = f.metadata.get("rule")
    if rule is not None and not rule[0](value):
        shown = ",".join(map(str, value)) if isinstance(value, tuple) else value
        raise PolicykdError(f"{named} {rule[1]}, got {shown}")


def build(cls: type[T], values: Mapping[str, object]) -> T:
    """`cls(**values)` from loosely typed input (lists for tuples, Paths for strings, from JSON or Python)."""
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise PolicykdError(f"unknown setting(s) for {cls.__name__}: {', '.join(unknown)}")
    hints = typing.get_type_hints(cls)
    converted = {}
    for name, value in values.items():
        text = str(hints[name])
        if isinstance(value, Mapping) and "tuple" in text:  # env_kwargs={"size": 2}: as the CLI's size=2
            value = key_value_specs(value)
        elif value is not None and "tuple" in text and not isinstance(value, tuple):
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
    """The attribute docstrings of a dataclass (the string after each field), as one-line help texts; those of the
    dataclasses it extends too (`policykd.settings.env.EnvFields`), a field declared again keeping its own."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if is_dataclass(klass):
            docs.update(_own_field_docs(klass))
    return docs


def _own_field_docs(cls: type) -> dict[str, str]:
    tree = ast.parse(inspect.getsource(cls))
    klass = tree.body[0]
    assert isinstance(klass, ast.ClassDef), "getsource of a class starts with its definition"
    body = klass.body
    docs = {}
    for node, after in zip(body, body[1:]):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)
        ):
            docs[node.target.id] = " ".join(str(after.value.value).split())
    return docs
