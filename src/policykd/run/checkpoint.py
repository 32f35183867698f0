"""A distillation's checkpoints, and whether an output folder holds the same run to resume.

The store itself (`policykd.storage.CheckpointStore`, shared with train-teacher) keeps them in
the output folder (`out/ckpt-<n>/`, `out/checkpoint.json`); here is what a distillation puts in
one (tensors via torch.save, arrays via np.save, meta.json) and how it reads them back, with
`torch.load(weights_only=True)` and `np.load(allow_pickle=False)`.

Atari frames are the exception: a Pong buffer's ring of up to 200k frames is 1.4 GB, and rewriting it at each
checkpoint wrote 5.6 GB per default run. A frame never changes once written (its serial number names it), so each
checkpoint appends only the frames written since the last one, as immutable segments `out/frames/<first>-<end>.npy`
(durable before the pointer names the checkpoint), and its state lists the segments the ring still needs.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch as th

from policykd.errors import PolicykdError, option
from policykd.fields import spelled
from policykd.storage import CheckpointStore, atomic_write, field_defaults, settings_differ

if TYPE_CHECKING:
    from policykd.settings import DistillSettings

# --- distillation's checkpoints: `out/ckpt-<n>/`, `out/checkpoint.json` --------------------------


def save_checkpoint(
    out: Path,
    meta: Mapping[str, object],
    tensors: Mapping[str, object],
    arrays: Mapping[str, np.ndarray],
    extra: Callable[[Path], None] | None = None,
) -> Path:
    """`extra(folder)` writes what is saved in its own format (the RL models, as SB3 saves them)."""

    def write(folder: Path) -> None:
        (folder / "arrays").mkdir()
        th.save(tensors, folder / "tensors.pt")
        for name, array in arrays.items():
            np.save(folder / "arrays" / f"{name}.npy", np.asarray(array), allow_pickle=False)
        if extra is not None:
            extra(folder)
        (folder / "meta.json").write_text(json.dumps(meta))

    return CheckpointStore(out).save(write)


def read_pointer(out: Path) -> dict[str, Any] | None:
    return CheckpointStore(out).latest()


def checkpoint_folder(out: Path) -> Path | None:
    store = CheckpointStore(out)
    pointer = store.latest()
    return None if pointer is None else store.folder(pointer)


def load_checkpoint(out: Path) -> tuple[dict[str, Any], dict[str, Any], dict[str, np.ndarray]] | None:
    """(meta, tensors, arrays) of the current checkpoint in `out`, or None when there is none."""
    folder = checkpoint_folder(out)
    if folder is None:
        return None
    try:
        meta = json.loads((folder / "meta.json").read_text())
        tensors = th.load(folder / "tensors.pt", weights_only=True, map_location="cpu")  # any device resumes
        arrays = {p.stem: np.load(p, allow_pickle=False) for p in (folder / "arrays").glob("*.npy")}
    except Exception as err:  # a checkpoint damaged after it was written
        raise PolicykdError(
            f"checkpoint {folder} is damaged ({type(err).__name__}); pass {option('overwrite')} to start again"
        ) from None
    return meta, tensors, arrays


def remove_checkpoints(out: Path) -> None:
    CheckpointStore(out).clear()
    shutil.rmtree(out / FRAMES, ignore_errors=True)


# --- Atari frames: appended once, as segments of serial numbers [first, end) ---------------------

FRAMES = "frames"


def append_frames(out: Path, ring: dict[str, np.ndarray], segments: list[list[int]]) -> list[list[int]]:
    """Write the frames of `ring` (a FrameStackStore's `state()`) that no segment holds yet; returns the segments
    the ring needs now, oldest first. Each new segment is a view of the ring, so nothing is copied in memory."""
    capacity, end = int(ring["frame_capacity"]), int(ring["next_serial"])
    start = max(segments[-1][1] if segments else 0, end - capacity)  # frames overwritten unsaved are not needed
    folder = out / FRAMES
    folder.mkdir(exist_ok=True)
    new = []
    while start < end:  # at most two pieces: the ring's tail, then its head
        stop = min(end, (start // capacity + 1) * capacity)
        frames = ring["frames"][start % capacity : start % capacity + stop - start]
        atomic_write(folder / f"{start}-{stop}.npy", partial(_save_npy, array=frames), fsync=True)  # file, rename
        new.append([start, stop])
        start = stop
    return [s for s in segments + new if s[1] > end - capacity]


def _save_npy(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as handle:  # np.save on a path would add ".npy" to the temporary name
        np.save(handle, array, allow_pickle=False)


def read_frames(out: Path, segments: list[list[int]], frames: np.ndarray, end: int) -> None:
    """Fill the ring `frames` from the segments (the frames among the last `len(frames)` serials before `end`)."""
    capacity = len(frames)
    for first, stop in segments:
        try:
            data = np.load(out / FRAMES / f"{first}-{stop}.npy", mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as err:
            raise PolicykdError(
                f"frame segment {out / FRAMES}/{first}-{stop}.npy is missing or damaged "
                f"({type(err).__name__}); pass {option('overwrite')} to start again"
            ) from None
        lo = max(first, end - capacity)
        if lo < stop:
            frames[lo % capacity : lo % capacity + stop - lo] = data[lo - first :]


def forget_frames(out: Path, segments: list[list[int]]) -> None:
    """Delete the segments the current checkpoint does not list (left by earlier checkpoints, or a killed save)."""
    keep = {f"{first}-{stop}.npy" for first, stop in segments}
    for path in (out / FRAMES).glob("*.npy"):
        if path.name not in keep:
            path.unlink(missing_ok=True)


def _settings_differing(out: Path, config: DistillSettings) -> list[str] | None:
    """Settings in which `out/config.json` differs from `config` (None when it is unreadable); those
    a resumed run need not repeat (overwrite, and what `identity()` leaves out) are not compared."""
    try:
        saved = json.loads((out / "config.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
    current = config.to_dict()
    identity = getattr(config, "identity", None)
    free = set(current) - set(identity()) if callable(identity) else set()
    own_defaults = getattr(config, "defaults", None)  # settings of several parts say what their defaults are
    defaults = own_defaults() if callable(own_defaults) else field_defaults(config)
    return settings_differ(saved, current, ignore={"overwrite", *free}, defaults=defaults)


def resumable(out: Path, config: DistillSettings) -> bool:
    """True when `out` holds an unfinished run of the same settings (resume it); a
    different run there is refused rather than mixed."""
    if config.overwrite or read_pointer(out) is None or (out / "summary.json").exists():
        return False
    differ = _settings_differing(out, config)
    if differ is None:
        raise PolicykdError(
            f"{out} holds a checkpoint without a readable config.json; pass {option('overwrite')} to start again"
        )
    if differ:
        raise PolicykdError(
            f"{out} holds an unfinished run with other settings ({', '.join(differ)}); "
            f"re-run it unchanged to resume, or pass {option('overwrite')} / another {spelled('out')}"
        )
    return True


def unstarted(out: Path, config: DistillSettings) -> bool:
    """True when `out` holds only the start of this very run (its config.json, no checkpoint yet,
    e.g. after a full disk at the first checkpoint): re-running starts it over there."""
    if not out.is_dir() or read_pointer(out) is not None or (out / "summary.json").exists():
        return False
    return _settings_differing(out, config) == []
