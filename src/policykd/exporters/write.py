"""`policykd export`: find the format's exporter, check where its file goes, load the student, write it.

A student with a view or memory also gets contract.json beside the file (`policykd.exporters.contract`).
Every check comes before any write, and a failed write (an int8 calibration that finds no rollout, say) leaves
nothing behind: not the file, nor the folders made for it. What a format is (its writer, suffix, default file
name, int8 support) is read from `policykd.exporters.registry`, never spelled here.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from policykd.errors import PolicykdError, option
from policykd.exporters.registry import Exporter, find_exporter
from policykd.settings import ExportSettings


def export_student(settings: ExportSettings) -> Path:
    """The student of `settings.source` in `settings.format`; returns the file written (companions go beside it)."""
    import torch as th

    from policykd.exporters.contract import write_contract
    from policykd.exporters.source import load_source

    exporter = find_exporter(settings.format)
    write = exporter.writer(settings.int8)  # a format without int8 is refused here, before anything is loaded
    target = out_path(settings.out, exporter, settings.int8)
    source = load_source(settings.source, settings.env_id)
    out = target or source.path.with_name(exporter.default_name(settings.int8))
    th.set_num_threads(1)

    def write_with_contract() -> Path:
        written = write(source, out)
        write_contract(source, written)  # what a deployment must feed the file, checked again by evaluate
        return written

    return write_creating_folders(out, write_with_contract)


def out_path(out: str | None, exporter: Exporter, int8: bool) -> Path | None:
    """Where `out` says the file goes (None: beside the student.zip): a file with the format's suffix, or a folder,
    existing or a path with no suffix, that gets the format's default name (a C file's header is two files:
    a folder is the natural answer)."""
    if out is None:
        return None
    path = Path(out).expanduser()
    if path.is_dir() or not path.suffix:
        path = path / exporter.default_name(int8)
    elif path.suffix != exporter.suffix:
        raise PolicykdError(
            f"{option('out', out)} must be a folder or a file ending in {exporter.suffix} "
            f"for {option('format', exporter.name)}"
        )
    blocking = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        raise PolicykdError(f"{option('out', out)}: {blocking} is a file, not a folder")
    return path


def write_creating_folders(out: Path, write: Callable[[], Path]) -> Path:
    """`write()` once the folders `out` needs exist, as every command creates its out folder; if it fails, the
    folders it created go too (the caller's tree is as it was)."""
    created = [folder for folder in (out.parent, *out.parent.parents) if not folder.exists()]
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        return write()
    except BaseException:
        for folder in created:  # innermost first; a folder that is not empty stays
            try:
                folder.rmdir()
            except OSError:
                break
        raise
