"""The export formats: one table says what exists, and everything else is derived from it.

`ExportSettings.format`'s choices, their validation and the CLI help's list come from `EXPORTERS` (a
`policykd.registry.Registry`, the one mechanism of every extension point); `policykd.exporters.write` finds the
writer, the suffix a file given as `out` must have and the default file name here. Writers are named
"module:function" and imported on first use, so reading the table loads neither torch nor onnx.

A new format is one module with a `Writer` and one `Entry` line in the table below; a user's own format is one
`register_exporter(...)` call (docs/export.md shows both).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, cast

from policykd.errors import PolicykdError, option
from policykd.registry import EXPORTERS, Entry

if TYPE_CHECKING:
    from policykd.exporters.source import ExportSource

Writer = Callable[["ExportSource", Path], Path]
"""`write(source, out)`: the student's `predict(deterministic=True)` written to the file `out` (its folder exists);
returns the file written (companions, such as a C header, go beside it)."""
WriterRef = str | Writer
"""A writer, or its "module:function" name (imported when the format is first used)."""


@dataclass(frozen=True)
class Exporter:
    """One format's entry, typed: what `policykd.exporters.write` needs to check `out` and write."""

    entry: Entry[Writer]

    @property
    def name(self) -> str:
        return self.entry.name

    @property
    def suffix(self) -> str:
        return Path(str(self.entry.meta["filename"])).suffix

    @property
    def supports_int8(self) -> bool:
        return self.entry.meta.get("int8_writer") is not None

    def default_name(self, int8: bool) -> str:
        return str(self.entry.meta["int8_filename" if int8 and self.supports_int8 else "filename"])

    def writer(self, int8: bool) -> Writer:
        """The writer itself, imported now if it was named."""
        if not int8:
            return self.entry.load()
        if not self.supports_int8:
            raise PolicykdError(
                f"{option('int8')}: {option('format', self.name)} has no int8 export (formats with one: "
                f"{', '.join(int8_formats())})"
            )
        return Entry(self.name, cast(WriterRef, self.entry.meta["int8_writer"]), self.entry.help).load()


def find_exporter(name: str) -> Exporter:
    """The format called `name`; an unknown one is one line naming the choices."""
    return Exporter(EXPORTERS[name])


def export_formats() -> tuple[str, ...]:
    """The format names, the table's first and then those registered since: `ExportSettings.format`'s choices."""
    return EXPORTERS.names()


def int8_formats() -> tuple[str, ...]:
    return tuple(name for name in EXPORTERS if find_exporter(name).supports_int8)


def register_exporter(
    name: str,
    writer: WriterRef,
    *,
    filename: str,
    help: str,
    int8_writer: WriterRef | None = None,
    int8_filename: str | None = None,
    replace: bool = False,
) -> Exporter:
    """Add a format: `policykd.export(run, name)` and `ExportSettings(format=name)` accept it from now on.

    `filename`: the default file name, whose suffix a file given as `out` must have. A mistake in the registration
    itself is a programming error (ValueError), not bad user input."""
    for given in (filename, int8_filename):
        if given is not None and (Path(given).name != given or not Path(given).suffix):
            raise ValueError(f"format {name!r}: {given!r} must be a bare file name with a suffix, like weights.npz")
    if (int8_writer is None) != (int8_filename is None):
        raise ValueError(f"format {name!r}: give int8_writer and int8_filename together")
    entry = EXPORTERS.register(
        name, writer, help, replace=replace, filename=filename, int8_writer=int8_writer, int8_filename=int8_filename
    )
    return Exporter(entry)
