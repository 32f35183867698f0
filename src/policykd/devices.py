"""Which torch device a command's networks run on: `--device auto|cpu|cuda[:N]`, checked once before any work.

`auto` puts networks that read images (Atari's CNN teacher and student) on the first CUDA GPU when torch sees one,
and everything else on the CPU: a batch of small MLP inputs costs more to copy to a GPU and back than to compute.
Whatever the device, models are saved so that they load on a CPU (SB3's `load` maps them), and checkpoints resume
on any device.
"""

from __future__ import annotations

import torch as th

from policykd.errors import PolicykdError, option
from policykd.fields import spelled

DEVICE_HELP = "cpu, cuda, cuda:N or auto"


def _seen() -> str:
    count = th.cuda.device_count() if th.cuda.is_available() else 0
    return ", ".join(["cpu", *(f"cuda:{i}" for i in range(count))])


def check_device(device: str) -> None:
    """A one-line PolicykdError unless `device` is auto, cpu, or a CUDA device torch sees on this machine."""
    if device == "auto":
        return
    try:
        parsed = th.device(device)
    except RuntimeError:
        parsed = None
    if parsed is None or parsed.type not in ("cpu", "cuda"):
        raise PolicykdError(f"{spelled('device')} must be {DEVICE_HELP}, got {device!r}")
    if parsed.type == "cuda":
        count = th.cuda.device_count() if th.cuda.is_available() else 0
        if (parsed.index or 0) >= count:
            raise PolicykdError(f"{option('device', device)}: torch sees no such device here (devices seen: {_seen()})")


def resolve_device(device: str, *, images: bool) -> th.device:
    """The device `device` names; `auto`: the first CUDA GPU for networks that read images, else the CPU."""
    check_device(device)
    if device == "auto":
        return th.device("cuda:0" if images and th.cuda.is_available() else "cpu")
    return th.device(device)
