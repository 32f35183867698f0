"""Checkpoints that a kill at any instant cannot break.

Each checkpoint is a fresh folder `ckpt-<n>/` (tensors via torch.save, arrays via
np.save, the rest as JSON); only when it is complete does `checkpoint.json` (written to a
temporary name and renamed) point at it, and only then is the previous folder removed.
A kill leaves either the old checkpoint or the new one, never a half-written one.
Loading uses `torch.load(weights_only=True)` and `np.load(allow_pickle=False)`.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch as th

from policykd.errors import PolicykdError

if TYPE_CHECKING:
    from policykd.config import DistillConfig

POINTER = "checkpoint.json"


def save_checkpoint(out: Path, meta: dict[str, Any], tensors: dict[str, Any], arrays: dict[str, np.ndarray]) -> Path:
    previous = read_pointer(out)
    number = (previous["number"] + 1) if previous else 0
    folder = out / f"ckpt-{number}"
    if folder.exists():
        shutil.rmtree(folder)
    (folder / "arrays").mkdir(parents=True)
    th.save(tensors, folder / "tensors.pt")
    for name, array in arrays.items():
        np.save(folder / "arrays" / f"{name}.npy", np.asarray(array), allow_pickle=False)
    (folder / "meta.json").write_text(json.dumps(meta))
    for path in folder.rglob("*"):  # durable before the pointer moves
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
    tmp = out / f".{POINTER}.tmp"
    tmp.write_text(json.dumps({"number": number, "folder": folder.name}))
    os.replace(tmp, out / POINTER)
    if previous and (out / previous["folder"]).exists():
        shutil.rmtree(out / previous["folder"])
    return folder


def read_pointer(out: Path) -> dict[str, Any] | None:
    try:
        return json.loads((out / POINTER).read_text())
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, OSError) as err:
        raise PolicykdError(f"{out / POINTER} is unreadable ({err}); pass --overwrite to start again") from None


def load_checkpoint(out: Path) -> tuple[dict[str, Any], dict[str, Any], dict[str, np.ndarray]] | None:
    """(meta, tensors, arrays) of the current checkpoint in `out`, or None when there is none."""
    pointer = read_pointer(out)
    if pointer is None:
        return None
    folder = out / pointer["folder"]
    try:
        meta = json.loads((folder / "meta.json").read_text())
        tensors = th.load(folder / "tensors.pt", weights_only=True)
        arrays = {p.stem: np.load(p, allow_pickle=False) for p in (folder / "arrays").glob("*.npy")}
    except Exception as err:  # a checkpoint damaged after it was written
        raise PolicykdError(f"checkpoint {folder} is damaged ({type(err).__name__}); pass --overwrite to start again") from None
    return meta, tensors, arrays


def remove_checkpoints(out: Path) -> None:
    """Once the run is complete its checkpoints are only disk space."""
    (out / POINTER).unlink(missing_ok=True)
    for folder in out.glob("ckpt-*"):
        shutil.rmtree(folder, ignore_errors=True)


def _settings_differing(out: Path, config: "DistillConfig") -> list[str] | None:
    """Settings in which `out/config.json` differs from `config` (None when it is unreadable)."""
    try:
        saved = json.loads((out / "config.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
    current = json.loads(json.dumps(config.to_dict()))
    return sorted(k for k in set(saved) | set(current) if k != "overwrite" and saved.get(k) != current.get(k))


def resumable(out: Path, config: "DistillConfig") -> bool:
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


def unstarted(out: Path, config: "DistillConfig") -> bool:
    """True when `out` holds only the start of this very run (its config.json, no checkpoint yet,
    e.g. after a full disk at the first checkpoint): re-running starts it over there."""
    if not out.is_dir() or read_pointer(out) is not None or (out / "summary.json").exists():
        return False
    return _settings_differing(out, config) == []
