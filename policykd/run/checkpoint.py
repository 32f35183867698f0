"""Checkpoints that a kill at any instant cannot break, and the guard that resumes only the same run.

`CheckpointStore` is the one mechanism: each checkpoint is a fresh folder `<root>/ckpt-<n>/`
that the caller fills (distill: tensors, arrays and meta.json; train-teacher: SB3's model,
replay buffer and VecNormalize); when it is complete and on disk, the pointer
`<root>/checkpoint.json` is renamed into place to name it, and only then are older folders
removed. A kill leaves either the old checkpoint or the new one, never a half-written one.

Distillation keeps its store in the output folder itself (`out/ckpt-<n>/`,
`out/checkpoint.json`); its loading uses `torch.load(weights_only=True)` and
`np.load(allow_pickle=False)`. `settings_differ` is the one "same settings?" test that
distill, train-teacher and record apply before they resume.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

import numpy as np
import torch as th

from policykd.errors import PolicykdError
from policykd.files import atomic_write_text, fsync_tree

if TYPE_CHECKING:
    from policykd.settings import DistillSettings

POINTER = "checkpoint.json"


class CheckpointStore:
    """Numbered checkpoint folders under `root` and the pointer file naming the complete one."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.pointer = self.root / POINTER

    def latest(self) -> dict[str, Any] | None:
        """The pointer (`number`, `folder` and the caller's meta), or None when there is no checkpoint."""
        try:
            return json.loads(self.pointer.read_text())
        except FileNotFoundError:
            return None
        except (json.JSONDecodeError, OSError) as err:
            raise PolicykdError(f"{self.pointer} is unreadable ({err}); pass --overwrite to start again") from None

    def folder(self, pointer: dict[str, Any]) -> Path:
        return self.root / pointer["folder"]

    def save(self, write: Callable[[Path], None], meta: dict[str, Any] | None = None) -> Path:
        """`write(folder)` into a fresh `ckpt-<n>/`; then, durably, the pointer (`meta` + number, folder)."""
        previous = self.latest()
        number = previous["number"] + 1 if previous else 0
        folder = self.root / f"ckpt-{number}"
        if folder.exists():  # left by a run killed while writing it
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        write(folder)
        fsync_tree(folder)  # on disk before the pointer names it
        atomic_write_text(self.pointer, json.dumps({**(meta or {}), "number": number, "folder": folder.name}, indent=2),
                          fsync=True)
        for old in self.root.glob("ckpt-*"):
            if old != folder:
                shutil.rmtree(old, ignore_errors=True)
        return folder

    def clear(self) -> None:
        """Once the run is complete its checkpoints are only disk space."""
        self.pointer.unlink(missing_ok=True)
        for folder in self.root.glob("ckpt-*"):
            shutil.rmtree(folder, ignore_errors=True)


def settings_differ(saved: dict[str, Any], current: dict[str, Any], *, ignore: Iterable[str] = ()) -> list[str]:
    """The settings (sorted) in which a saved run and the current command differ, as JSON stores them
    (tuples are lists), a setting only one of them has included; `ignore` names the ones that may."""
    saved, current = json.loads(json.dumps(saved)), json.loads(json.dumps(current))
    skip = set(ignore)
    return sorted(k for k in set(saved) | set(current) if k not in skip and saved.get(k) != current.get(k))


# --- distillation's checkpoints: `out/ckpt-<n>/`, `out/checkpoint.json` --------------------------


def save_checkpoint(out: Path, meta: dict[str, Any], tensors: dict[str, Any], arrays: dict[str, np.ndarray]) -> Path:
    def write(folder: Path) -> None:
        (folder / "arrays").mkdir()
        th.save(tensors, folder / "tensors.pt")
        for name, array in arrays.items():
            np.save(folder / "arrays" / f"{name}.npy", np.asarray(array), allow_pickle=False)
        (folder / "meta.json").write_text(json.dumps(meta))

    return CheckpointStore(out).save(write)


def read_pointer(out: Path) -> dict[str, Any] | None:
    return CheckpointStore(out).latest()


def load_checkpoint(out: Path) -> tuple[dict[str, Any], dict[str, Any], dict[str, np.ndarray]] | None:
    """(meta, tensors, arrays) of the current checkpoint in `out`, or None when there is none."""
    store = CheckpointStore(out)
    pointer = store.latest()
    if pointer is None:
        return None
    folder = store.folder(pointer)
    try:
        meta = json.loads((folder / "meta.json").read_text())
        tensors = th.load(folder / "tensors.pt", weights_only=True)
        arrays = {p.stem: np.load(p, allow_pickle=False) for p in (folder / "arrays").glob("*.npy")}
    except Exception as err:  # a checkpoint damaged after it was written
        raise PolicykdError(f"checkpoint {folder} is damaged ({type(err).__name__}); pass --overwrite to start again") from None
    return meta, tensors, arrays


def remove_checkpoints(out: Path) -> None:
    CheckpointStore(out).clear()


def _settings_differing(out: Path, config: "DistillSettings") -> list[str] | None:
    """Settings in which `out/config.json` differs from `config` (None when it is unreadable); those
    a resumed run need not repeat (overwrite, and what `identity()` leaves out) are not compared."""
    try:
        saved = json.loads((out / "config.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
    current = config.to_dict()
    identity = getattr(config, "identity", None)
    free = set(current) - set(identity()) if callable(identity) else set()
    return settings_differ(saved, current, ignore={"overwrite", *free})


def resumable(out: Path, config: "DistillSettings") -> bool:
    """True when `out` holds an unfinished run of the same settings (resume it); a
    different run there is refused rather than mixed."""
    if config.overwrite or read_pointer(out) is None or (out / "summary.json").exists():
        return False
    differ = _settings_differing(out, config)
    if differ is None:
        raise PolicykdError(f"{out} holds a checkpoint without a readable config.json; pass --overwrite to start again")
    if differ:
        raise PolicykdError(
            f"{out} holds an unfinished run with other settings ({', '.join(differ)}); "
            "re-run it unchanged to resume, or pass --overwrite / another --out"
        )
    return True


def unstarted(out: Path, config: "DistillSettings") -> bool:
    """True when `out` holds only the start of this very run (its config.json, no checkpoint yet,
    e.g. after a full disk at the first checkpoint): re-running starts it over there."""
    if not out.is_dir() or read_pointer(out) is not None or (out / "summary.json").exists():
        return False
    return _settings_differing(out, config) == []
