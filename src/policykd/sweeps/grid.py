"""What every trial distils with: the grid (`--grid KEY=V1,V2`) and the distill settings fixed for every trial
(`--steps 4000` on the command line, `steps=4000` in Python), typed and checked before any trial.

Values are typed by DistillSettings' own field types, so a grid accepts exactly what distill does;
every trial's settings are resolved as distill would resolve them (defaults < the env's preset <
the fixed values and the grid), so a value distill would refuse is refused here, in one line, before Ray starts.
"""

from __future__ import annotations

import itertools
import typing
from collections.abc import Mapping
from dataclasses import dataclass, fields

from policykd.errors import PolicykdError, option
from policykd.settings import DistillSettings

Value = object
"""A distill setting's value, typed as its DistillSettings field (int, float, bool, str, a tuple of ints, None)."""

DECIDED_BY_THE_SWEEP = {
    "env_id": "the sweep's own env, the same for every trial",
    "teachers": "the sweep's own teachers, the same for every trial",
    "out": "each trial has its own folder under the sweep's out folder",
    "quiet": "trials are always quiet (the sweep's quiet is its own output)",
    "seed": "trials run seeds 0..N-1 (the sweep's seeds setting)",
    "overwrite": "a trial continues or reports the run in its own folder",
    "resume": "a trial continues or reports the run in its own folder",
    "prune_to": "a sweep does not prune (prune a trial's folder afterwards)",
    "prune_cycles": "a sweep does not prune (prune a trial's folder afterwards)",
}
"""Distill settings that neither the grid nor a fixed value sets, and why."""

TRIAL_SETTINGS = tuple(f.name for f in fields(DistillSettings) if f.name not in DECIDED_BY_THE_SWEEP)
"""The distill settings a sweep takes, in the grid or fixed for every trial (the CLI offers these as flags)."""


@dataclass(frozen=True)
class Combination:
    """One point of the grid: distill settings by field name (student_width already turned into student_arch)."""

    values: dict[str, Value]

    @property
    def label(self) -> str:
        """A stable, readable name for run folders and tables: `student_arch=16x16,loss=kl`."""
        return ",".join(f"{k}={_show(v)}" for k, v in self.values.items()) or "default"


def check_fixed_names(fixed: Mapping[str, Value]) -> None:
    """Each fixed value names a distill setting that a trial takes (`seed=1` is refused: the sweep sets it)."""
    for name, value in fixed.items():
        if name in DECIDED_BY_THE_SWEEP:
            raise PolicykdError(
                f"{option(name, value)}: not a setting of the sweep's trials: {DECIDED_BY_THE_SWEEP[name]}"
            )
        if name not in TRIAL_SETTINGS:
            raise PolicykdError(f"{option(name, value)}: unknown setting: neither the sweep's nor distill's")


def parse_grid(specs: tuple[str, ...], fixed: Mapping[str, Value] | None = None) -> dict[str, list[Value]]:
    """`("student-width=8,16", "steps=5000")` -> {"student_arch": [(8, 8), (16, 16)], "steps": [5000]}; a key the
    caller also fixed for every trial is refused (which of the two would a trial take?)."""
    fixed = fixed or {}
    grid: dict[str, list[Value]] = {}
    for spec in specs:
        name, values = _entry(spec)
        if name in grid:
            raise PolicykdError(
                f"{option('grid', spec)}: {name} given twice (student-width and student-arch are one key)"
            )
        if name in fixed:
            raise PolicykdError(
                f"{option('grid', spec)} and {option(name, fixed[name])} both set {name}: give it once, "
                "in the grid or fixed for every trial"
            )
        grid[name] = values
    return grid


def combinations(grid: dict[str, list[Value]]) -> list[Combination]:
    """Every combination of the grid's values, in the order given (the last key varies fastest)."""
    keys = list(grid)
    return [Combination(dict(zip(keys, point))) for point in itertools.product(*(grid[k] for k in keys))]


def check_trials(env_id: str, combos: list[Combination], fixed: Mapping[str, Value]) -> dict[str, Value]:
    """Resolve each trial as distill would: any value distill refuses is refused now, in its words, after the
    combination it was refused in. Returns the fixed values as distill types them (a list given for a tuple: a tuple)."""
    from policykd.presets import resolve_distill

    typed = dict(fixed)
    for combo in combos:
        try:
            settings = resolve_distill(env_id, **{**fixed, **combo.values}, out="unused")
        except PolicykdError as err:
            raise PolicykdError(f"trial {combo.label}: {err}" if combo.values else str(err)) from None
        typed = {name: getattr(settings, name) for name in fixed}
    return typed


def _entry(spec: str) -> tuple[str, list[Value]]:
    """One `--grid KEY=V1,V2` as (field name, typed values)."""
    key, sep, text = spec.partition("=")
    name = key.strip().removeprefix("--").replace("-", "_")
    where = option("grid", spec)
    if not sep or not name:
        raise PolicykdError(f"{where}: write KEY=V1,V2,... like student-width=8,16,32")
    if name in DECIDED_BY_THE_SWEEP:
        raise PolicykdError(f"{where}: not a grid key: {DECIDED_BY_THE_SWEEP[name]}")
    if name not in TRIAL_SETTINGS and name != "student_width":
        raise PolicykdError(f"{where}: unknown distill setting {key.strip()!r} (see policykd distill --help)")
    texts = [t.strip() for t in text.split(",")]
    if texts == [""]:
        raise PolicykdError(f"{where}: no values given")
    if "" in texts:
        raise PolicykdError(f"{where}: an empty value between commas; write the values as V1,V2,...")
    if name == "student_width":
        return "student_arch", [(w, w) for w in (_scalar(where, int, t) for t in texts)]
    return name, [_typed(where, typing.get_type_hints(DistillSettings)[name], t) for t in texts]


def _typed(where: str, hint: object, text: str) -> Value:
    """One value as its field's type: int, float, bool, str (Literals are checked later), tuples with x."""
    optional = type(None) in typing.get_args(hint)
    tp = next(a for a in typing.get_args(hint) if a is not type(None)) if optional else hint
    if text.lower() == "none" and optional:
        return None
    if typing.get_origin(tp) is tuple:
        element = typing.get_args(tp)[0]
        return tuple(_scalar(where, element, part) for part in text.split("x"))
    return _scalar(where, tp, text)


def _scalar(where: str, tp: object, text: str) -> Value:
    if tp is bool:
        if text.lower() in ("true", "yes", "1", "false", "no", "0"):
            return text.lower() in ("true", "yes", "1")
        raise PolicykdError(f"{where}: {text!r} is not true or false")
    if tp is int or tp is float:
        try:
            return int(text) if tp is int else float(text)
        except ValueError:
            raise PolicykdError(f"{where}: {text!r} is not {'an int' if tp is int else 'a number'}") from None
    return text


def _show(value: Value) -> str:
    return "x".join(map(str, value)) if isinstance(value, tuple) else str(value)
