"""`policykd export`: find the student, check where the file goes, write it (every check before any write);
with int8, the calibration rollout is also done before anything is written."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from policykd.errors import PolicykdError
from policykd.settings import ExportSettings

if TYPE_CHECKING:
    from policykd.export.source import ExportSource

SUFFIX = {"onnx": ".onnx", "c": ".c"}
DEFAULT_NAME = {("onnx", False): "student.onnx", ("c", False): "policy.c",
                ("onnx", True): "student.int8.onnx", ("c", True): "policy_int8.c"}


def export_student(settings: ExportSettings) -> Path:
    """The student of `settings.source` as `settings.format`; returns the file written (its .h goes beside a .c)."""
    import torch as th

    from policykd.export.source import load_source

    suffix = SUFFIX[settings.format]
    if settings.out is not None and not settings.out.endswith(suffix):
        raise PolicykdError(f"--out {settings.out} must end in {suffix} for --format {settings.format}")
    source = load_source(settings.source, settings.env_id)
    out = Path(settings.out) if settings.out else source.path.with_name(DEFAULT_NAME[settings.format, settings.int8])
    if not out.parent.is_dir():
        raise PolicykdError(f"--out {out}: folder {out.parent} does not exist")
    th.set_num_threads(1)
    if settings.format == "c":
        from policykd.export.to_c import write_c

        return write_c(source, out, int8=settings.int8)
    from policykd.export.to_onnx import write_onnx

    if not settings.int8:
        return write_onnx(source, out)
    return _write_int8_onnx(source, out)


def _write_int8_onnx(source: ExportSource, out: Path) -> Path:
    """Calibrate on a seeded rollout first (a failure writes nothing), then float ONNX in a temporary folder, quantised."""
    import tempfile

    from policykd.export.int8 import calibration_observations, quantize_onnx
    from policykd.export.to_onnx import write_onnx
    from policykd.files import atomic_write

    observations = calibration_observations(source)
    with tempfile.TemporaryDirectory(prefix="policykd-export-") as folder:
        float_path = write_onnx(source, Path(folder) / "float.onnx")
        return atomic_write(out, lambda tmp: quantize_onnx(float_path, tmp, observations))
