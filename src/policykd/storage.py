"""Durable storage of what a run writes: atomic writes (a kill never leaves half a file), the output folder's checks,
the checkpoint store, and the "same settings?" guard a resumed run passes.

Every file policykd writes goes through `atomic_write`: the writer (ours, `model.save`,
`VecNormalize.save`, `np.savez`, h5py) writes a temporary name beside the target, which is
then renamed over it; `os.replace` is atomic on POSIX, so readers never see half a file.
`fsync=True` also makes the content and the rename durable (they survive a power cut):
for checkpoints, their pointer and recorded episodes, which a resumed run trusts.
The output-folder checks, the one-line full-disk error, and the one checkpoint store
(`CheckpointStore`, used by distill and train-teacher) with the one "same settings?" guard
(`settings_differ`, used by distill, train-teacher and record before they resume) live here too.

A checkpoint is a fresh folder `<root>/ckpt-<n>/` that the caller fills; when it is complete and
on disk, the pointer `<root>/checkpoint.json` is renamed into place to name it, and only then are
older folders removed: a kill leaves the old checkpoint or the new one, never a half-written one.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from policykd.errors import PolicykdError, option
from policykd.fields import spelled

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)  # no space, quota, file-size limit
POINTER = "checkpoint.json"


def temporary_name(path: Path) -> Path:
    """`.<stem>.tmp<suffix>` beside `path`: hidden, and keeping the suffix, because `np.savez`
    and SB3's savers append their own suffix to a name that lacks it."""
    return path.with_name(f".{path.stem}.tmp{path.suffix}")


def atomic_write(path: Path, write: Callable[[Path], object], *, fsync: bool = False) -> Path:
    """`write(temporary path)`, then rename it to `path`; the temporary file goes if `write` fails."""
    path = Path(path)
    tmp = temporary_name(path)
    try:
        write(tmp)
        if fsync:
            _fsync(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # frees the space a full disk needs back
        raise
    if fsync:
        _fsync(path.parent)  # the rename itself
    return path


def atomic_write_text(path: Path, text: str, *, fsync: bool = False) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text), fsync=fsync)


def fsync_tree(folder: Path) -> None:
    """Every file and folder under `folder` (itself included) on disk: before a pointer names it."""
    for path in sorted(folder.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        _fsync(path)
    _fsync(folder)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def disk_full_is_one_line(folder: Path, what: str) -> Iterator[None]:
    """A full disk while writing `what` stops the run with one line; what was written before
    (the last complete checkpoint, earlier episodes) stays, so the same command resumes."""
    try:
        yield
    except OSError as err:
        try:
            free = shutil.disk_usage(folder).free
        except OSError:
            free = -1
        if err.errno not in DISK_FULL and not 0 <= free < 1 << 20:  # numpy's short writes carry no errno
            raise
        reason = err.strerror or str(err)
        raise PolicykdError(
            f"the disk is full: cannot write {what} in {folder} ({reason}); what was written "
            "before is kept: free some space and re-run the same command to resume"
        ) from None


def check_out(out: Path, overwrite: bool) -> None:
    """Refuse, before any work, an output folder that would be overwritten without `overwrite`."""
    if out.exists() and not out.is_dir():
        raise PolicykdError(f"output path {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise PolicykdError(f"output folder {out} already exists; pass {option('overwrite')} to replace it")


def prepare_out(out: Path, overwrite: bool) -> None:
    """Create `out` (emptied first when `overwrite`) and check it is writable."""
    check_out(out, overwrite)
    if out.is_dir() and any(out.iterdir()):
        shutil.rmtree(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise PolicykdError(f"cannot write to output folder {out}: {err.strerror}") from None


class CheckpointStore:
    """Numbered checkpoint folders under `root` and the pointer file naming the complete one."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.pointer = self.root / POINTER

    def latest(self) -> dict[str, Any] | None:
        """The pointer (`number`, `folder` and the caller's meta), or None when there is no checkpoint.
        JSON whose keys are the caller's: each caller reads its own meta with its own types."""
        try:
            return json.loads(self.pointer.read_text())
        except FileNotFoundError:
            return None
        except (json.JSONDecodeError, OSError) as err:
            raise PolicykdError(
                f"{self.pointer} is unreadable ({err}); pass {option('overwrite')} to start again"
            ) from None

    def folder(self, pointer: Mapping[str, object]) -> Path:
        return self.root / str(pointer["folder"])

    def save(self, write: Callable[[Path], None], meta: Mapping[str, object] | None = None) -> Path:
        """`write(folder)` into a fresh `ckpt-<n>/`; then, durably, the pointer (`meta` + number, folder)."""
        previous = self.latest()
        number = previous["number"] + 1 if previous else 0
        folder = self.root / f"ckpt-{number}"
        if folder.exists():  # left by a run killed while writing it
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        write(folder)
        fsync_tree(folder)  # on disk before the pointer names it
        atomic_write_text(
            self.pointer, json.dumps({**(meta or {}), "number": number, "folder": folder.name}, indent=2), fsync=True
        )
        for old in self.root.glob("ckpt-*"):
            if old != folder:
                shutil.rmtree(old, ignore_errors=True)
        return folder

    def clear(self) -> None:
        """Once the run is complete its checkpoints are only disk space."""
        self.pointer.unlink(missing_ok=True)
        for folder in self.root.glob("ckpt-*"):
            shutil.rmtree(folder, ignore_errors=True)


def settings_differ(
    saved: Mapping[str, object],
    current: Mapping[str, object],
    *,
    ignore: Iterable[str] = (),
    defaults: Mapping[str, object] | None = None,
) -> list[str]:
    """The settings (sorted) in which a saved run and the current command differ, as JSON stores them
    (tuples are lists), a setting only one of them has included; `ignore` names the ones that may. `defaults`: a
    setting the saved run does not have (it was added by a later policykd) is the same when the current value is its
    default, which is how the saved run behaved, so upgrading policykd does not strand an unfinished run."""
    saved, current = json.loads(json.dumps(saved)), json.loads(json.dumps(current))
    known = json.loads(json.dumps(defaults or {}))
    skip = set(ignore) | {k for k in set(current) - set(saved) if k in known and current[k] == known[k]}
    return sorted(k for k in set(saved) | set(current) if k not in skip and saved.get(k) != current.get(k))


def field_defaults(settings: DataclassInstance | type[DataclassInstance]) -> dict[str, object]:
    """A settings dataclass's defaults by field (fields without one left out)."""
    from dataclasses import MISSING, fields

    return {f.name: f.default for f in fields(settings) if f.default is not MISSING}


def prepare_or_resume(
    out: Path,
    identity: Mapping[str, object],
    record: str,
    overwrite: bool,
    what: str,
    defaults: Mapping[str, object] | None = None,
) -> None:
    """A folder of several runs (prune cycles, distillation stages): create it and write `record` (the settings it
    must be re-run with), or find the same unfinished work there to continue; other settings there are refused."""
    saved = out / record
    if not overwrite and saved.is_file() and not (out / "summary.json").exists():
        differ = settings_differ(json.loads(saved.read_text()), identity, defaults=defaults)
        if differ:
            raise PolicykdError(
                f"{out} holds an unfinished {what} with other settings ({', '.join(differ)}); "
                f"re-run it unchanged to resume, or pass {option('overwrite')} / another {spelled('out')}"
            )
        return
    prepare_out(out, overwrite)
    atomic_write_text(saved, json.dumps(identity, indent=2))
