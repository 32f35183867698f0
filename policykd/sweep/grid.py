"""`--grid KEY=V1,V2` into typed distill settings: the combinations a sweep runs, checked before any trial.

Values are typed by DistillSettings' own field types, so a grid accepts exactly what distill does;
every combination is resolved as distill would resolve it (defaults < the env's preset < the grid),
so a value distill would refuse is refused here, in one line, before Ray starts.
"""

from __future__ import annotations

import itertools
import typing
from dataclasses import dataclass, fields
from typing import Any

from policykd.errors import PolicykdError
from policykd.settings import DistillSettings

SIZE_KEYS = ("student_arch", "student_width")
NOT_IN_GRID = {"env_id": "--env", "teachers": "--teacher", "out": "--out", "seed": "--seeds", "overwrite": "",
               "resume": "", "quiet": "", "prune_to": "", "prune_cycles": ""}


@dataclass(frozen=True)
class Combination:
    """One point of the grid: distill settings by field name (student_width already turned into student_arch)."""

    values: dict[str, Any]

    @property
    def label(self) -> str:
        """A stable, readable name for run folders and tables: `student_arch=16x16,loss=kl`."""
        return ",".join(f"{k}={_show(v)}" for k, v in self.values.items()) or "default"


def parse_grid(specs: tuple[str, ...]) -> dict[str, list[Any]]:
    """`("student-width=8,16", "steps=5000")` -> {"student_arch": [(8, 8), (16, 16)], "steps": [5000]}."""
    hints = typing.get_type_hints(DistillSettings)
    names = {f.name for f in fields(DistillSettings)}
    grid: dict[str, list[Any]] = {}
    for spec in specs:
        key, sep, text = spec.partition("=")
        name = key.strip().removeprefix("--").replace("-", "_")
        if not sep or not name:
            raise PolicykdError(f"--grid {spec!r}: write KEY=V1,V2,... like student-width=8,16,32")
        if name in NOT_IN_GRID:
            other = NOT_IN_GRID[name]
            raise PolicykdError(f"--grid {key}: not a grid key" + (f"; use {other}" if other else ""))
        if name not in names and name != "student_width":
            raise PolicykdError(f"--grid {key}: unknown distill setting (see policykd distill --help)")
        texts = [t.strip() for t in text.split(",") if t.strip()]
        if not texts:
            raise PolicykdError(f"--grid {key}: no values given")
        if name == "student_width":
            values = [(w, w) for w in (_typed(key, int, t) for t in texts)]
            name = "student_arch"
        else:
            values = [_typed(key, hints[name], t) for t in texts]
        if name in grid:
            raise PolicykdError(f"--grid {key}: given twice (student-width and student-arch are one key)")
        grid[name] = values
    return grid


def combinations(grid: dict[str, list[Any]]) -> list[Combination]:
    """Every combination of the grid's values, in the order given (the last key varies fastest)."""
    keys = list(grid)
    return [Combination(dict(zip(keys, point))) for point in itertools.product(*(grid[k] for k in keys))]


def check_combinations(env_id: str, combos: list[Combination]) -> None:
    """Resolve each combination as distill would: any value distill refuses is refused now, in its words."""
    from policykd.presets import resolve_distill

    for combo in combos:
        try:
            resolve_distill(env_id, **combo.values, out="unused")
        except PolicykdError as err:
            raise PolicykdError(f"--grid {combo.label}: {err}") from None


def _typed(key: str, hint: Any, text: str) -> Any:
    """One value of `key` as its field's type: int, float, bool, str (Literals are checked later), tuples with x."""
    base = [a for a in typing.get_args(hint) if a is not type(None)] if _is_optional(hint) else [hint]
    tp = base[0]
    if text.lower() == "none" and _is_optional(hint):
        return None
    if typing.get_origin(tp) is tuple:
        element = typing.get_args(tp)[0]
        return tuple(_scalar(key, element, part) for part in text.split("x"))
    return _scalar(key, tp, text)


def _scalar(key: str, tp: Any, text: str) -> Any:
    if tp is bool:
        if text.lower() in ("true", "yes", "1", "false", "no", "0"):
            return text.lower() in ("true", "yes", "1")
        raise PolicykdError(f"--grid {key}: {text!r} is not true or false")
    if tp in (int, float):
        try:
            return tp(text)
        except ValueError:
            raise PolicykdError(f"--grid {key}: {text!r} is not {'an int' if tp is int else 'a number'}") from None
    return text


def _is_optional(hint: Any) -> bool:
    return type(None) in typing.get_args(hint)


def _show(value: Any) -> str:
    return "x".join(map(str, value)) if isinstance(value, tuple) else str(value)
